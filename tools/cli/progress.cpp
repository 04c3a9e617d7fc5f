#include "tools/cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace gd::cli {

Progress::Progress(std::string label)
    : label_(std::move(label)), terminal_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

bool Progress::update(int done, int total) {
  if (total <= 0) return true;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? done / elapsed : 0.0;
  const double left = rate > 0 ? (total - done) / rate : 0.0;
  if (terminal_) {
    constexpr int kWidth = 30;
    const int filled = done * kWidth / total;
    std::fprintf(stderr, "\r%s [%s%s] %d/%d  %.2f steps/s  %.0fs left ", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(), done,
                 total, rate, left);
    std::fflush(stderr);
    shown_ = true;
  } else {
    const int decile = done * 10 / total;
    if (decile != last_decile_) {
      last_decile_ = decile;
      std::fprintf(stderr, "%s: step %d/%d, %.2f steps/s, %.0fs left\n", label_.c_str(), done,
                   total, rate, left);
    }
  }
  return true;
}

void Progress::finish() {
  if (terminal_ && shown_) std::fputc('\n', stderr);
  shown_ = false;
}

}  // namespace gd::cli
