// The daemon's malloc settings: one heap grown in large steps and backed by transparent huge
// pages. A page fault costs ~13 us on a paravirtualised VM (measured here, 4 KiB pages; 0.25 us
// per 4 KiB with a huge page), and the first use of a directory merged over 256 layers of 50
// names touches ~2 MiB of fresh heap for its index: with 4 KiB pages half of its time went to
// faults (spread.sh-style first stat: 17 ms -> 8 ms). glibc reads these settings only when a
// program starts (GLIBC_TUNABLES), so the daemon starts itself again once with them set.
#pragma once

namespace unionfs::fuse {

/// The tunables added in front of the caller's own GLIBC_TUNABLES (theirs come later and win).
inline constexpr const char* kMallocTunables =
    "glibc.malloc.hugetlb=1:glibc.malloc.top_pad=4194304:glibc.malloc.arena_max=1";

/// Re-executes /proc/self/exe with argv and kMallocTunables added to GLIBC_TUNABLES, unless
/// GLIBC_TUNABLES already says anything of glibc.malloc.hugetlb (set by us or by the user, who
/// opts out with glibc.malloc.hugetlb=0). Returns only when it did not re-execute.
void reexec_with_malloc_tunables(char** argv);

}  // namespace unionfs::fuse
