// The daemon's multi-threaded session loop, leader/follower: one thread at a time reads
// /dev/fuse (the leader) and answers what is quick to answer itself (lookups, attributes,
// forgets, xattr reads...), then reads again, as a single-threaded loop does: for a caller
// that waits for each answer no other thread is woken and nothing alternates between threads
// (libfuse's loop wakes the thread that has waited longest for every request; on one CPU that
// cost ~6 us a cold lookup, bench_e2e). Before a request that may block (data I/O, listings,
// namespace changes) or when the core says it is about to block (about_to_block: a deep
// directory's first use, a copy-up), the leader hands the reading over to an idle follower,
// or starts one (up to max_threads), so that slow work never holds the others up. One follower
// is started with the loop, so that the first hand-over does not pay for creating a thread.
#pragma once

#include <fuse_lowlevel.h>

namespace unionfs::fuse {

/// Serves `se` until it is unmounted or exits; 0 then, or a negative errno. With max_idle >= 0
/// a started thread ends when that many others are idle.
int run_session_loop(fuse_session* se, unsigned max_threads, int max_idle);

}  // namespace unionfs::fuse
