#include "tools/cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace gd::cli {

Progress::Progress(std::string label, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      terminal_(isatty(STDERR_FILENO) == 1),
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
    std::fprintf(stderr, "\r%s [%s%s] %d/%d  %.2f %ss/s  %.0fs left ", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(), done,
                 total, rate, unit_.c_str(), left);
    std::fflush(stderr);
    shown_ = true;
  } else {
    const int decile = done * 10 / total;
    if (decile != last_decile_) {
      last_decile_ = decile;
      std::fprintf(stderr, "%s: %s %d/%d, %.2f %ss/s, %.0fs left\n", label_.c_str(), unit_.c_str(),
                   done, total, rate, unit_.c_str(), left);
    }
  }
  return true;
}

void Progress::finish() {
  if (terminal_ && shown_) std::fputc('\n', stderr);
  shown_ = false;
}

}  // namespace gd::cli
