// See blocking.h.
#include "core/blocking.h"

#include <atomic>

namespace unionfs {

namespace {
std::atomic<BlockingHandler> g_handler{nullptr};
}  // namespace

void set_blocking_handler(BlockingHandler handler) {
  g_handler.store(handler, std::memory_order_release);
}

void about_to_block() {
  if (BlockingHandler h = g_handler.load(std::memory_order_acquire)) h();
}

}  // namespace unionfs
