// `import`: an image archive (docker-archive or OCI layout tar) into one directory per layer,
// bottom to top ("DIR/000-<diff_id>", ...), plus DIR/stack, the layer spec to mount them with.
// Every digest is checked; the result is built in a temporary sibling of DIR and renamed into
// place, so a failure leaves nothing behind.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/image_archive.h"
#include "core/layer.h"
#include "core/layer_extract.h"
#include "core/result.h"
#include "core/unique_fd.h"

namespace unionfs {

/// An opened archive and the image chosen in it.
struct ImportSource {
  ArchiveIndex index;  ///< owns the archive's fd
  ImagePlan plan;
  uint64_t total_bytes = 0;  ///< bytes import_layers() reads (for a progress bar)
};

struct ImportOptions {
  /// Marker format of the layers: kAuto = the kernel's as root, OCI's otherwise.
  WhiteoutMode format = WhiteoutMode::kAuto;
  /// Root: owners and device nodes are restored, kernel markers can be written.
  bool privileged = false;
};

struct ImportedLayer {
  std::string dir;      ///< absolute path of the layer directory (after the rename)
  std::string diff_id;  ///< hex
  ExtractStats stats;
};

struct ImportResult {
  std::vector<ImportedLayer> layers;  ///< bottom first
  std::string stack;                  ///< "DIR/000-..:DIR/001-..", as written to DIR/stack
};

/// Opens `archive` and picks the image (`image` names it, or the archive holds one). Errors
/// with `*why`: ENOENT and the like for the file, EPROTONOSUPPORT for a compressed archive,
/// those of ArchiveIndex::read and plan_image.
Result<ImportSource> open_import(const std::string& archive, const std::string& image,
                                 std::string* why);

/// Throws SetupError unless `dir` may receive an import: absent or an empty directory, its
/// parent exists, and its path has no ':' (the layer spec separator).
void check_import_target(const std::string& dir);

/// Extracts the layers of `src` into `dir` (checked by check_import_target), checking each
/// layer blob's digest before extracting it and its diff_id while extracting. `bytes` is told
/// of the archive bytes read. Errors with `*why` naming the layer: those of extract_layer,
/// EINVAL for a digest mismatch or a missing layer member, those of the decompressor.
Result<ImportResult> import_layers(const ImportSource& src, const std::string& dir,
                                   const ImportOptions& opts,
                                   const std::function<void(uint64_t)>& bytes, std::string* why);

}  // namespace unionfs
