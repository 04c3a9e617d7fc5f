// Progress on stderr: a live bar (step, steps/s, time left) when stderr is a terminal, and a
// plain line every 10% otherwise (logs, batch scripts).
#pragma once

#include <chrono>
#include <string>

namespace gd::cli {

class Progress {
 public:
  // unit: what is counted ("step", or "call" for the class fit's network calls).
  explicit Progress(std::string label, std::string unit = "step");
  // Returns true (never cancels: Ctrl-C ends the process, and outputs are written atomically).
  bool update(int done, int total);
  // Starts the clock again, for a bar whose run began after other work (the class fit).
  void restart() { start_ = std::chrono::steady_clock::now(); }
  void finish();

 private:
  std::string label_;
  std::string unit_;
  bool terminal_;
  int last_decile_ = -1;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace gd::cli
