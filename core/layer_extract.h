// Extracts one OCI/docker layer tar into a directory, as containerd's `archive.Apply` with
// `OverlayConvertWhiteout` does: ".wh.NAME" becomes our whiteout and ".wh..wh..opq" our opaque
// marker, in the kernel's format or OCI's. Never writes outside the directory (DESIGN.md
// invariant 2): names with "..", absolute names, parents through symlinks are refused.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/result.h"
#include "core/tar.h"
#include "core/whiteout.h"

namespace unionfs {

struct ExtractStats {
  uint64_t entries = 0;  ///< tar entries read
  uint64_t files = 0;    ///< non-directories made (hard links included)
  uint64_t dirs = 0;     ///< directories made
  uint64_t hard_links = 0;
  uint64_t bytes = 0;  ///< regular-file data bytes
  uint64_t whiteouts = 0;
  uint64_t opaque_dirs = 0;
};

/// Extracts the entries of `tar` into the directory `root` (an fd on a new, empty directory).
/// `out` decides the marker format (kernel: char 0/0 and trusted.overlay.opaque as root;
/// OCI: the ".wh." files kept). As root (`privileged`) owners and device nodes are restored.
/// Overlay xattrs in the archive are dropped, so it cannot forge markers.
/// Errors, with `*why` naming the entry: EBADMSG/EPROTONOSUPPORT from the tar reader;
/// EINVAL for a name with "..", an absolute name, a hard link to a name not extracted before
/// it, a whiteout for a name the layer also creates; ELOOP for a name whose parent is a
/// symlink; EPERM for a device node when not root; errors of the writes.
Result<ExtractStats> extract_layer(TarReader& tar, int root, const WhiteoutFormat& out,
                                   bool privileged, std::string* why);

/// Splits an archive name into its components, dropping "." and empty ones: "./a//b/" →
/// "a/b", "./" → "". EINVAL for an absolute name or one with a ".." component.
Result<std::string> clean_archive_path(const std::string& name);

}  // namespace unionfs
