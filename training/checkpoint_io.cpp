#include "training/checkpoint_io.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace gd::training {

namespace fs = std::filesystem;

std::string state_folder(const std::string& out) { return (fs::path(out) / "training").string(); }

std::string checkpoint_path(const std::string& out) {
  return (fs::path(state_folder(out)) / "checkpoint.pt").string();
}

void check_run_folder(const std::string& out, bool resume) {
  const std::string checkpoint = checkpoint_path(out);
  if (resume && !fs::exists(checkpoint))
    throw Error(checkpoint + ": no checkpoint to resume from (--resume)");
  if (!resume && fs::exists(checkpoint)) {
    throw Error(out +
                " already holds a training run; add --resume to continue it or pick another --out");
  }
}

void save_checkpoint(const std::string& path,
                     const std::map<std::string, std::string>& stored_options, RunState& run) {
  torch::serialize::OutputArchive archive;
  for (const auto& [name, p] : run.net->params()->all()) archive.write("model." + name, p.detach());
  for (const auto& [name, p] : run.ema_net->params()->all())
    archive.write("ema." + name, p.detach());
  torch::serialize::OutputArchive opt;
  run.optimizer->save(opt);
  archive.write("optimizer", opt);
  archive.write("step", at::scalar_tensor(static_cast<std::int64_t>(run.step), at::kLong));
  archive.write("ema_calls",
                at::scalar_tensor(static_cast<std::int64_t>(run.ema->calls()), at::kLong));
  archive.write("rng", run.gen.get_state());
  // A JSON object of option texts, keys sorted: {"accumulate":"1","batch":"16",...}.
  archive.write("settings", c10::IValue(nlohmann::json(stored_options).dump()));
  const std::string tmp = path + ".tmp";
  archive.save_to(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot rename the checkpoint into place");
  }
}

nlohmann::json read_stored_settings(const std::string& out) {
  check_run_folder(out, true);
  const std::string path = checkpoint_path(out);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
    c10::IValue value;
    archive.read("settings", value);
    return nlohmann::json::parse(value.toStringRef());
  } catch (const std::exception& e) {
    throw Error(path + ": not a readable training checkpoint (" +
                std::string(e.what()).substr(0, 200) + ")");
  }
}

void load_checkpoint(const std::string& path, RunState& run, c10::Device device) {
  torch::serialize::InputArchive archive;
  archive.load_from(path, device);  // the run's device, whichever one wrote the checkpoint
  at::NoGradGuard no_grad;
  auto read = [&](const std::string& key, const at::Tensor& p) {
    at::Tensor t;
    archive.read(key, t);
    if (!t.sizes().equals(p.sizes())) {
      throw Error(path + ": " + key + " has shape " + c10::str(t.sizes()) + ", the run needs " +
                  c10::str(p.sizes()) +
                  (key.find("class_embedding") != std::string::npos
                       ? " (--classes: the --data folder no longer has the same number of images)"
                       : ""));
    }
    p.copy_(t);
  };
  for (const auto& [name, p] : run.net->params()->all()) read("model." + name, p);
  for (const auto& [name, p] : run.ema_net->params()->all()) read("ema." + name, p);
  torch::serialize::InputArchive opt;
  archive.read("optimizer", opt);
  run.optimizer->load(opt);
  at::Tensor step, calls, rng;
  archive.read("step", step);
  archive.read("ema_calls", calls);
  archive.read("rng", rng);
  run.step = step.item<std::int64_t>();
  run.ema->set_calls(calls.item<std::int64_t>());
  run.gen.set_state(rng.cpu());  // the generator is a CPU one, whatever the run's device
}

}  // namespace gd::training
