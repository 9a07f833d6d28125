// Merged directory listings: the upper instance read live, the lower ones from the directory's
// index (read once, never stale); whiteouts, markers and internal names left out; a name's
// type comes from its topmost instance.
// Mirrors fs/overlayfs/readdir.c (ovl_dir_read_merged, ovl_fill_merge, ovl_check_whiteouts).
#include <dirent.h>
#include <fcntl.h>

#include <unordered_map>

#include "core/dir_index.h"
#include "core/sys.h"
#include "core/union_fs.h"

namespace unionfs {
namespace {

// What the upper instance says about one name.
struct UpperName {
  bool whiteout = false;
  bool dir = false;
  bool hides_lower = false;  // an OCI ".wh.NAME" beside NAME
};

}  // namespace

Result<std::vector<DirEntry>> UnionFs::list(Inode& dir) {
  UNIONFS_ASSIGN_OR_RETURN(SharedParts parts, dir_parts(dir));
  UNIONFS_ASSIGN_OR_RETURN(std::shared_ptr<const DirIndex> index, index_of(dir, parts, true));
  std::vector<DirEntry> out;
  std::unordered_map<std::string, UpperName> upper_names;
  if (!parts.empty() && stack_.is_upper(parts.front().layer)) {
    const LayerDir& up = parts.front();
    const dev_t dev = stack_.layer(up.layer).dev;
    UNIONFS_ASSIGN_OR_RETURN(LayerListing listing, read_layer_dir(fmt_, up));
    for (sys::DirEnt& e : listing.entries) {
      if (e.type == kDtWhiteout) {
        upper_names[e.name].whiteout = true;
        continue;
      }
      uint64_t ino = stack_.st_ino(dev, e.ino);
      if (e.type != DT_DIR) (void)upper_key(dev, e.ino, &ino);
      upper_names[e.name].dir = e.type == DT_DIR;
      out.push_back({std::move(e.name), ino, e.type});
    }
    for (std::string& n : listing.oci_whiteouts) {
      auto [it, fresh] = upper_names.try_emplace(std::move(n));
      if (fresh) {
        it->second.whiteout = true;
      } else {
        it->second.hides_lower = true;
      }
    }
  }
  if (!index) return out;
  // An upper directory merged with lower ones is known by its topmost lower instance, unless
  // it hides them (lookup.h).
  for (DirEntry& e : out) {
    if (e.type != DT_DIR) continue;
    auto hits = index->find(e.name);
    const UpperName& u = upper_names[e.name];
    if (hits.empty() || hits.front().type != DT_DIR || u.hides_lower) continue;
    auto fd = sys::open_at(parts.front().get(), e.name.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd && fmt_.dir_opacity(fd->get()) == Opacity::kOpaque) continue;
    e.ino = stack_.st_ino(stack_.layer(index->parts()[hits.front().part].layer).dev,
                          hits.front().ino);
  }
  index->for_each([&](std::string_view name, std::span<const IndexHit> hits) {
    if (!upper_names.empty() && upper_names.contains(std::string(name))) return;
    const IndexHit& top = hits.front();
    if (top.type == kDtWhiteout) return;
    const dev_t dev = stack_.layer(index->parts()[top.part].layer).dev;
    out.push_back({std::string(name), stack_.st_ino(dev, top.ino), top.type});
  });
  return out;
}

}  // namespace unionfs
