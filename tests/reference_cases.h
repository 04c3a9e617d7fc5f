// The reference fixture cases (cases.json of tests/data/<folder>: images made by diffusers and
// denoising-diffusion-pytorch themselves) run through generate() and img2img() on any device and
// precision the load options name; shared by the CPU pipeline tests and the CUDA tests.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <string>

#include "core/pipeline.h"
#include "models/model_loader.h"
#include "models/pipeline_model.h"
#include "tests/test_util.h"

namespace gd::test {

struct ReferenceFixture {
  models::LoadedModel loaded;
  core::PipelineModel model;
};

inline ReferenceFixture open_fixture(const std::string& relative,
                                     const models::LoadOptions& options) {
  ReferenceFixture f;
  f.loaded = models::load_model(data_path(relative), options);
  f.model = models::pipeline_model(f.loaded, options);
  return f;
}

inline nlohmann::json reference_cases(const std::string& folder) {
  std::ifstream file(data_path(folder + "/cases.json"));
  nlohmann::json j = nlohmann::json::parse(file);
  return j.is_array() ? j : j["checks"];
}

// The sampler settings every case gives.
inline void read_run_options(const nlohmann::json& c, core::RunOptions& options) {
  options.sampler = c["sampler"];
  options.steps = c["steps"];
  options.eta = c["eta"];
  options.seed = c["seed"];
}

// Runs every "generate" case of a fixture folder's cases.json through generate(): each image
// within `tolerance` of the reference. Returns the number of cases checked.
inline int check_generate_cases(const std::string& folder, const std::string& model,
                                const models::LoadOptions& load = {}, double tolerance = 2e-3) {
  ReferenceFixture f = open_fixture(folder + "/" + model, load);
  int checked = 0;
  for (const auto& c : reference_cases(folder)) {
    if (c["kind"] != "generate") continue;
    SCOPED_TRACE(c["file"].get<std::string>());
    core::GenerateOptions options;
    read_run_options(c, options);
    options.batch = c["batch"];
    options.width = c["width"];
    options.height = c["height"];
    at::Tensor image = core::generate(f.model, options);
    EXPECT_TRUE(image.device().is_cpu());  // results always come back to the host
    const std::string file = folder + "/" + c["file"].get<std::string>();
    const double err = max_abs_diff(image, fixture_tensor(file, "image"));
    EXPECT_LE(err, tolerance);
    std::printf("  %s (%s): max |image - reference| = %.3g\n", file.c_str(),
                load.device.str().c_str(), err);
    ++checked;
  }
  return checked;
}

// Runs every "img2img" case of a fixture folder's cases.json through img2img().
inline int check_img2img_cases(const std::string& folder, const std::string& model,
                               const models::LoadOptions& load = {}, double tolerance = 2e-3) {
  ReferenceFixture f = open_fixture(folder + "/" + model, load);
  int checked = 0;
  for (const auto& c : reference_cases(folder)) {
    if (c["kind"] != "img2img") continue;
    SCOPED_TRACE(c["file"].get<std::string>());
    const std::string file = folder + "/" + c["file"].get<std::string>();
    core::RunOptions options;
    read_run_options(c, options);
    at::Tensor image =
        core::img2img(f.model, fixture_tensor(file, "input"), c["strength"], options);
    const double err = max_abs_diff(image, fixture_tensor(file, "image"));
    EXPECT_LE(err, tolerance);
    std::printf("  %s (%s): max |image - reference| = %.3g\n", file.c_str(),
                load.device.str().c_str(), err);
    ++checked;
  }
  return checked;
}

}  // namespace gd::test
