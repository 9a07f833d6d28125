// Whiteouts and opaque markers in both on-disk formats (PEERS.md section 4):
//  kernel: whiteout = char device 0/0 (or, inside a dir whose opaque xattr is "x", an empty
//          file with the overlay.whiteout xattr); opaque = trusted|user.overlay.opaque = "y".
//  OCI:    whiteout = file ".wh.NAME"; opaque = file ".wh..wh..opq" in the directory.
// Mirrors ovl_is_whiteout / ovl_dentry_is_opaque in fs/overlayfs/{util,namei}.c.
#pragma once

#include <sys/stat.h>

#include <string>
#include <string_view>

#include "core/layer.h"
#include "core/result.h"

namespace unionfs {

inline constexpr std::string_view kOciWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOciOpaqueName = ".wh..wh..opq";
/// Prefix of the temporary names copy-up and whiteout creation use in the upper layer.
inline constexpr std::string_view kTempPrefix = ".unionfs-cpp.tmp.";

/// What a directory instance says about the layers below it.
enum class Opacity {
  kNone,
  kOpaque,       ///< hides every lower child
  kXWhiteouts,   ///< opaque xattr "x": not opaque, but may hold xattr-form whiteouts
};

class WhiteoutFormat {
 public:
  WhiteoutFormat(WhiteoutMode mode, bool privileged);

  [[nodiscard]] bool read_oci() const { return read_oci_; }
  [[nodiscard]] bool write_oci() const { return write_oci_; }
  [[nodiscard]] bool privileged() const { return privileged_; }
  /// Whether an xattr is one of the overlay's own (read as a marker, hidden from users):
  /// trusted.overlay.* always; user.overlay.* unless the stack is read exactly as a
  /// privileged kernel mount reads it (whiteout=overlay as root), where it is plain data.
  [[nodiscard]] bool is_internal_xattr(std::string_view name) const;
  /// The xattr the opaque marker is written to in the kernel format.
  [[nodiscard]] const char* opaque_xattr() const {
    return privileged_ ? "trusted.overlay.opaque" : "user.overlay.opaque";
  }

  /// True for a name that is ours or a marker and so must never show through the mount,
  /// nor be created through it.
  [[nodiscard]] bool is_reserved_name(std::string_view name) const;

  /// Opacity of the directory open as `dir_fd` (O_RDONLY), reading the xattrs and, in OCI
  /// read mode, the ".wh..wh..opq" entry.
  [[nodiscard]] Opacity dir_opacity(int dir_fd) const;
  /// The xattr half of dir_opacity, for a caller that reads the directory's entries anyway
  /// (and so sees an OCI ".wh..wh..opq" there itself).
  [[nodiscard]] Opacity xattr_opacity(int dir_fd) const;
  /// xattr_opacity of the directory `rel` (a path below `dir`, last component not followed),
  /// without opening it.
  [[nodiscard]] Opacity xattr_opacity_at(int dir, const char* rel) const;
  /// Whether an empty regular file `name` in `dir` carries the overlay.whiteout xattr.
  [[nodiscard]] bool is_xattr_whiteout(int dir, const char* name) const;
  /// Whether the OCI whiteout ".wh.NAME" exists in `dir` (only in OCI read mode).
  [[nodiscard]] bool has_oci_whiteout(int dir, std::string_view name) const;

  /// Creates a whiteout for `name` in the upper directory `dir`, where nothing is at `name`
  /// in the kernel format (the caller has removed or moved it away).
  /// Errors: EEXIST, ENAMETOOLONG (OCI, name too long for ".wh."), errors of mknod/open.
  [[nodiscard]] Status make_whiteout(int dir, std::string_view name) const;
  /// Creates a kernel-format whiteout at the temporary name `tmp` (for atomic replacement).
  [[nodiscard]] Status make_kernel_whiteout(int dir, const char* tmp) const;
  /// Marks the upper directory open as `dir_fd` opaque.
  [[nodiscard]] Status set_opaque(int dir_fd) const;

 private:
  bool read_oci_;
  bool write_oci_;
  bool privileged_;
  bool read_trusted_;  ///< trusted.overlay.* markers count
  bool read_user_;     ///< user.overlay.* markers count (the kernel's userxattr)
};

inline bool is_kernel_whiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == 0;
}

/// A fresh temporary name for the upper layer (unique within this process).
std::string temp_name();

}  // namespace unionfs
