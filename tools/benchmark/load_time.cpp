// gimp-diffusion-load-benchmark: how long a model takes to be ready, and LibTorch's own start-up.
//
//   gimp-diffusion-load-benchmark --model PATH [--precision fp32|bf16] [--repeat N]
//                                 [--no-kernel-check] [--cache cold|warm|both]
//
// Every measurement is a fresh process, as each CLI run and each plug-in call is: this program
// starts itself again N times (the file stays in the page cache after the first). Reported, min
// and median over the N:
//   process      start to exit of a process that returns at the top of main(): the dynamic
//                loading and static initialisation of LibTorch and the engine (exec to exit of
//                /bin/true beside it, for the floor)
//   first op     main() to a first small tensor operation done (LibTorch's lazy set-up: the
//                dispatcher, CPU capability, allocator), then a first convolution (oneDNN's)
//   header       models::read_model_info: what the plug-in's dialog reads for its model line
//                (configuration and weight shapes, no weights)
//   load         gd::load_model as the CLI calls it, by stage: read (configuration, checkpoint
//                header, mapping), build (layers and parameter tensors), fill (the weights),
//                layout (channels-last), check (the kernel check, models/conv_guard.h), probe
//                (the network memory probe, core/memory_estimate.h), and the total
// and the loading process's peak RSS. The kernel check's verdicts and the memory probe's fit come
// from a disk cache on a second start (models/load_cache.h): "cold" processes each get a fresh
// empty cache folder, "warm" ones share a folder one unmeasured process filled first; "both" (the
// default) interleaves them and reports each. A benchmark, not a test: it asserts nothing.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/memory_policy.h"
#include "engine/gimp_diffusion.h"
#include "engine/model_impl.h"
#include "models/model_header.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  return fallback;
}

bool flag(int argc, char** argv, const std::string& name) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i] == "--" + name) return true;
  }
  return false;
}

// One loading process: its figures as "name=value" pairs on one line.
int measure_once(const gd::Request& request) {
  gd::core::reuse_freed_memory();  // as the CLI does first
  const auto main_start = Clock::now();
  at::Tensor x = at::ones({8}) + 1;  // [8]
  const double first_op = since(main_start);
  auto stage = Clock::now();
  at::Tensor y = at::conv2d(at::ones({1, 8, 8, 8}), at::ones({8, 8, 3, 3}));  // [1, 8, 6, 6]
  const double first_conv = since(stage);

  stage = Clock::now();
  const gd::models::ModelInfo info = gd::models::read_model_info(request.model_path);
  const double header = since(stage);

  stage = Clock::now();
  gd::Model model = gd::load_model(request);
  const double total = since(stage);
  const gd::models::LoadTimes& t = model.impl().loaded.times;
  std::printf(
      "first_op=%.4f first_conv=%.4f header=%.4f read=%.4f build=%.4f fill=%.4f layout=%.4f "
      "check=%.4f probe=%.4f total=%.4f configurations=%d checked=%d from_disk=%d "
      "probe_from_cache=%d\n",
      first_op, first_conv, header, t.read, t.build, t.fill, t.layout, t.check,
      model.impl().probe_seconds, total, model.impl().loaded.kernel_check.configurations,
      model.impl().loaded.kernel_check.checked, model.impl().loaded.kernel_check.from_disk,
      model.impl().probe_from_cache ? 1 : 0);
  return x.sum().item<float>() > 0 && y.numel() > 0 && info.in_channels > 0 ? 0 : 1;
}

struct Child {
  double seconds = 0;
  long peak_rss_kib = 0;
  std::string out;
};

// Runs argv to completion: wall time, peak RSS (wait4) and its standard output.
Child run(const std::vector<std::string>& args) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  Child child;
  const auto start = Clock::now();
  pid_t pid = -1;
  const int err = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (err != 0) {
    close(pipe_fds[0]);
    throw std::runtime_error("cannot start " + args[0]);
  }
  char buffer[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) > 0;) child.out.append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  child.seconds = since(start);
  child.peak_rss_kib = usage.ru_maxrss;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(args[0] + " " + (args.size() > 1 ? args[1] : "") + " failed");
  }
  return child;
}

std::map<std::string, double> parse_pairs(const std::string& line) {
  std::map<std::string, double> values;
  std::istringstream in(line);
  for (std::string pair; in >> pair;) {
    const auto eq = pair.find('=');
    if (eq != std::string::npos) values[pair.substr(0, eq)] = std::stod(pair.substr(eq + 1));
  }
  return values;
}

// A fresh empty folder for one process's load cache.
std::string fresh_cache_folder() {
  std::string pattern = (std::filesystem::temp_directory_path() / "gd-load-cache-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("cannot make a cache folder");
  return pattern;
}

// Runs `once` with GIMP_DIFFUSION_CACHE_DIR=folder.
Child run_with_cache(const std::vector<std::string>& once, const std::string& folder) {
  setenv("GIMP_DIFFUSION_CACHE_DIR", folder.c_str(), 1);
  return run(once);
}

void print_row(const char* label, std::vector<double> v, const char* unit = "s") {
  std::sort(v.begin(), v.end());
  const double median =
      v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  std::printf("%-34s min %8.4f %s   median %8.4f %s\n", label, v.front(), unit, median, unit);
}

}  // namespace

int main(int argc, char** argv) {
  if (flag(argc, argv, "exit-at-main")) return 0;  // the process start-up measurement
  try {
    gd::Request request;
    request.model_path = arg(argc, argv, "model", "");
    request.precision = arg(argc, argv, "precision", "fp32");
    request.kernel_check = !flag(argc, argv, "no-kernel-check");
    if (request.model_path.empty()) {
      std::fprintf(stderr,
                   "usage: gimp-diffusion-load-benchmark --model PATH [--precision fp32|bf16] "
                   "[--repeat N] [--no-kernel-check] [--cache cold|warm|both]\n");
      return 2;
    }
    if (flag(argc, argv, "once")) return measure_once(request);

    const int repeat = std::max(1, std::stoi(arg(argc, argv, "repeat", "5")));
    const std::string self = "/proc/self/exe";
    char exe[4096];
    const ssize_t n = readlink(self.c_str(), exe, sizeof exe - 1);
    if (n <= 0) throw std::runtime_error("cannot find this program (/proc/self/exe)");
    exe[n] = '\0';
    std::vector<std::string> once = {exe,           "--once",         "--model", request.model_path,
                                     "--precision", request.precision};
    if (!request.kernel_check) once.push_back("--no-kernel-check");

    const std::string cache = arg(argc, argv, "cache", "both");
    if (cache != "cold" && cache != "warm" && cache != "both") {
      throw std::runtime_error("--cache must be cold, warm or both, not '" + cache + "'");
    }
    std::vector<std::string> kinds;
    if (cache != "warm") kinds.push_back("cold");
    if (cache != "cold") kinds.push_back("warm");
    const std::string warm_folder = fresh_cache_folder();
    if (cache != "cold") run_with_cache(once, warm_folder);  // fills it, unmeasured

    std::map<std::string, std::map<std::string, std::vector<double>>> figures;  // kind -> name
    std::map<std::string, std::vector<double>> rss;
    std::vector<double> start_up, floor;
    for (int i = 0; i < repeat; ++i) {  // interleaved, so that machine load hits all alike
      floor.push_back(run({"/bin/true"}).seconds);
      start_up.push_back(run({exe, "--exit-at-main"}).seconds);
      for (const std::string& kind : kinds) {
        const std::string folder = kind == "cold" ? fresh_cache_folder() : warm_folder;
        const Child c = run_with_cache(once, folder);
        if (kind == "cold") std::filesystem::remove_all(folder);
        for (const auto& [key, value] : parse_pairs(c.out)) figures[kind][key].push_back(value);
        rss[kind].push_back(c.peak_rss_kib / 1024.0);
      }
    }
    std::filesystem::remove_all(warm_folder);
    std::printf("model: %s, %s, %d fresh processes each\n", request.model_path.c_str(),
                request.precision.c_str(), repeat);
    print_row("process start to exit (/bin/true)", floor);
    print_row("process start to exit (LibTorch)", start_up);
    for (const std::string& kind : kinds) {
      std::map<std::string, std::vector<double>>& f = figures[kind];
      std::printf(
          "-- %s cache (%s)\n", kind.c_str(),
          kind == "cold" ? "a fresh empty folder per process" : "filled by an earlier start");
      print_row("first tensor op", f["first_op"]);
      print_row("first convolution", f["first_conv"]);
      print_row("header only (the dialog's model line)", f["header"]);
      const char* stages[][2] = {{"read", "load: read"},
                                 {"build", "load: build"},
                                 {"fill", "load: fill"},
                                 {"layout", "load: channels-last"},
                                 {"check", "load: kernel check"},
                                 {"probe", "load: memory probe"},
                                 {"total", "load: total (gd::load_model)"}};
      for (const auto& [key, label] : stages) print_row(label, f[key]);
      std::printf("%-34s %.0f configurations, %.0f checked now, %.0f from the cache; probe %s\n",
                  "kernel check (last process)", f["configurations"].back(), f["checked"].back(),
                  f["from_disk"].back(),
                  f["probe_from_cache"].back() > 0 ? "from the cache" : "measured");
      print_row("peak RSS of the loading process", rss[kind], "MiB");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gimp-diffusion-load-benchmark: error: %s\n", e.what());
    return 1;
  }
}
