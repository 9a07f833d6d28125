// DirIndex: one read of each lower instance of a merged directory.
#include "core/dir_index.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "core/sys.h"

namespace unionfs {

LayerListing classify_layer_dir(const WhiteoutFormat& fmt, const LayerDir& dir,
                                std::vector<sys::DirEnt> ents, bool* oci_opaque) {
  LayerListing out;
  out.entries.reserve(ents.size());
  for (sys::DirEnt& e : ents) {
    if (e.name.starts_with(kTempPrefix)) continue;
    if (fmt.read_oci() && e.name.starts_with(kOciWhiteoutPrefix)) {
      if (e.name == kOciOpaqueName) {
        *oci_opaque = true;
      } else {
        out.oci_whiteouts.push_back(e.name.substr(kOciWhiteoutPrefix.size()));
      }
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

Result<bool> read_layer_dir(const WhiteoutFormat& fmt, const LayerDir& dir, size_t max_entries,
                            LayerListing* out) {
  // A descriptor of its own: the instance's fd is shared, and getdents moves its offset.
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(dir.get(), ".", O_RDONLY | O_DIRECTORY));
  std::vector<sys::DirEnt> ents;
  UNIONFS_ASSIGN_OR_RETURN(bool complete, sys::read_dir_fd(fd.get(), &ents, max_entries));
  if (!complete) return false;
  bool ignored = false;
  *out = classify_layer_dir(fmt, dir, std::move(ents), &ignored);
  return true;
}

Result<LayerListing> read_layer_dir(const WhiteoutFormat& fmt, const LayerDir& dir) {
  LayerListing listing;
  UNIONFS_TRY(read_layer_dir(fmt, dir, SIZE_MAX, &listing));
  return listing;
}

Result<std::shared_ptr<const DirIndex>> DirIndex::build(const WhiteoutFormat& fmt, DirParts lower,
                                                        size_t max_entries) {
  std::vector<LayerListing> listings;
  listings.reserve(lower.size());
  for (const LayerDir& part : lower) {
    LayerListing listing;
    UNIONFS_ASSIGN_OR_RETURN(bool complete, read_layer_dir(fmt, part, max_entries, &listing));
    if (!complete) return std::shared_ptr<const DirIndex>();
    listings.push_back(std::move(listing));
  }
  return from_listings(std::move(lower), std::move(listings));
}

std::shared_ptr<const DirIndex> DirIndex::from_listings(DirParts lower,
                                                        std::vector<LayerListing> listings) {
  auto index = std::make_shared<DirIndex>();
  size_t total = 0;
  for (const LayerListing& l : listings) total += l.entries.size() + l.oci_whiteouts.size();
  index->map_.reserve(total);  // at most that many names: no rehash while building
  for (uint32_t p = 0; p < listings.size(); ++p) {
    LayerListing& listing = listings[p];
    for (sys::DirEnt& e : listing.entries) {
      HitList& hits = index->map_[std::move(e.name)];
      if (!closed(hits)) hits.push_back(IndexHit{p, e.type, false, e.ino});
    }
    // ".wh.NAME" hides NAME in the layers below; a NAME in its own layer survives it.
    for (std::string& n : listing.oci_whiteouts) {
      HitList& hits = index->map_[std::move(n)];
      if (closed(hits)) continue;
      if (!hits.empty() && hits.back().part == p) {
        hits.back().hides_lower = true;
      } else {
        hits.push_back(IndexHit{p, kDtWhiteout, false, 0});
      }
    }
  }
  index->parts_ = std::move(lower);
  return index;
}

Result<ResolvedLower> resolve_lower(const WhiteoutFormat& fmt, const LayerDir& top,
                                    const PendingLower& pending) {
  ResolvedLower out;
  std::vector<LayerListing> listings;
  bool indexing = true;
  {
    LayerListing listing;
    UNIONFS_ASSIGN_OR_RETURN(indexing, read_layer_dir(fmt, top, kEagerIndexMax, &listing));
    if (indexing) listings.push_back(std::move(listing));
  }
  const DirParts& above = pending.parent_index->parts();
  for (const IndexHit& h : pending.hits) {
    if (h.type != DT_DIR) break;  // a whiteout or a non-directory ends the merge
    UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(above[h.part].get(), pending.name.c_str(),
                                                       O_RDONLY | O_DIRECTORY));
    LayerDir d;
    d.layer = above[h.part].layer;
    const Opacity op = fmt.xattr_opacity(fd.get());
    d.xwhiteouts = op == Opacity::kXWhiteouts;
    std::vector<sys::DirEnt> ents;
    if (indexing) {
      UNIONFS_ASSIGN_OR_RETURN(indexing, sys::read_dir_fd(fd.get(), &ents, kEagerIndexMax));
    }
    d.fd = std::make_shared<const UniqueFd>(std::move(fd));
    bool oci_opaque = false;
    if (indexing) {
      listings.push_back(classify_layer_dir(fmt, d, std::move(ents), &oci_opaque));
    } else if (op == Opacity::kNone && fmt.read_oci()) {
      oci_opaque = sys::stat_at(d.get(), std::string(kOciOpaqueName).c_str()).ok();
    }
    out.rest.push_back(std::move(d));
    // As dir_opacity: an "x" xattr (xattr-form whiteouts inside) leaves the merge open.
    if (op == Opacity::kOpaque || (op == Opacity::kNone && oci_opaque) || h.hides_lower) break;
  }
  if (indexing) {
    DirParts lower;
    lower.reserve(out.rest.size() + 1);
    lower.push_back(top);
    lower.insert(lower.end(), out.rest.begin(), out.rest.end());
    out.index = DirIndex::from_listings(std::move(lower), std::move(listings));
  }
  return out;
}

bool DirIndex::closed(HitList& hits) {
  if (hits.empty()) return false;
  const IndexHit& last = hits.back();
  return last.type != DT_DIR || last.hides_lower;
}

std::span<const IndexHit> DirIndex::find(std::string_view name) const {
  auto it = map_.find(name);
  if (it == map_.end()) return {};
  return it->second.span();
}

size_t DirIndex::memory_bytes() const {
  size_t bytes = map_.bucket_count() * sizeof(void*);
  for (const auto& [name, hits] : map_) {
    // A node holds the key, the vector and a cached hash; short names live in the string.
    bytes += sizeof(std::string) + sizeof(HitList) + 2 * sizeof(void*);
    if (name.capacity() > 15) bytes += name.capacity() + 1;
    bytes += hits.heap_bytes();
  }
  return bytes;
}

}  // namespace unionfs
