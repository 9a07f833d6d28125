// Squash: merges a range of a stack's layers into one new layer directory, as `docker build
// --squash` and `podman build --squash` flatten an image. The merged view is written with its
// hard links, holes, xattrs, owners, modes and times; markers are kept only where they still
// hide something in the layers below the range. Reads both whiteout formats (lookup.h rules).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/layer.h"
#include "core/result.h"
#include "core/whiteout.h"

namespace unionfs {

/// Layers bottom..top of a stack, both inclusive, indexed 0 = bottom as in "l0:l1:...:top".
struct SquashRange {
  size_t bottom = 0;
  size_t top = 0;
};

/// Parses "I:J" (inclusive, bottom-to-top indices) for a stack of `layers` layers; an empty
/// `spec` is the whole stack. Throws SetupError when malformed, reversed or out of range.
SquashRange parse_squash_range(const std::string& spec, size_t layers);

struct SquashOptions {
  SquashRange range;
  /// How markers are written: kAuto writes the kernel's format when `privileged`, OCI's ".wh."
  /// files otherwise; kOci always OCI; kOverlay always the kernel's.
  WhiteoutMode output = WhiteoutMode::kAuto;
  /// Root: owners are kept (chown), trusted.* xattrs are copied and written.
  bool privileged = false;
};

struct SquashStats {
  uint64_t dirs = 0;         ///< directories written, the root included
  uint64_t files = 0;        ///< non-directories written (a hard link counts as a file)
  uint64_t hard_links = 0;   ///< of `files`, those made as links to an earlier one
  uint64_t bytes = 0;        ///< regular-file bytes copied (a linked inode once)
  uint64_t whiteouts = 0;    ///< whiteouts written (partial squash only)
  uint64_t opaque_dirs = 0;  ///< opaque markers written (partial squash only)
};

/// Checks that `outdir` may receive a squash of `stack`: it does not exist or is an empty
/// directory, its parent exists, and neither it nor any parent is a layer of the stack.
/// Throws SetupError naming the path and the reason; writes nothing.
void check_squash_target(const LayerStack& stack, const std::string& outdir);

/// How many steps squash() reports for these options: one per entry of the range's merged
/// view. Costs a walk of the directories (no file is read); for a progress bar's total.
Result<uint64_t> squash_steps(const LayerStack& stack, const WhiteoutFormat& fmt,
                              const SquashOptions& opts);

/// Writes the merged view of `opts.range` into `outdir` (checked by check_squash_target):
/// built in a temporary sibling directory that is renamed into place at the end and removed
/// on failure. `step` is called once per entry written. Errors: errno of reading a layer or
/// writing the output (EACCES, EIO, ENOSPC, EPERM for device nodes when not root...), with
/// `*where` set to the merged path ("/etc/passwd") or to `outdir`.
Result<SquashStats> squash(const LayerStack& stack, const WhiteoutFormat& fmt,
                           const SquashOptions& opts, const std::string& outdir,
                           const std::function<void()>& step = {}, std::string* where = nullptr);

}  // namespace unionfs
