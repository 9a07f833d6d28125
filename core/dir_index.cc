// DirIndex: one read of each lower instance of a merged directory.
#include "core/dir_index.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <utility>

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

// Fills a DirIndex layer by layer. While building, the hits of a name beyond its first go to
// extra_ in layer order (a slot's `more` then indexes its last one); finish() lays every
// name's hits out together in more_.
class DirIndex::Builder {
 public:
  Builder(DirIndex& index, size_t max_names, size_t name_bytes) : ix_(index) {
    size_t cap = 16;
    while (cap / 4 * 3 < max_names) cap <<= 1;  // at most 3/4 full
    ix_.slots_.assign(cap, Slot{});
    ix_.names_.reserve(name_bytes);
  }

  /// The slot of `name`, new (no hits yet: the caller adds one) or not.
  size_t slot(std::string_view name) {
    const uint64_t h = hash_name(name);
    const size_t i = ix_.slot_for(name, h);
    Slot& s = ix_.slots_[i];
    if (s.n == 0) {
      s.hash = h;
      s.name = static_cast<uint32_t>(ix_.names_.size());
      s.name_len = static_cast<uint16_t>(name.size());
      ix_.names_.append(name);
      ++ix_.size_;
    }
    return i;
  }
  IndexHit& last(size_t i) {
    Slot& s = ix_.slots_[i];
    return s.n == 1 ? s.first : extra_[s.more].second;
  }
  void push(size_t i, const IndexHit& h) {
    Slot& s = ix_.slots_[i];
    if (s.n == 0) {
      s.first = h;
    } else {
      extra_.emplace_back(static_cast<uint32_t>(i), h);
      s.more = static_cast<uint32_t>(extra_.size() - 1);
    }
    ++s.n;
  }
  /// Whether nothing below matters for the name any more: its last hit is a whiteout, a
  /// non-directory or a directory that hides the lower ones.
  bool closed(size_t i) {
    if (ix_.slots_[i].n == 0) return false;
    const IndexHit& l = last(i);
    return l.type != DT_DIR || l.hides_lower;
  }

  void finish() {
    uint32_t used = 0;
    for (Slot& s : ix_.slots_) {
      if (s.n < 2) continue;
      s.more = used + 1;  // where its second hit goes
      used += s.n;
    }
    ix_.more_.resize(used);
    for (Slot& s : ix_.slots_) {
      if (s.n >= 2) ix_.more_[s.more - 1] = s.first;
    }
    for (const auto& [i, h] : extra_) ix_.more_[ix_.slots_[i].more++] = h;
    for (Slot& s : ix_.slots_) {
      if (s.n >= 2) s.more -= s.n;
    }
  }

 private:
  DirIndex& ix_;
  std::vector<std::pair<uint32_t, IndexHit>> extra_;
};

size_t DirIndex::slot_for(std::string_view name, uint64_t h) const {
  const size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.n == 0 || (s.hash == h && name_of(s) == name)) return i;
  }
}

std::shared_ptr<const DirIndex> DirIndex::from_listings(DirParts lower,
                                                        std::vector<LayerListing> listings) {
  auto index = std::make_shared<DirIndex>();
  size_t names = 0, bytes = 0;
  for (const LayerListing& l : listings) {
    names += l.entries.size() + l.oci_whiteouts.size();
    for (const sys::DirEnt& e : l.entries) bytes += e.name.size();
    for (const std::string& n : l.oci_whiteouts) bytes += n.size();
  }
  Builder b(*index, names, bytes);
  for (uint32_t p = 0; p < listings.size(); ++p) {
    for (const sys::DirEnt& e : listings[p].entries) {
      const size_t i = b.slot(e.name);
      if (!b.closed(i)) b.push(i, IndexHit{p, e.type, false, e.ino});
    }
    // ".wh.NAME" hides NAME in the layers below; a NAME in its own layer survives it.
    for (const std::string& n : listings[p].oci_whiteouts) {
      const size_t i = b.slot(n);
      if (b.closed(i)) continue;
      if (index->slots_[i].n != 0 && b.last(i).part == p) {
        b.last(i).hides_lower = true;
      } else {
        b.push(i, IndexHit{p, kDtWhiteout, false, 0});
      }
    }
  }
  b.finish();
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
  for (size_t i = 0; i < pending.hits.size(); ++i) {
    const IndexHit& h = pending.hits[i];
    if (h.type != DT_DIR) break;  // a whiteout or a non-directory ends the merge
    UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(above[h.part].get(), pending.name.c_str(),
                                                       O_RDONLY | O_DIRECTORY));
    LayerDir d;
    d.layer = above[h.part].layer;
    // A probe (lookup_name_probing) may have read the instance's xattr already.
    const std::optional<Opacity> known = pending.known_opacity(i);
    const Opacity op = known ? *known : fmt.xattr_opacity(fd.get());
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

std::span<const IndexHit> DirIndex::find(std::string_view name) const {
  if (slots_.empty()) return {};
  const Slot& s = slots_[slot_for(name, hash_name(name))];
  if (s.n == 0) return {};
  return hits_of(s);
}

size_t DirIndex::memory_bytes() const {
  return slots_.capacity() * sizeof(Slot) + names_.capacity() + more_.capacity() * sizeof(IndexHit);
}

}  // namespace unionfs
