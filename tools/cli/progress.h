// Progress on stderr: a live bar (step, steps/s, time left) when stderr is a terminal, and a
// plain line every 10% otherwise (logs, batch scripts).
#pragma once

#include <chrono>
#include <string>

namespace gd::cli {

class Progress {
 public:
  explicit Progress(std::string label);
  // Returns true (never cancels: Ctrl-C ends the process, and outputs are written atomically).
  bool update(int done, int total);
  void finish();

 private:
  std::string label_;
  bool terminal_;
  int last_decile_ = -1;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace gd::cli
