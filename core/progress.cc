// Progress bar: "\r" redraws on one stderr line, throttled, erased at the end.
#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace unionfs {
namespace {

constexpr unsigned kBarWidth = 30;
constexpr auto kRedrawEvery = std::chrono::milliseconds(100);

}  // namespace

Progress::Progress(std::string label, uint64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled) {}

Progress::~Progress() {
  if (drawn_) std::fputs("\r\033[K", stderr);
}

bool Progress::on_terminal() { return ::isatty(STDERR_FILENO) == 1; }

void Progress::advance(uint64_t n) {
  done_ += n;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < kRedrawEvery && done_ < total_) return;
  last_ = now;
  draw();
}

std::string Progress::render(const std::string& label, uint64_t done, uint64_t total,
                             unsigned width) {
  const uint64_t shown = std::min(done, total);
  const unsigned fill =
      total == 0 ? width : static_cast<unsigned>(shown * width / total);
  std::string bar = label + " [";
  bar.append(fill, '=');
  if (fill < width) {
    bar += '>';
    bar.append(width - fill - 1, ' ');
  }
  bar += "] " + std::to_string(shown) + "/" + std::to_string(total);
  return bar;
}

void Progress::draw() {
  const std::string bar = render(label_, done_, total_, kBarWidth);
  std::fprintf(stderr, "\r%s\033[K", bar.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace unionfs
