// The thread policy's pure parts: the decision (cores, busy cores, request -> threads) and the
// /proc parsers, and OpenBLAS kept on one thread. No timings here: the speed figures are in
// docs/benchmarks.md.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include "core/thread_policy.h"

namespace {

using gd::core::decide_threads;

TEST(ThreadPolicy, IdleMachineUsesEveryCore) {
  EXPECT_EQ(decide_threads(2, 0.0, 0), 2);
  EXPECT_EQ(decide_threads(8, 0.2, 0), 8);
  EXPECT_EQ(decide_threads(1, 0.0, 0), 1);
}

TEST(ThreadPolicy, BusyCoresAreLeftToTheirOwners) {
  EXPECT_EQ(decide_threads(2, 1.0, 0), 1);
  EXPECT_EQ(decide_threads(2, 0.6, 0), 1);  // half a core or more counts as busy
  EXPECT_EQ(decide_threads(2, 0.4, 0), 2);
  EXPECT_EQ(decide_threads(8, 3.0, 0), 5);
}

TEST(ThreadPolicy, NeverFewerThanOne) {
  EXPECT_EQ(decide_threads(2, 2.0, 0), 1);
  EXPECT_EQ(decide_threads(2, 5.0, 0), 1);
  EXPECT_EQ(decide_threads(0, 0.0, 0), 1);
  EXPECT_EQ(decide_threads(4, -1.0, 0), 4);
}

TEST(ThreadPolicy, ExplicitCountWins) {
  EXPECT_EQ(decide_threads(2, 1.0, 2), 2);
  EXPECT_EQ(decide_threads(2, 0.0, 1), 1);
  EXPECT_EQ(decide_threads(2, 0.0, 4), 4);
}

TEST(ThreadPolicy, ParsesProcStat) {
  const auto t = gd::core::parse_proc_stat(
      "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nintr 1 2\n");
  ASSERT_TRUE(t.ok);
  EXPECT_EQ(t.busy, 100 + 5 + 50 + 3 + 2 + 1);
  EXPECT_EQ(t.total, t.busy + 1000 + 20);
  EXPECT_FALSE(gd::core::parse_proc_stat("nothing here\n").ok);
  EXPECT_FALSE(gd::core::parse_proc_stat("cpu  1 2\n").ok);
}

TEST(ThreadPolicy, ParsesSelfStatWithAwkwardName) {
  // comm may contain spaces and ')': fields count from the last ')'.
  EXPECT_EQ(gd::core::parse_self_stat_ticks(
                "1234 (a) b c) S 1 1234 1234 0 -1 4194304 100 0 0 0 70 30 0 0 20 0 1 0"),
            100);
  EXPECT_EQ(gd::core::parse_self_stat_ticks("garbage"), -1);
}

TEST(ThreadPolicy, ChoiceSaysHowManyThreads) {
  gd::core::ThreadChoice c;
  c.threads = 1;
  c.cores = 2;
  c.busy_other_cores = 1.0;
  EXPECT_EQ(c.describe(), "1 thread (automatic: 2 cores, 1.0 busy elsewhere)");
  c.automatic = false;
  c.threads = 2;
  EXPECT_EQ(c.describe(), "2 threads (explicit)");
}

// OpenBLAS's own pool beside OpenMP's collapsed runs with attention (core/thread_policy.h).
TEST(ThreadPolicy, OpenBlasIsKeptOnOneThread) {
  using SetThreads = void (*)(int);
  using GetThreads = int (*)();
  const auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  const auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (!set || !get) GTEST_SKIP() << "LibTorch's BLAS here is not OpenBLAS";
  set(2);
  ASSERT_EQ(get(), 2) << "cannot observe OpenBLAS's thread count";
  const gd::core::ThreadChoice c = gd::core::apply_thread_policy(2);
  EXPECT_TRUE(c.blas_single_threaded);
  EXPECT_EQ(get(), 1);
  EXPECT_EQ(at::get_num_threads(), 2);
}

TEST(ThreadPolicy, MeasurementIsANonNegativeNumber) {
  EXPECT_GE(gd::core::measure_busy_other_cores(20), 0.0);
  EXPECT_GE(gd::core::available_cores(), 1);
}

}  // namespace
