// A progress bar for long tool runs (layer tables of deep stacks), drawn on stderr only when
// stderr is a terminal: a pipe or a log file stays clean, and stdout never carries it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace unionfs {

class Progress {
 public:
  /// A bar for `total` steps named `label`; drawn only if `enabled`.
  Progress(std::string label, uint64_t total, bool enabled = on_terminal());
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  /// Erases the bar, so that what follows starts on a clean line.
  ~Progress();

  /// Whether stderr is a terminal.
  static bool on_terminal();

  /// Counts `n` more steps done; redraws at most ten times a second.
  void advance(uint64_t n = 1);
  [[nodiscard]] uint64_t done() const { return done_; }
  [[nodiscard]] bool enabled() const { return enabled_; }
  /// The bar as drawn for `done` of `total` steps, `width` cells wide (for tests).
  static std::string render(const std::string& label, uint64_t done, uint64_t total,
                            unsigned width);

 private:
  void draw();

  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace unionfs
