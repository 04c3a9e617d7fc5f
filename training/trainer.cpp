#include "training/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "core/thread_policy.h"
#include "models/class_names.h"
#include "models/diffusers_writer.h"
#include "training/checkpoint_io.h"
#include "training/dataset.h"
#include "training/init_weights.h"
#include "training/run_state.h"
#include "training/sample_grid.h"

namespace gd::training {

namespace {

namespace fs = std::filesystem;

// A log line, printf-style (the CLI's output predates the log callback; this keeps it as it was).
__attribute__((format(printf, 1, 2))) std::string format_line(const char* format, ...) {
  va_list args, copy;
  va_start(args, format);
  va_copy(copy, args);
  const int size = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string line(static_cast<std::size_t>(std::max(size, 0)), '\0');
  std::vsnprintf(line.data(), line.size() + 1, format, args);
  va_end(args);
  return line;
}

// Autocast to bfloat16 on the training device for the forward pass (convolutions and matmuls;
// norms and the loss stay float32), restored on scope exit. bf16 needs no loss scaling.
struct Bf16Autocast {
  Bf16Autocast(bool on, c10::DeviceType device) : on_(on), device_(device) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(device_);
    prev_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_dtype(device_, at::kBFloat16);
    at::autocast::set_autocast_enabled(device_, true);
  }
  ~Bf16Autocast() {
    if (!on_) return;
    at::autocast::set_autocast_enabled(device_, prev_enabled_);
    at::autocast::set_autocast_dtype(device_, prev_dtype_);
    at::autocast::clear_cache();
  }
  bool on_;
  c10::DeviceType device_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

// Two parameter groups: the class embedding's rows are each trained only when their image is
// in the batch (batch / classes of the steps), so they get a learning rate that much higher
// (at least --lr) to move about as fast as the dense weights. Without --classes, one group.
void build_optimizer(const TrainSettings& s, const core::NamedParams& params, RunState& run) {
  std::vector<at::Tensor> leaves, class_leaves;
  for (const auto& [name, p] : params) {
    p.requires_grad_(true);
    (name == "class_embedding.weight" ? class_leaves : leaves).push_back(p);
  }
  auto adamw = [&s](double lr) {
    return torch::optim::AdamWOptions(lr).betas({0.9, 0.99}).weight_decay(s.weight_decay);
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(leaves, std::make_unique<torch::optim::AdamWOptions>(adamw(s.lr)));
  run.base_lr.push_back(s.lr);
  if (!class_leaves.empty()) {
    const double scale =
        std::max(1.0, static_cast<double>(s.unet.num_class_embeds) / (s.batch * s.accumulate));
    groups.emplace_back(class_leaves,
                        std::make_unique<torch::optim::AdamWOptions>(adamw(s.lr * scale)));
    run.base_lr.push_back(s.lr * scale);
  }
  run.optimizer = std::make_unique<torch::optim::AdamW>(std::move(groups), adamw(s.lr));
}

// A new run at step 0: the networks on the run's device, initial (or --init) weights drawn from
// the generator seeded with `seed`, the optimizer, and the EMA starting as a copy.
RunState start_run(const TrainSettings& s, std::uint64_t seed, models::DiffusersUNet* init_net,
                   const TrainLog& log) {
  RunState run;
  const auto options = at::TensorOptions().dtype(at::kFloat).device(s.device);
  run.net = std::make_unique<models::DiffusersUNet>(s.unet, options);
  run.ema_net = std::make_unique<models::DiffusersUNet>(s.unet, options);
  run.gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const core::NamedParams& params = run.net->params()->all();
  init_weights(params, run.gen, init_net, s.init, log);
  build_optimizer(s, params, run);
  run.ema = std::make_unique<core::Ema>(run.ema_net->params()->all(), s.ema_decay, s.ema_every,
                                        s.ema_after);
  run.ema->copy_from(params);
  return run;
}

// The gradients of one optimizer step: s.accumulate micro-batches, each loss divided by
// s.accumulate so the gradients add up to those of the mean. Returns the step's loss.
double accumulate_gradients(const TrainSettings& s, const std::vector<at::Tensor>& images,
                            RunState& run, const core::DiffusionLoss& loss) {
  models::DiffusersUNet* net = run.net.get();
  at::Tensor labels;  // class-conditional runs: [B] int64, each crop's image; set for every batch
  const core::ModelFn fn = [net, &labels](const at::Tensor& x, const at::Tensor& t,
                                          const std::optional<at::Tensor>& sc) {
    core::Conditioning cond;
    cond.class_labels = labels;
    cond.self_cond = sc;
    return net->forward(x, t, cond);
  };
  double step_loss = 0;
  for (int micro = 0; micro < s.accumulate; ++micro) {
    // Crops are cut on the CPU (the generator lives there), then moved: [B, 3, S, S].
    at::Tensor crop_labels;  // [B] int64: each crop's image
    const at::Tensor x0 = random_batch(images, s.batch, s.size, run.gen, &crop_labels).to(s.device);
    labels = s.classes ? crop_labels.to(s.device) : at::Tensor();
    at::Tensor value;
    {
      Bf16Autocast autocast(s.bf16, s.device.type());
      value = loss.compute(fn, x0, run.gen) / s.accumulate;
    }
    value.backward();
    step_loss += value.item<double>();
  }
  return step_loss;
}

// Clips the gradients, sets the step's learning rate, steps the optimizer and the EMA. Returns
// the learning-rate multiplier of the step (the cooldown's).
double optimizer_step(const TrainSettings& s, RunState& run) {
  const core::NamedParams& params = run.net->params()->all();
  if (s.clip > 0) core::clip_grad_norm(params, s.clip);
  // The rate depends on the step alone, so a resumed run anneals exactly as an unbroken one.
  const double factor = core::cooldown_factor(run.step, s.steps, s.cooldown);
  for (std::size_t g = 0; g < run.base_lr.size(); ++g) {
    static_cast<torch::optim::AdamWOptions&>(run.optimizer->param_groups()[g].options())
        .lr(run.base_lr[g] * factor);
  }
  run.optimizer->step();
  run.optimizer->zero_grad();
  run.ema->update(params);
  ++run.step;
  return factor;
}

// The mean loss and the speed since the previous log line.
class LossMeter {
 public:
  explicit LossMeter(std::int64_t step) : logged_step_(step) {}
  void add(double loss) {
    sum_ += loss;
    ++count_;
  }
  // "step 50/1000  loss 0.03125  2.51 steps/s" (and "  lr x0.500" in a cooldown run), then
  // starts over.
  std::string line(std::int64_t step, const TrainSettings& s, double factor) {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - last_log_).count();
    std::string text =
        format_line("step %lld/%lld  loss %.5f  %.2f steps/s", static_cast<long long>(step),
                    static_cast<long long>(s.steps), sum_ / count_,
                    seconds > 0 ? static_cast<double>(step - logged_step_) / seconds : 0.0);
    if (s.cooldown > 0) text += format_line("  lr x%.3f", factor);
    last_log_ = now;
    logged_step_ = step;
    sum_ = 0;
    count_ = 0;
    return text;
  }

 private:
  std::chrono::steady_clock::time_point last_log_ = std::chrono::steady_clock::now();
  std::int64_t logged_step_;
  double sum_ = 0;
  int count_ = 0;
};

// The checkpoint, then the model folder with the EMA weights (and a --classes run's names).
void save_run(const TrainSettings& s, const Dataset& data, RunState& run) {
  save_checkpoint(checkpoint_path(s.out), s.stored_options, run);
  models::write_diffusers_folder(s.out, s.unet, s.schedule, run.ema_net->params()->all());
  const std::string classes_file = (fs::path(s.out) / models::kClassNamesFile).string();
  std::error_code ec;
  if (s.classes) models::write_class_names(classes_file, data.names);
  else fs::remove(classes_file, ec);  // a folder reused from a --classes run
}

void write_samples(const TrainSettings& s, RunState& run, const TrainLog& log) {
  char name[64];
  std::snprintf(name, sizeof name, "sample-%07lld.png", static_cast<long long>(run.step));
  const std::string path = (fs::path(state_folder(s.out)) / "samples" / name).string();
  write_sample_grid(path, s, *run.ema_net);
  log(format_line("step %lld: samples in %s", static_cast<long long>(run.step), path.c_str()));
}

void train_loop(const TrainSettings& s, const Dataset& data, RunState& run, const TrainLog& log) {
  const core::DiffusionLoss loss(s.schedule, s.loss, s.offset_noise);
  LossMeter meter(run.step);
  while (run.step < s.steps) {
    const double step_loss = accumulate_gradients(s, data.images, run, loss);
    if (!std::isfinite(step_loss)) {
      throw Error("the loss became " + std::to_string(step_loss) + " at step " +
                  std::to_string(run.step + 1) + " (try a lower --lr)");
    }
    const double factor = optimizer_step(s, run);
    meter.add(step_loss);
    if (run.step % s.log_every == 0 || run.step == s.steps) log(meter.line(run.step, s, factor));
    if ((s.save_every > 0 && run.step % s.save_every == 0) || run.step == s.steps)
      save_run(s, data, run);
    if (s.sample_every > 0 && (run.step % s.sample_every == 0 || run.step == s.steps)) {
      write_samples(s, run, log);
    }
  }
  // A run resumed already at s.steps takes no step; it still writes the model folder if an
  // interruption left none.
  if (run.step >= s.steps && !fs::exists(fs::path(s.out) / "config.json")) save_run(s, data, run);
  log(format_line("done: %s (EMA weights, step %lld)", s.out.c_str(),
                  static_cast<long long>(run.step)));
}

}  // namespace

void train(TrainSettings s, const TrainLog& log_to) {
  const TrainLog log = log_to ? log_to : [](const std::string&) {};
  check_run_folder(s.out, s.resume);
  if (s.threads > 0) at::set_num_threads(s.threads);
  core::keep_blas_on_one_thread();  // OpenBLAS's pool beside OpenMP's (core/thread_policy.h)

  const Dataset data = load_dataset(s.data, s.size, s.tile);
  if (s.classes) s.unet.num_class_embeds = static_cast<std::int64_t>(data.images.size());
  // Read before anything is written, so a bad --init leaves no run behind.
  std::unique_ptr<models::DiffusersUNet> init_net;
  if (!s.init.empty()) init_net = load_init_model(s.init);
  const fs::path state_dir = state_folder(s.out);
  std::error_code ec;
  fs::create_directories(state_dir / "samples", ec);
  if (ec) throw Error(state_dir.string() + ": cannot create the folder (" + ec.message() + ")");

  const std::uint64_t seed = s.seed.value_or(std::random_device{}() % (1ULL << 32));
  RunState run = start_run(s, seed, init_net.get(), log);
  if (s.resume) {
    load_checkpoint(checkpoint_path(s.out), run, s.device);
    log(format_line("resuming %s at step %lld on %s", s.out.c_str(),
                    static_cast<long long>(run.step), s.device.str().c_str()));
  } else {
    log(format_line("training %s: %zu images, %lld parameters, seed %llu, on %s", s.out.c_str(),
                    data.images.size(), static_cast<long long>(run.net->params()->count()),
                    static_cast<unsigned long long>(seed), s.device.str().c_str()));
  }
  train_loop(s, data, run, log);
}

}  // namespace gd::training
