// Merged directory listings: the union of every instance's names, top-down, minus whiteouts,
// markers and internal names; a name's type comes from its topmost instance.
// Mirrors fs/overlayfs/readdir.c (ovl_dir_read_merged, ovl_fill_merge, ovl_check_whiteouts).
#include <dirent.h>
#include <fcntl.h>

#include <unordered_map>

#include "core/sys.h"
#include "core/union_fs.h"

namespace unionfs {
namespace {

unsigned char dt_of(mode_t m) { return static_cast<unsigned char>(IFTODT(m)); }

struct Seen {
  size_t index;        // into the output, or SIZE_MAX for a whited-out name
  bool dir;            // topmost instance is a directory
  bool merged = false; // a directory instance exists in more than one layer
};

}  // namespace

Result<std::vector<DirEntry>> UnionFs::list(Inode& dir) {
  UNIONFS_ASSIGN_OR_RETURN(DirParts parts, dir_parts(dir));
  std::vector<DirEntry> out;
  std::unordered_map<std::string, Seen> seen;
  for (const LayerDir& part : parts) {
    UNIONFS_ASSIGN_OR_RETURN(std::vector<sys::DirEnt> ents, sys::read_dir(part.get()));
    const bool upper = stack_.is_upper(part.layer);
    const dev_t dev = stack_.layer(part.layer).dev;
    std::vector<std::string> oci_whiteouts;
    for (sys::DirEnt& e : ents) {
      if (e.name.starts_with(kTempPrefix)) continue;
      if (fmt_.read_oci() && e.name.starts_with(kOciWhiteoutPrefix)) {
        if (e.name != kOciOpaqueName) oci_whiteouts.push_back(e.name.substr(kOciWhiteoutPrefix.size()));
        continue;
      }
      unsigned char type = e.type;
      bool whiteout = false;
      if (type == DT_CHR || type == DT_UNKNOWN || (type == DT_REG && part.xwhiteouts)) {
        auto st = sys::stat_at(part.get(), e.name.c_str());
        if (!st) continue;  // vanished: only the upper changes, and only through us
        type = dt_of(st->st_mode);
        whiteout = is_kernel_whiteout(*st) ||
                   (part.xwhiteouts && S_ISREG(st->st_mode) && st->st_size == 0 &&
                    fmt_.is_xattr_whiteout(part.get(), e.name.c_str()));
      }
      auto it = seen.find(e.name);
      if (it != seen.end()) {
        if (it->second.index != SIZE_MAX && it->second.dir && type == DT_DIR) it->second.merged = true;
        continue;
      }
      if (whiteout) {
        seen.emplace(e.name, Seen{SIZE_MAX, false});
        continue;
      }
      uint64_t ino = stack_.st_ino(dev, e.ino);
      if (upper && type != DT_DIR) (void)upper_key(dev, e.ino, &ino);
      seen.emplace(e.name, Seen{out.size(), type == DT_DIR});
      out.push_back({std::move(e.name), ino, type});
    }
    // An OCI whiteout hides the name in the layers below, not a sibling in its own layer.
    for (std::string& n : oci_whiteouts) seen.emplace(std::move(n), Seen{SIZE_MAX, false});
  }
  // A directory in several layers is identified by its lowest instance, as lookup does.
  for (auto& [name, s] : seen) {
    if (!s.merged) continue;
    auto f = lookup_name(stack_, fmt_, parts, name);
    if (f && f->exists) out[s.index].ino = stack_.st_ino(f->origin_dev, f->origin_ino);
  }
  return out;
}

}  // namespace unionfs
