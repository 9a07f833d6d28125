// The layer stack: parses "lower1:...:upper" (bottom to top), validates every directory and
// opens one root fd per layer. Setup errors throw SetupError (the only exceptions in core).
// Mirrors the layer checks of the kernel's fs/overlayfs/super.c and params.c.
#pragma once

#include <sys/types.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "core/unique_fd.h"

namespace unionfs {

/// A bad command line or layer set-up; what() is the one-line message for the user.
class SetupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// How whiteouts and opaque markers are read and written.
enum class WhiteoutMode {
  kAuto,     ///< read both formats; write the kernel's as root, OCI's otherwise
  kOverlay,  ///< read and write only the kernel's format (".wh." names are plain files)
  kOci,      ///< read both formats; write OCI ".wh." files
};

struct Layer {
  std::string path;  ///< canonical absolute path
  UniqueFd root;     ///< O_RDONLY | O_DIRECTORY
  dev_t dev = 0;
  ino_t ino = 0;
};

class LayerStack {
 public:
  /// Parses and opens `spec`. With `read_only`, every directory is a lower layer.
  /// Throws SetupError naming the offending path and the reason.
  static LayerStack open(const std::string& spec, bool read_only);

  [[nodiscard]] size_t size() const { return layers_.size(); }
  [[nodiscard]] const Layer& layer(size_t i) const { return layers_[i]; }
  /// Index of the writable upper layer: the topmost, unless read-only.
  [[nodiscard]] bool has_upper() const { return has_upper_; }
  [[nodiscard]] size_t upper_index() const { return layers_.size() - 1; }
  [[nodiscard]] bool is_upper(size_t i) const { return has_upper_ && i == upper_index(); }
  [[nodiscard]] size_t top() const { return layers_.size() - 1; }

  /// The st_ino reported for an object with this (dev, ino) in some layer: the real number
  /// when all layers share one filesystem (as overlayfs does), else a mix that keeps
  /// numbers from different filesystems apart.
  [[nodiscard]] uint64_t st_ino(dev_t dev, ino_t ino) const;

 private:
  std::vector<Layer> layers_;
  std::vector<dev_t> devs_;  // distinct devices, in layer order
  bool has_upper_ = false;
};

/// Splits a layer spec on ':'; an empty spec or component throws SetupError.
std::vector<std::string> split_layer_spec(const std::string& spec);

}  // namespace unionfs
