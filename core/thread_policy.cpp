#include "core/thread_policy.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace gd::core {

int decide_threads(int cores, double busy_other_cores, int requested) {
  if (requested > 0) return requested;
  cores = std::max(cores, 1);
  const int busy = busy_other_cores > 0 ? static_cast<int>(std::lround(busy_other_cores)) : 0;
  return std::max(1, cores - busy);
}

CpuTicks parse_proc_stat(const std::string& text) {
  CpuTicks t;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu ", 0) != 0) continue;
    std::istringstream fields(line.substr(4));
    long long v[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // user nice system idle iowait irq softirq steal
    int n = 0;
    while (n < 8 && fields >> v[n]) ++n;
    if (n < 4) return t;
    t.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    t.total = t.busy + v[3] + v[4];
    t.ok = true;
    return t;
  }
  return t;
}

long long parse_self_stat_ticks(const std::string& text) {
  // pid (comm) state ... : comm may hold spaces and parentheses, so count from the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(text.substr(close + 1));
  std::string field;
  // After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
  // utime(14) stime(15).
  long long utime = -1, stime = -1;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::atoll(field.c_str());
    if (i == 15) {
      stime = std::atoll(field.c_str());
      break;
    }
  }
  return utime < 0 || stime < 0 ? -1 : utime + stime;
}

namespace {

std::string read_all(const char* path) {
  std::ifstream file(path);
  std::ostringstream s;
  s << file.rdbuf();
  return s.str();
}

}  // namespace

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

double measure_busy_other_cores(int window_ms) {
  const CpuTicks a = parse_proc_stat(read_all("/proc/stat"));
  const long long self_a = parse_self_stat_ticks(read_all("/proc/self/stat"));
  std::this_thread::sleep_for(std::chrono::milliseconds(window_ms));
  const CpuTicks b = parse_proc_stat(read_all("/proc/stat"));
  const long long self_b = parse_self_stat_ticks(read_all("/proc/self/stat"));
  if (!a.ok || !b.ok || b.total <= a.total) return 0;
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  const double machine_cores = online > 0 ? static_cast<double>(online) : 1.0;
  const double ticks_per_core = static_cast<double>(b.total - a.total) / machine_cores;
  double busy = static_cast<double>(b.busy - a.busy);
  if (self_a >= 0 && self_b >= self_a) busy -= static_cast<double>(self_b - self_a);
  return std::max(0.0, busy / ticks_per_core);
}

std::string ThreadChoice::describe() const {
  char text[160];
  if (!automatic) {
    std::snprintf(text, sizeof text, "%d thread%s (%s)", threads, threads == 1 ? "" : "s",
                  from_environment ? "OMP_NUM_THREADS" : "explicit");
  } else {
    std::snprintf(text, sizeof text, "%d thread%s (automatic: %d cores, %.1f busy elsewhere)",
                  threads, threads == 1 ? "" : "s", cores, busy_other_cores);
  }
  return text;
}

bool keep_blas_on_one_thread() {
  using SetThreads = void (*)(int);
  const auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!set) return false;
  set(1);
  return true;
}

ThreadChoice apply_thread_policy(int requested) {
  ThreadChoice c;
  c.cores = available_cores();
  if (requested <= 0) {
    // A user's (or the test runner's) OMP_NUM_THREADS is an explicit count too.
    const char* env = std::getenv("OMP_NUM_THREADS");
    const int n = env ? std::atoi(env) : 0;
    if (n > 0) {
      requested = n;
      c.from_environment = true;
    }
  }
  c.automatic = requested <= 0;
  if (c.automatic) c.busy_other_cores = measure_busy_other_cores();
  c.threads = decide_threads(c.cores, c.busy_other_cores, requested);
  at::set_num_threads(c.threads);
  c.blas_single_threaded = keep_blas_on_one_thread();
  return c;
}

}  // namespace gd::core
