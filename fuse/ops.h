// The libfuse low-level operation table over UnionFs. No union logic lives here: each op
// unpacks the request, calls UnionFs, and replies.
#pragma once

#include <fuse_lowlevel.h>

#include "core/id_map.h"
#include "core/union_fs.h"
#include "fuse/passthrough.h"

namespace unionfs::fuse {

struct Daemon {
  UnionFs* fs = nullptr;
  double timeout = 86400.0;  ///< entry and attribute cache time, seconds
  IdMap ids;                 ///< owners shown and stored (uidmapping=, squash_to_*...)
  Passthrough* passthrough = nullptr;  ///< -o passthrough (active once the kernel agreed)
};

/// Fills the operation table.
fuse_lowlevel_ops make_operations();

}  // namespace unionfs::fuse
