// A hint from the core to the loop that serves it: the work about to start may take long
// (opening and reading every layer of a directory, copying a file up), so another thread
// should take the next request meanwhile. A no-op unless the loop installed a handler.
#pragma once

namespace unionfs {

using BlockingHandler = void (*)();

/// Installs the process-wide handler (nullptr: none).
void set_blocking_handler(BlockingHandler handler);

/// Calls the handler, if any, on this thread.
void about_to_block();

}  // namespace unionfs
