// DirIndex: one read of each lower instance of a merged directory.
#include "core/dir_index.h"

#include <dirent.h>
#include <sys/stat.h>

#include "core/sys.h"

namespace unionfs {
namespace {

bool closed(const std::vector<IndexHit>& hits) {
  if (hits.empty()) return false;
  const IndexHit& last = hits.back();
  return last.type != DT_DIR || last.hides_lower;
}

}  // namespace

Result<LayerListing> read_layer_dir(const WhiteoutFormat& fmt, const LayerDir& dir) {
  UNIONFS_ASSIGN_OR_RETURN(std::vector<sys::DirEnt> ents, sys::read_dir(dir.get()));
  LayerListing out;
  out.entries.reserve(ents.size());
  for (sys::DirEnt& e : ents) {
    if (e.name.starts_with(kTempPrefix)) continue;
    if (fmt.read_oci() && e.name.starts_with(kOciWhiteoutPrefix)) {
      if (e.name != kOciOpaqueName) out.oci_whiteouts.push_back(e.name.substr(kOciWhiteoutPrefix.size()));
      continue;
    }
    if (e.type == DT_CHR || e.type == DT_UNKNOWN || (e.type == DT_REG && dir.xwhiteouts)) {
      auto st = sys::stat_at(dir.get(), e.name.c_str());
      if (!st) continue;  // removed meanwhile (the upper), or a lower changed under the mount
      e.type = static_cast<unsigned char>(IFTODT(st->st_mode));
      if (is_kernel_whiteout(*st) ||
          (dir.xwhiteouts && S_ISREG(st->st_mode) && st->st_size == 0 &&
           fmt.is_xattr_whiteout(dir.get(), e.name.c_str()))) {
        e.type = kDtWhiteout;
      }
    }
    out.entries.push_back(std::move(e));
  }
  return out;
}

Result<std::shared_ptr<const DirIndex>> DirIndex::build(const WhiteoutFormat& fmt, DirParts lower) {
  auto index = std::make_shared<DirIndex>();
  for (uint32_t p = 0; p < lower.size(); ++p) {
    UNIONFS_ASSIGN_OR_RETURN(LayerListing listing, read_layer_dir(fmt, lower[p]));
    for (sys::DirEnt& e : listing.entries) {
      std::vector<IndexHit>& hits = index->map_[std::move(e.name)];
      if (!closed(hits)) hits.push_back(IndexHit{p, e.type, false, e.ino});
    }
    // ".wh.NAME" hides NAME in the layers below; a NAME in its own layer survives it.
    for (std::string& n : listing.oci_whiteouts) {
      std::vector<IndexHit>& hits = index->map_[std::move(n)];
      if (closed(hits)) continue;
      if (!hits.empty() && hits.back().part == p) {
        hits.back().hides_lower = true;
      } else {
        hits.push_back(IndexHit{p, kDtWhiteout, false, 0});
      }
    }
  }
  index->parts_ = std::move(lower);
  return std::shared_ptr<const DirIndex>(std::move(index));
}

std::span<const IndexHit> DirIndex::find(std::string_view name) const {
  auto it = map_.find(name);
  if (it == map_.end()) return {};
  return it->second;
}

size_t DirIndex::memory_bytes() const {
  size_t bytes = map_.bucket_count() * sizeof(void*);
  for (const auto& [name, hits] : map_) {
    // A node holds the key, the vector and a cached hash; short names live in the string.
    bytes += sizeof(std::string) + sizeof(std::vector<IndexHit>) + 2 * sizeof(void*);
    if (name.capacity() > 15) bytes += name.capacity() + 1;
    bytes += hits.capacity() * sizeof(IndexHit);
  }
  return bytes;
}

}  // namespace unionfs
