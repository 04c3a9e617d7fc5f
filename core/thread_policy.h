// Intra-op thread count for a CPU run, chosen so that other load on the machine never makes a
// run slower than its single-thread time.
//
// Why: LibTorch's CPU kernels run on OpenMP (libgomp). After each parallel region libgomp's
// threads spin at the barrier; when another process holds one of the cores, the thread that
// is descheduled stalls every barrier until the scheduler gives it a slice back. Measured on a
// 2-core machine with one core kept busy by another process (google/ddpm-cifar10-32's
// architecture, 32x32, dpmpp_2m 20 steps): 1 thread 4.5 s, 2 threads 20.2 s.
//
// What can be changed, and when: libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in its
// constructor, when the shared library is loaded, which is before main() of any program linked
// against LibTorch. Setting them with setenv in main() has no effect (only a re-exec would), so
// the policy acts through the thread count instead: at::set_num_threads (omp_set_num_threads)
// takes effect at the next parallel region and may change between runs.
//
// The rule (decide_threads): with N cores of which B are kept busy by other processes,
// use max(1, N - B) threads. On an idle machine that is all cores (the multi-thread speed-up
// is kept); with other load, every thread we start has a core of its own, so no barrier waits
// on a descheduled thread. B is measured just before the run from /proc/stat over a short
// window, minus this process's own CPU time in that window.
//
// BLAS: Debian's LibTorch calls the system BLAS, OpenBLAS, for matrix products (linear layers,
// attention, einsum). libopenblas0-pthread runs its own thread pool beside OpenMP's, and its
// threads also spin after each call: with two OpenMP threads on two cores the two pools took
// each other's cores, and a network with attention between its convolutions (the
// denoising-diffusion-pytorch Unet at 128x128) ran 0.68 s per call against 0.24 s with
// OpenBLAS on one thread, 0.36 s with everything on one thread (docs/benchmarks.md). So the
// policy keeps OpenBLAS on one thread: its products run on the calling thread, inside OpenMP's
// pool when ATen parallelises around them. openblas_set_num_threads takes effect at once; it is
// looked up at run time, so another BLAS (no such symbol) is left alone.
#pragma once

#include <string>

namespace gd::core {

// Pure decision: cores available to this process, busy cores measured (other processes'
// CPU time in core units, e.g. 0.97), and the explicit request (0 = automatic) -> threads.
// A busy count is counted as a whole core from 0.5 up (rounded to nearest).
int decide_threads(int cores, double busy_other_cores, int requested);

// CPU time of the whole machine and of this process, in clock ticks, as read from
// /proc/stat ("cpu " line) and /proc/self/stat. Pure parsers, for testing.
struct CpuTicks {
  long long busy = 0;   // user + nice + system + irq + softirq + steal
  long long total = 0;  // busy + idle + iowait
  bool ok = false;
};
CpuTicks parse_proc_stat(const std::string& text);
long long parse_self_stat_ticks(const std::string& text);  // utime + stime; -1 if unreadable

struct ThreadChoice {
  int threads = 1;
  int cores = 1;
  double busy_other_cores = 0;  // measured; 0 when explicit or not measurable
  bool automatic = true;
  bool from_environment = false;  // the count came from OMP_NUM_THREADS (explicit, no measuring)
  bool blas_single_threaded = false;  // OpenBLAS found and set to one thread
  // "2 threads (automatic: 2 cores, 0.0 busy)" / "1 thread (--threads 1)"-style text, without
  // the front end's option name: "1 thread (explicit)".
  std::string describe() const;
};

// Cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

// Other processes' busy cores, sampled over window_ms (0 if /proc cannot be read).
double measure_busy_other_cores(int window_ms = 100);

// Sets OpenBLAS, when it is the BLAS LibTorch loaded, to one thread; false when there is none.
bool keep_blas_on_one_thread();

// Decides (measuring the load when requested == 0) and applies it with at::set_num_threads
// and keep_blas_on_one_thread.
// requested == 0 with OMP_NUM_THREADS set to N > 0 in the environment uses N, unmeasured
// (the tests pin 1 this way).
ThreadChoice apply_thread_policy(int requested);

}  // namespace gd::core
