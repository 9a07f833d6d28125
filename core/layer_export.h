// `export`: a layer directory as an uncompressed OCI layer tar, as containerd's and moby's
// overlay differs write one: kernel whiteouts become ".wh.NAME" files, opaque directories get
// a "DIR/.wh..wh..opq" entry, OCI markers pass through. Names are sorted, so the same directory
// always gives the same bytes; the digest of those bytes is the layer's diff_id.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/tar.h"
#include "core/unique_fd.h"
#include "core/whiteout.h"

namespace unionfs {

struct ExportStats {
  uint64_t entries = 0;  ///< tar entries written (markers included)
  uint64_t hard_links = 0;
  uint64_t whiteouts = 0;    ///< kernel whiteouts turned into ".wh.NAME"
  uint64_t opaque_dirs = 0;  ///< opaque xattrs turned into ".wh..wh..opq"
  uint64_t skipped = 0;      ///< sockets (tar has no type for them)
  uint64_t tar_bytes = 0;
  std::string diff_id;  ///< hex sha256 of the tar written
};

class LayerExport {
 public:
  /// Walks the layer directory `dir` and plans every entry (metadata read now, file data
  /// when written). Temporary names (".unionfs-cpp.tmp.*") are left out. Errors with `*why`
  /// naming the path: those of reading the directory.
  static Result<LayerExport> scan(const std::string& dir, const WhiteoutFormat& fmt,
                                  std::string* why);

  /// Regular-file bytes to write (for a progress bar).
  [[nodiscard]] uint64_t data_bytes() const { return data_bytes_; }

  /// Writes the tar to a temporary file beside `out_tar` and renames it over `out_tar`.
  /// `bytes` is told of the file data written. Errors with `*why`: those of reading the layer
  /// and writing the output; EIO if a file changed size meanwhile. Writes nothing on failure.
  Result<ExportStats> write(const std::string& out_tar, const std::function<void(uint64_t)>& bytes,
                            std::string* why);

 private:
  struct Item {
    TarEntry hdr;
    std::string src;  // layer-relative path to read the data from ("" if none)
    dev_t dev = 0;    // identity, for hard links (nlink > 1, not markers)
    ino_t ino = 0;
    nlink_t nlink = 1;
  };
  using Kids = std::vector<std::pair<std::string, Item>>;
  Status scan_dir(int fd, const std::string& rel, const TarEntry& self, std::string* why);
  Status add_child(int fd, const std::string& rel, const std::string& name,
                   const std::vector<std::string>& names, bool xwhiteouts, Kids& kids);
  void link_pass();
  Status write_items(TarWriter& tar, const std::function<void(uint64_t)>& bytes, std::string* why);

  UniqueFd root_;
  const WhiteoutFormat* fmt_ = nullptr;
  std::vector<Item> items_;
  uint64_t data_bytes_ = 0;
  ExportStats counts_;
};

/// Throws SetupError unless `out_tar` may be written: its parent exists, it is not a
/// directory, and it is not inside the layer directory `layer_dir`.
void check_export_target(const std::string& layer_dir, const std::string& out_tar);

}  // namespace unionfs
