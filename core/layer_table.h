// Per-layer statistics of a stack, as `docker history` shows an image: a content ID, size,
// file and whiteout counts, and the bytes each layer holds that the layers above hide.
// One walk of each layer (for its ID and counts) and one walk of the merged view.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/layer.h"
#include "core/result.h"
#include "core/whiteout.h"

namespace unionfs {

struct LayerStats {
  size_t layer = 0;         ///< index in the stack, 0 = bottom
  std::string path;
  std::string id;           ///< XXH3-128 of the layer's tree, 32 hex digits
  uint64_t size = 0;        ///< bytes of regular files (a hard-linked inode once)
  uint64_t files = 0;       ///< entries that are neither directories nor markers
  uint64_t whiteouts = 0;   ///< whiteouts, both formats
  uint64_t opaque_dirs = 0; ///< directories marked opaque, both formats
  uint64_t hidden = 0;      ///< of `size`, the bytes not visible through the stack
};

struct LayerTable {
  std::vector<LayerStats> layers;  ///< bottom to top, as in the stack
  uint64_t on_disk = 0;            ///< sum of the layer sizes
  uint64_t visible = 0;            ///< bytes of regular files in the merged view
  uint64_t wasted = 0;             ///< on_disk - visible: bytes hidden by upper layers
};

/// The content ID of one layer: XXH3-128 over its tree in name order (bytes), each entry as
/// its relative path, mode, owner, and its link target, device number or file contents,
/// integers little-endian, so the ID depends on nothing but the tree. Times, inode numbers
/// and xattrs are left out (they differ across copies); an opaque directory is marked.
/// Also fills the counts and size of `stats`. Errors: errno of reading the layer, with
/// `*where` set to the path inside it.
Status scan_layer(const WhiteoutFormat& fmt, int root_fd, LayerStats& stats,
                  std::string* where = nullptr);

/// The table of a whole stack; `step` is called once per layer scanned and once after the
/// merged walk (layers + 1 calls). Errors: as scan_layer, `*where` naming the layer.
Result<LayerTable> layer_table(const LayerStack& stack, const WhiteoutFormat& fmt,
                               const std::function<void()>& step = {},
                               std::string* where = nullptr);

}  // namespace unionfs
