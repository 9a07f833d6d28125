// The change list of a stack's top layer against the merged view of the layers below it, as
// `docker diff` and `podman diff` print it. Mirrors containers/storage pkg/archive
// OverlayChanges (the overlay driver's native diff, which podman uses when the kernel has no
// redirect_dir), reading both whiteout formats.
#pragma once

#include <string>
#include <vector>

#include "core/layer.h"
#include "core/lookup.h"
#include "core/result.h"
#include "core/whiteout.h"

namespace unionfs {

/// The letter `docker diff` prints for each kind.
enum class ChangeKind : char { kModify = 'C', kAdd = 'A', kDelete = 'D' };

struct Change {
  std::string path;  ///< absolute in the merged view: "/etc/passwd"
  ChangeKind kind;
};

/// What the top layer of `stack` changes against the merged view of the layers below it,
/// sorted by path (byte order), each path once, markers never among them. The rules are the
/// overlay driver's:
///  - a whiteout is `D`; an opaque directory over a directory below is `D` (it was replaced),
///    and its own entries follow as `A`/`C` against what was below;
///  - any other entry is `A` when nothing is below it, else `C`, except a directory whose
///    mode, size and mtime equal those below: it is `C` only for what happens under it;
///  - every parent of an `A` or `D` is `C` (the root is never listed).
/// A single-layer stack lists its whole tree as `A`. Errors: errno of reading a layer
/// (EACCES, EIO, ENOMEM...), with `*where` set to the merged path being read.
Result<std::vector<Change>> image_diff(const LayerStack& stack, const WhiteoutFormat& fmt,
                                       std::string* where = nullptr);

/// The merged root of layers [0, top): each root topmost first, stopping at an opaque one.
/// Errors: those of opening a root.
Result<DirParts> merged_root(const LayerStack& stack, const WhiteoutFormat& fmt, size_t top);

}  // namespace unionfs
