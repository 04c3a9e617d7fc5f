// gimp-diffusion-benchmark: where the time of a sampling run goes.
//
//   gimp-diffusion-benchmark --model PATH | --config UNET_CONFIG_JSON
//                            [--width W] [--height H] [--batch N]
//                            [--precision fp32|bf16|fp16|auto]
//                            [--sampler S] [--steps N] [--device cpu|cuda] [--threads N]
//                            [--layout channels_last|contiguous] [--guidance W]
//                            [--guidance-below T] [--guidance-batch on|off] [--seamless]
//                            [--background-load 0|1] [--weights ema|model]
//
// --threads 0 (the default) applies the automatic thread policy (core/thread_policy.h), N > 0
// forces N. --background-load 1 starts a busy-loop child process pinned to one core
// (sched_setaffinity) before the thread decision and the warm-up, and stops it after the timed
// run: a desktop where another program keeps one core busy. The child also ends by itself
// after 15 minutes and when the benchmark dies.
// --guidance-batch off evaluates a guided step's two halves in two calls of N instead of one of
// 2N (the speed before batched guidance).
// Reports network time per call (one per step; on guided steps one of 2N, or two with
// --guidance-batch off), sampler overhead per call
// (everything in the loop that is not the network), total time, peak resident memory (host
// RSS), the network's achieved GFLOP/s, and the share of the run each kind of top-level op
// takes. FLOPs are counted from the shapes of the convolutions, matrix
// products and attention calls LibTorch actually runs (a RecordFunction observer), so they hold
// for any architecture, TorchScript included. One warm-up step runs first and is not counted.
// --config times a diffusers UNet2DModel architecture (its config.json) with random weights and
// the default DDPM schedule, so real-sized models can be measured without their checkpoints.
// On CUDA the network is not synchronised call by call (that would serialise launches and
// hide what a run costs): the FLOPs of a call are counted in the warm-up, the op observers are
// then removed, and the figures are the whole run's: seconds per step and GFLOP/s over the run,
// with the peak of tensor memory on the device (LibTorch's allocator reports,
// core/memory_estimate). This is a benchmark, not a test: it asserts nothing.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/record_function.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fstream>
#include <iterator>

#include "core/device.h"
#include "core/memory_estimate.h"
#include "core/memory_policy.h"
#include "core/pipeline.h"
#include "core/thread_policy.h"
#include "models/diffusers_config.h"
#include "models/diffusers_unet.h"
#include "models/model_loader.h"
#include "models/pipeline_model.h"

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<double> g_flops{0.0};
std::atomic<bool> g_counting{false};

double product(const c10::IntArrayRef& sizes, std::size_t from = 0) {
  double p = 1;
  for (std::size_t i = from; i < sizes.size(); ++i) p *= static_cast<double>(sizes[i]);
  return p;
}

// FLOPs of the leaf operations that carry nearly all of a UNet's arithmetic. Higher-level
// ops (linear, matmul, conv2d) are not counted: they dispatch to these.
void count_flops(const at::RecordFunction& fn) {
  if (!g_counting) return;
  const std::string name = fn.name();
  const auto inputs = fn.inputs();
  const auto outputs = fn.outputs();
  auto tensor = [](const c10::IValue& v) { return v.isTensor() ? v.toTensor() : at::Tensor(); };
  double flops = 0;
  if (name == "aten::convolution" && inputs.size() >= 2 && !outputs.empty()) {
    at::Tensor w = tensor(inputs[1]), out = tensor(outputs[0]);
    if (w.defined() && out.defined()) flops = 2.0 * product(out.sizes()) * product(w.sizes(), 1);
  } else if ((name == "aten::mm" || name == "aten::addmm") && !outputs.empty()) {
    at::Tensor a = tensor(inputs[name == "aten::mm" ? 0 : 1]), out = tensor(outputs[0]);
    if (a.defined() && out.defined()) flops = 2.0 * product(out.sizes()) * a.size(-1);
  } else if ((name == "aten::bmm" || name == "aten::baddbmm") && !outputs.empty()) {
    at::Tensor a = tensor(inputs[name == "aten::bmm" ? 0 : 1]), out = tensor(outputs[0]);
    if (a.defined() && out.defined()) flops = 2.0 * product(out.sizes()) * a.size(-1);
  } else if ((name == "aten::_scaled_dot_product_flash_attention_for_cpu" ||
              name == "aten::_scaled_dot_product_flash_attention" ||
              name == "aten::_scaled_dot_product_efficient_attention" ||
              name == "aten::_scaled_dot_product_cudnn_attention") &&
             inputs.size() >= 3) {
    // The fused kernels only: the public op and the math fallback dispatch to counted ops.
    at::Tensor q = tensor(inputs[0]), k = tensor(inputs[1]);
    if (q.defined() && k.defined() && q.dim() >= 2) {
      // QK^T and PV: 2 * 2 * (batch dims) * L * S * E
      flops = 4.0 * product(q.sizes()) * k.size(-2);
    }
  }
  if (flops > 0) g_flops = g_flops + flops;
}

// Time per top-level ATen op (the first op entered from our code; the ops it dispatches to are
// inside its time), so the report says which kinds of work the network's time goes to.
struct OpClock : at::ObserverContext {
  Clock::time_point start;
  bool top = false;
};
thread_local int t_op_depth = 0;
// Only ops entered on the thread that runs the sampler count: LibTorch's worker threads run
// pieces of those ops, whose time is already inside them.
std::thread::id g_main_thread;
std::mutex g_op_mutex;
std::map<std::string, double> g_op_seconds;

std::unique_ptr<at::ObserverContext> start_op(const at::RecordFunction&) {
  auto clock = std::make_unique<OpClock>();
  clock->top = t_op_depth++ == 0;
  clock->start = Clock::now();
  return clock;
}

void end_op(const at::RecordFunction& fn, at::ObserverContext* context) {
  --t_op_depth;
  auto* clock = static_cast<OpClock*>(context);
  if (!g_counting || !clock || !clock->top || std::this_thread::get_id() != g_main_thread) return;
  const double seconds = std::chrono::duration<double>(Clock::now() - clock->start).count();
  std::lock_guard<std::mutex> lock(g_op_mutex);
  g_op_seconds[fn.name()] += seconds;
}

// Through the hooks interface, so the benchmark also builds against a CPU-only LibTorch.
void sync_cuda() { at::detail::getCUDAHooks().deviceSynchronize(0); }

// A bounded busy loop in a child process pinned to one core; returns its pid (-1 on failure).
// The last core this process may run on (under taskset too).
pid_t start_background_load() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  int core = 0;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &allowed)) core = c;
    }
  }
  const pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  sched_setaffinity(0, sizeof(set), &set);
  const auto end = Clock::now() + std::chrono::minutes(15);
  volatile unsigned long long x = 0;
  while (Clock::now() < end) {
    for (int i = 0; i < 1000000; ++i) x = x + i;
  }
  _exit(0);
}

void stop_background_load(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

std::string arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  gd::core::reuse_freed_memory();
  try {
    const std::string config_path = arg(argc, argv, "config", "");
    const std::string model_path = config_path.empty() ? arg(argc, argv, "model", "") : config_path;
    if (model_path.empty()) {
      std::fprintf(stderr,
                   "usage: gimp-diffusion-benchmark --model PATH [--width W] [--height H] "
                   "[--batch N] [--sampler S] [--steps N] [--device cpu|cuda] [--threads N] "
                   "[--layout channels_last|contiguous] [--precision fp32|bf16] [--guidance W] "
                   "[--guidance-below T] [--seamless] [--background-load 0|1] [--weights ema|model] "
                   "(or --config UNET_CONFIG_JSON for random weights)\n");
      return 2;
    }
    const int threads = std::stoi(arg(argc, argv, "threads", "0"));
    if (threads < 0) throw std::runtime_error("--threads must be 0 (automatic) or more");
    const bool background_load = arg(argc, argv, "background-load", "0") == "1";
    gd::models::LoadOptions load;
    load.device = gd::core::parse_device(arg(argc, argv, "device", "cpu"));
    load.channels_last = arg(argc, argv, "layout", "channels_last") == "channels_last";
    load.dtype = gd::core::parse_precision(arg(argc, argv, "precision", "fp32"), load.device);
    load.weights = arg(argc, argv, "weights", "");  // "model": a Trainer checkpoint's online
    gd::models::exact_float32_on(load.device);
    gd::models::LoadedModel loaded;
    if (config_path.empty()) {
      loaded = gd::models::load_model(model_path, load);
    } else {
      std::ifstream file(config_path);
      if (!file) throw std::runtime_error(config_path + ": cannot be read");
      const std::string text((std::istreambuf_iterator<char>(file)),
                             std::istreambuf_iterator<char>());
      const gd::models::UNet2DConfig config = gd::models::parse_unet2d_config(text, config_path);
      auto unet = std::make_unique<gd::models::DiffusersUNet>(
          config, at::TensorOptions().dtype(load.dtype).device(load.device));
      for (auto& [name, p] : unet->params()->all()) p.normal_(0, 0.02);
      if (load.channels_last) unet->params()->to_channels_last();
      if (gd::models::kernel_check_wanted()) {
        unet->set_conv_routes(gd::models::check_convolutions(*unet->params(), load.channels_last,
                                                             &loaded.kernel_check));
      }
      loaded.info.architecture = "UNet2DModel (random weights)";
      loaded.info.parameter_count = unet->params()->count();
      loaded.info.in_channels = static_cast<int>(config.in_channels);
      loaded.info.downsampling_factor = static_cast<int>(config.downsampling_factor());
      loaded.info.native_width = static_cast<int>(config.sample_width);
      loaded.info.native_height = static_cast<int>(config.sample_height);
      loaded.network = std::move(unet);
    }
    gd::models::Network* net = loaded.network.get();

    double network_seconds = 0;
    int network_calls = 0;
    const bool cuda = load.device.is_cuda();
    // The pipelines' usual view of the model, with the network call timed.
    gd::core::PipelineModel model = gd::models::pipeline_model(loaded, load);
    model.network = [&](const at::Tensor& x, const at::Tensor& t,
                        const gd::core::Conditioning& cond) {
      if (cuda) {  // asynchronous: counted, not timed call by call
        ++network_calls;
        return net->forward(x, t, cond);
      }
      const auto start = Clock::now();
      at::Tensor out = net->forward(x, t, cond);
      network_seconds += std::chrono::duration<double>(Clock::now() - start).count();
      ++network_calls;
      return out;
    };

    gd::core::GenerateOptions options;
    options.sampler = arg(argc, argv, "sampler", "dpmpp_2m");
    options.steps = std::stoi(arg(argc, argv, "steps", "20"));
    options.width = std::stoi(arg(argc, argv, "width", "0"));
    options.height = std::stoi(arg(argc, argv, "height", "0"));
    options.batch = std::stoi(arg(argc, argv, "batch", "1"));
    options.seed = 0;
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--seamless") options.seamless = true;
    }
    options.guidance = std::stod(arg(argc, argv, "guidance", "0"));  // 0: the model's default
    options.guidance_below = std::stoi(arg(argc, argv, "guidance-below", "0"));
    if (arg(argc, argv, "guidance-batch", "on") == "off") options.max_batched_guidance_pixels = 0;
    const std::string guidance =
        gd::core::describe_guidance(gd::core::run_guidance(model, options, true));

    const at::CallbackHandle flop_observer = at::addGlobalCallback(
        at::RecordFunctionCallback(
            [](const at::RecordFunction&) -> std::unique_ptr<at::ObserverContext> {
              return nullptr;
            },
            [](const at::RecordFunction& fn, at::ObserverContext*) { count_flops(fn); })
            .needsInputs(true)
            .needsOutputs(true));
    g_main_thread = std::this_thread::get_id();
    const at::CallbackHandle op_clock = at::addGlobalCallback(
        at::RecordFunctionCallback(start_op, end_op).scopes({at::RecordScope::FUNCTION}));

    pid_t load_pid = -1;
    if (background_load) {
      load_pid = start_background_load();
      if (load_pid < 0) throw std::runtime_error("cannot start the background load");
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let it reach its core
    }
    struct LoadGuard {
      pid_t pid;
      ~LoadGuard() { stop_background_load(pid); }
    } load_guard{load_pid};
    const gd::core::ThreadChoice thread_choice = gd::core::apply_thread_policy(threads);

    // Warm-up: one step, not timed (first-call allocations, kernel selection). On CUDA it counts
    // the FLOPs of a call, and the observers go before the timed run.
    gd::core::GenerateOptions warm = options;
    warm.steps = 1;
    g_counting = cuda;
    gd::core::generate(model, warm);
    g_counting = false;
    const double flops_per_call = network_calls > 0 ? g_flops / network_calls : 0.0;
    if (cuda) {
      at::removeCallback(flop_observer);
      at::removeCallback(op_clock);
      sync_cuda();
    }
    g_flops = 0.0;
    network_seconds = 0;
    network_calls = 0;

    gd::core::MemoryMeter device_memory;  // tensors' peak, device included
    g_counting = !cuda;
    const auto start = Clock::now();
    at::Tensor images = gd::core::generate(model, options);
    if (cuda) sync_cuda();
    const double total = std::chrono::duration<double>(Clock::now() - start).count();
    g_counting = false;
    if (cuda) {
      g_flops = flops_per_call * network_calls;
      network_seconds = total;  // not separable without synchronising every call
    }
    stop_background_load(load_guard.pid);
    load_guard.pid = -1;

    struct rusage usage {};
    getrusage(RUSAGE_SELF, &usage);
    const int steps = network_calls > 0 ? network_calls : 1;
    std::printf("model:               %s (%s, %lld parameters)\n", model_path.c_str(),
                loaded.info.architecture.c_str(),
                static_cast<long long>(loaded.info.parameter_count));
    std::printf(
        "run:                 %lldx%lld, batch %d, %s, %d network calls, device %s, %d threads, "
        "%s\n",
        static_cast<long long>(images.size(3)), static_cast<long long>(images.size(2)),
        options.batch, options.sampler.c_str(), network_calls, load.device.str().c_str(),
        at::get_num_threads(), load.channels_last ? "channels-last" : "contiguous");
    const gd::models::ConvCheckReport& check = loaded.kernel_check;
    if (check.ran) {
      std::printf(
          "kernel check:        %d configurations in %.2f s at load, %d of %d layers rerouted\n",
          check.configurations, check.seconds, check.rerouted, check.layers);
    } else {
      std::printf("kernel check:        skipped\n");
    }
    std::printf("threads:             %s\n", thread_choice.describe().c_str());
    std::printf("background load:     %s\n",
                background_load ? "1 busy process pinned to one core" : "none");
    std::printf("precision:           %s\n", gd::core::precision_name(load.dtype).c_str());
    std::printf("guidance:            %s%s\n", guidance.empty() ? "off" : guidance.c_str(),
                guidance.empty()                          ? ""
                : options.max_batched_guidance_pixels > 0 ? " (batched 2N)"
                                                          : " (two calls)");
    std::printf("seamless:            %s\n", options.seamless ? "yes" : "no");
    if (cuda) {
      std::printf("network per call:    (CUDA: not separated from the sampler)\n");
    } else {
      std::printf("network per call:    %.4f s\n", network_seconds / steps);
      std::printf("sampler per call:    %.4f s\n", (total - network_seconds) / steps);
    }
    std::printf("seconds per step:    %.4f s\n", total / std::max(1, options.steps));
    std::printf("total:               %.3f s\n", total);
    std::printf("peak memory (RSS):   %.1f MiB\n", usage.ru_maxrss / 1024.0);
    std::printf("peak tensor memory:  %.1f MiB (%s)\n",
                static_cast<double>(device_memory.peak()) / (1 << 20), load.device.str().c_str());
    std::printf("network GFLOP/call:  %.3f\n", g_flops / 1e9 / steps);
    std::printf("achieved GFLOP/s:    %.1f%s\n",
                network_seconds > 0 ? g_flops / 1e9 / network_seconds : 0.0,
                cuda ? " (over the whole run)" : "");
    // Where the time goes: the top-level ops, largest first, as shares of the whole run.
    std::vector<std::pair<double, std::string>> ops;
    for (const auto& [name, seconds] : g_op_seconds) ops.emplace_back(seconds, name);
    std::sort(ops.rbegin(), ops.rend());
    if (cuda) return 0;  // op times would be launch times only
    std::printf("time by op (top level, %% of total, timing callbacks included):");
    for (std::size_t i = 0; i < ops.size() && i < 8; ++i) {
      std::printf("%s %s %.1f%%", i ? "," : "", ops[i].second.c_str(),
                  100.0 * ops[i].first / total);
    }
    std::printf("\n");
    return 0;
  } catch (const std::exception& e) {
    std::string message = e.what();
    std::fprintf(stderr, "gimp-diffusion-benchmark: error: %s\n",
                 message.substr(0, message.find('\n')).c_str());
    return 1;
  }
}
