// Volumes: host directories bind-mounted over paths inside the mount, the way Docker mounts a
// volume over a container's log directory, so that write-heavy paths bypass the union.
#pragma once

#include <string>
#include <vector>

#include "core/union_fs.h"

namespace unionfs::fuse {

struct Volume {
  std::string host;  ///< canonical absolute host directory
  std::string path;  ///< path inside the mount, relative, normalised ("var/log")
};

/// Parses "HOST_DIR:PATH". Throws SetupError for a missing host directory, a PATH that is
/// empty or escapes the mount ("..").
Volume parse_volume(const std::string& spec);

/// Before the mount: makes every PATH exist as a directory of the stack, creating what is
/// missing in the upper layer. Throws SetupError when PATH is not a directory or cannot be made.
void prepare_volumes(UnionFs& fs, const std::vector<Volume>& volumes);

/// Bind-mounts each volume over MOUNTPOINT/PATH; the session must already be serving. On a
/// failure, unmounts those it made and returns the message (empty on success).
std::string mount_volumes(const std::string& mountpoint, const std::vector<Volume>& volumes);

/// Detaches every volume mount, the last mounted first; those not mounted are skipped.
void unmount_volumes(const std::string& mountpoint, const std::vector<Volume>& volumes);

}  // namespace unionfs::fuse
