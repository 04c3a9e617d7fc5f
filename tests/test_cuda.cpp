// The CUDA reverse process: every reference fixture case on the GPU in float32, the bundled model
// on CUDA against the CPU, bf16's deviation, and the canvas staying on the device. Without a CUDA
// device (a CPU-only LibTorch, or no GPU) the whole program is skipped, visibly: it prints why and
// exits 77, which meson and ctest report as SKIP. tools/gpu-check runs it on a GPU machine.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <atomic>
#include <cmath>
#include <cstdio>

#include "core/pipeline.h"
#include "engine/gimp_diffusion.h"
#include "tests/reference_cases.h"

using gd::test::check_generate_cases;
using gd::test::check_img2img_cases;

namespace {

gd::models::LoadOptions on_cuda(c10::ScalarType dtype = at::kFloat) {
  gd::models::LoadOptions load;
  load.device = c10::Device(c10::kCUDA, 0);
  load.dtype = dtype;
  return load;
}

double psnr(const at::Tensor& a, const at::Tensor& b) {  // images in [0, 1]
  const double mse = (a.to(at::kDouble) - b.to(at::kDouble)).pow(2).mean().item<double>();
  return mse > 0 ? 10.0 * std::log10(1.0 / mse) : 999.0;
}

gd::Request bundled_texture(const std::string& device, const std::string& precision) {
  gd::Request r;
  r.model_path = GD_BUNDLED_MODEL_DIR;
  r.device = device;
  r.precision = precision;
  r.width = r.height = 128;
  r.sampler = "dpmpp_2m";
  r.steps = 20;
  r.seed = 1234;
  return r;
}

at::Tensor bundled_image(const std::string& device, const std::string& precision) {
  const gd::Request r = bundled_texture(device, precision);
  return gd::run(gd::load_model(r), r, at::Tensor()).image;
}

}  // namespace

// The reference cases, exactly as on the CPU (tests/test_pipeline.cpp), within 2e-3.
TEST(Cuda, GenerateMatchesEveryDiffusersCase) {
  EXPECT_EQ(check_generate_cases("diffusers-tiny", "model", on_cuda()), 7);
}

TEST(Cuda, GenerateMatchesEveryDdpmPytorchCase) {
  EXPECT_EQ(check_generate_cases("lucidrains-tiny", "model-1.pt", on_cuda()), 3);
}

TEST(Cuda, Img2ImgMatchesEveryDiffusersCase) {
  EXPECT_EQ(check_img2img_cases("diffusers-tiny", "model", on_cuda()), 3);
}

TEST(Cuda, OddWidthCasesMatch) {
  EXPECT_EQ(check_generate_cases("diffusers-odd", "model", on_cuda()), 4);
  EXPECT_EQ(check_img2img_cases("diffusers-odd", "model", on_cuda()), 1);
  EXPECT_EQ(check_generate_cases("lucidrains-odd", "model-1.pt", on_cuda()), 3);
}

// The bundled texture model, same seed, float32: CUDA's image is the CPU's to within 40 dB.
TEST(Cuda, BundledModelMatchesTheCpu) {
  const at::Tensor cpu = bundled_image("cpu", "fp32");
  const at::Tensor cuda = bundled_image("cuda", "fp32");
  ASSERT_EQ(cpu.sizes(), cuda.sizes());
  const double db = psnr(cuda, cpu);
  std::printf("bundled model 128x128, dpmpp_2m 20 steps: CUDA fp32 vs CPU fp32 PSNR %.1f dB\n", db);
  EXPECT_GE(db, 40.0);
}

// bf16 (what auto picks on capable GPUs) against fp32 on CUDA: reported, and held to a loose
// bound that only a broken bf16 path would miss.
TEST(Cuda, Bf16DeviationIsReported) {
  const at::Tensor fp32 = bundled_image("cuda", "fp32");
  const at::Tensor bf16 = bundled_image("cuda", "bf16");
  const double db = psnr(bf16, fp32);
  std::printf("bundled model 128x128, dpmpp_2m 20 steps: CUDA bf16 vs fp32 PSNR %.1f dB\n", db);
  EXPECT_GE(db, 20.0);
  const double fp16_db = psnr(bundled_image("cuda", "fp16"), fp32);
  std::printf("bundled model 128x128, dpmpp_2m 20 steps: CUDA fp16 vs fp32 PSNR %.1f dB\n",
              fp16_db);
  EXPECT_GE(fp16_db, 20.0);
}

TEST(Cuda, AutoPrecisionIsBf16WhereSupported) {
  gd::Request r = bundled_texture("cuda", "auto");
  const gd::Model model = gd::load_model(r);
  std::printf("auto precision on %s: %s\n", model.device().c_str(), model.precision().c_str());
  EXPECT_TRUE(model.precision() == "bf16" || model.precision() == "fp32");
  r.device = "cpu";
  EXPECT_EQ(gd::load_model(r).precision(), "fp32");
}

// The canvas lives on the device: in a deterministic run (DDIM, eta 0) the only canvas-sized
// copies between host and device are the starting noise going up and the result coming down;
// an ancestral sampler adds one per step (its noise, drawn on the CPU generator).
TEST(Cuda, TheCanvasStaysOnTheDevice) {
  static std::atomic<int> crossings{0};
  static std::atomic<std::int64_t> canvas_numel{0};
  const at::CallbackHandle observer = at::addGlobalCallback(
      at::RecordFunctionCallback([](const at::RecordFunction& fn)
                                     -> std::unique_ptr<at::ObserverContext> {
        if (std::string(fn.name()) != "aten::copy_") return nullptr;
        const auto inputs = fn.inputs();
        if (inputs.size() < 2 || !inputs[0].isTensor() || !inputs[1].isTensor()) return nullptr;
        const at::Tensor dst = inputs[0].toTensor(), src = inputs[1].toTensor();
        if (dst.device() != src.device() && dst.numel() >= canvas_numel.load()) ++crossings;
        return nullptr;
      }).needsInputs(true));
  gd::test::ReferenceFixture f = gd::test::open_fixture("diffusers-tiny/model", on_cuda());
  gd::core::GenerateOptions options;
  options.width = options.height = 16;
  options.batch = 2;
  options.steps = 10;
  canvas_numel = 2 * f.model.channels * 16 * 16;
  for (const char* sampler : {"ddim", "euler_a"}) {
    SCOPED_TRACE(sampler);
    options.sampler = sampler;
    crossings = 0;
    gd::core::generate(f.model, options);
    const int expected = std::string(sampler) == "ddim" ? 2 : 2 + options.steps;
    std::printf("%s: %d canvas-sized host/device copies in %d steps\n", sampler, crossings.load(),
                options.steps);
    EXPECT_LE(crossings.load(), expected);
  }
  at::removeCallback(observer);
}

// Too large for the device: one line, not a crash (the planner refuses, or the allocator's
// failure becomes a RequestError).
TEST(Cuda, OutOfDeviceMemoryIsOneLine) {
  gd::Request r = bundled_texture("cuda", "fp32");
  r.width = r.height = 16384;
  r.tile_size = -1;  // the whole canvas at once
  r.steps = 1;
  const gd::Model model = gd::load_model(r);
  // First as planned (the planner refuses within the device's free memory), then with a budget
  // far above the device's memory, so that CUDA's allocator itself fails mid-run.
  for (const char* budget : {"", "4000G"}) {
    SCOPED_TRACE(budget);
    r.max_memory = budget;
    try {
      gd::run(model, r, at::Tensor());
      std::printf("16384x16384 in one window fitted on this device\n");
    } catch (const gd::RequestError& e) {
      const std::string text = e.what();
      std::printf("budget '%s': %s: %s\n", budget, e.field().c_str(), text.c_str());
      EXPECT_EQ(text.find('\n'), std::string::npos);
    }
  }
}

int main(int argc, char** argv) {
  if (!at::hasCUDA()) {
    std::printf(
        "SKIP: no CUDA device (this LibTorch is CPU-only or the machine has no GPU); the CUDA "
        "tests run on a GPU machine through tools/gpu-check\n");
    return 77;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
