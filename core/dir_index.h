// DirIndex: the lower instances of a merged directory, read once into one hash map from name to
// the instances that hold it, top-down. Lower layers never change under a mount, so an index
// never goes stale; the upper instance is always asked directly. With it, a lookup (present or
// missing) is one probe plus at most a few syscalls in the right layers, whatever the depth.
// Building it reads each instance with getdents only: types come from d_type, and only
// DT_CHR (and, in "x" directories, empty DT_REG) entries are stat'ed for whiteouts.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/hash.h"
#include "core/lookup.h"
#include "core/result.h"
#include "core/sys.h"
#include "core/whiteout.h"

namespace unionfs {

inline constexpr unsigned char kDtWhiteout = 0xff;  ///< Hit::type of a whiteout

/// One directory instance's entries, classified: `entries` have their real type (DT_*, never
/// DT_UNKNOWN) or kDtWhiteout; OCI markers and internal names are not among them, and
/// `oci_whiteouts` holds the names that ".wh.NAME" files white out.
struct LayerListing {
  std::vector<sys::DirEnt> entries;
  std::vector<std::string> oci_whiteouts;
};
/// Reads one directory instance with getdents; only DT_CHR entries (and, in "x" directories,
/// DT_REG ones) are stat'ed, to find whiteouts.
Result<LayerListing> read_layer_dir(const WhiteoutFormat& fmt, const LayerDir& dir);
/// As read_layer_dir into `*out`, unless the instance holds more than `max_entries` entries:
/// returns whether it was read.
Result<bool> read_layer_dir(const WhiteoutFormat& fmt, const LayerDir& dir, size_t max_entries,
                            LayerListing* out);
/// Classifies entries read from `dir` as read_layer_dir does; `*oci_opaque` tells whether
/// ".wh..wh..opq" was among them (OCI read mode only).
LayerListing classify_layer_dir(const WhiteoutFormat& fmt, const LayerDir& dir,
                                std::vector<sys::DirEnt> ents, bool* oci_opaque);

/// One lower instance's entry for a name.
struct IndexHit {
  uint32_t part = 0;            ///< index into DirIndex::parts()
  unsigned char type = 0;       ///< DT_* (never DT_UNKNOWN), or kDtWhiteout
  bool hides_lower = false;     ///< an OCI ".wh.NAME" beside NAME in the same layer
  ino_t ino = 0;                ///< d_ino in that layer
};

class DirIndex {
 public:
  /// Reads every instance of `lower` (topmost first, no upper instance). With `max_entries`,
  /// gives up (returns null) on an instance holding more entries than that.
  static Result<std::shared_ptr<const DirIndex>> build(const WhiteoutFormat& fmt, DirParts lower,
                                                       size_t max_entries = SIZE_MAX);
  /// The index of `lower` from listings already read, one per instance, in the same order.
  static std::shared_ptr<const DirIndex> from_listings(DirParts lower,
                                                       std::vector<LayerListing> listings);

  [[nodiscard]] const DirParts& parts() const { return parts_; }
  /// The instances holding `name`, topmost first, ending at the first whiteout, non-directory
  /// or hiding entry (nothing below those matters). Empty when no lower layer has the name.
  [[nodiscard]] std::span<const IndexHit> find(std::string_view name) const;
  /// Every indexed name with its hits, in no particular order.
  template <typename F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.n != 0) f(name_of(s), hits_of(s));
    }
  }
  [[nodiscard]] size_t size() const { return size_; }
  /// Heap bytes held by the index (for measurement).
  [[nodiscard]] size_t memory_bytes() const;

 private:
  // An open-addressing table (linear probing, at most 3/4 full) of one 40-byte slot per name:
  // a lookup reads its slot, then the name in one arena to compare it, and finds the first hit
  // inline. Most names live in one layer; a name with several hits has them all, in order, in
  // more_. Building it allocates four arrays, not a node per name.
  struct Slot {
    uint64_t hash = 0;
    uint32_t name = 0;      ///< offset of the name in names_
    uint32_t n = 0;         ///< hits; 0: an empty slot
    uint32_t more = 0;      ///< n > 1: offset of all n hits in more_
    uint16_t name_len = 0;  ///< names are at most NAME_MAX bytes
    IndexHit first{};
  };
  [[nodiscard]] std::string_view name_of(const Slot& s) const {
    return {names_.data() + s.name, s.name_len};
  }
  [[nodiscard]] std::span<const IndexHit> hits_of(const Slot& s) const {
    return s.n == 1 ? std::span<const IndexHit>(&s.first, 1)
                    : std::span<const IndexHit>(more_.data() + s.more, s.n);
  }
  /// The slot of `name` (hash `h`): its own, or the empty one where it would go.
  [[nodiscard]] size_t slot_for(std::string_view name, uint64_t h) const;
  class Builder;

  DirParts parts_;
  std::vector<Slot> slots_;  ///< a power of two of them
  std::string names_;
  std::vector<IndexHit> more_;
  size_t size_ = 0;
};

/// The lower instances of a merged directory below its topmost lower one, not opened yet: what
/// the parent's index knows of the name (lookup_name defers them, so that a lookup of a
/// directory costs the same at any depth). Resolved on the directory's first use.
struct PendingLower {
  std::shared_ptr<const DirIndex> parent_index;  ///< keeps the parent's instances open
  std::vector<IndexHit> hits;                    ///< topmost first, the first one a DT_DIR
  std::string name;
  /// Per hit, what its instance says of the layers below, once lookup_name_probing has asked
  /// (0: not yet; else kOpacityKnown | Opacity, | kOciOpaque): the same for every name.
  mutable std::vector<std::atomic<uint8_t>> opacity;
  static constexpr uint8_t kOpacityKnown = 0x10, kOciOpaque = 0x20;
  /// The opacity xattr's part of an `opacity` value.
  static Opacity xattr_of(uint8_t v) {
    return static_cast<Opacity>(v & ~(kOpacityKnown | kOciOpaque));
  }
  /// Hit i's opacity xattr, if a probe has read it already (resolve_lower then need not).
  [[nodiscard]] std::optional<Opacity> known_opacity(size_t i) const {
    const uint8_t v = opacity[i].load(std::memory_order_relaxed);
    if (!(v & kOpacityKnown)) return std::nullopt;
    return xattr_of(v);
  }
};

/// What resolve_lower opened.
struct ResolvedLower {
  DirParts rest;                          ///< the pending instances that belong to the merge
  std::shared_ptr<const DirIndex> index;  ///< of `top` and `rest`, unless one was too big
};

/// Opens the pending instances below `top` (the directory's topmost lower instance, open),
/// down to the first opaque one. As it goes it reads each instance's entries (getdents on the
/// fd it just opened), which also shows its ".wh..wh..opq", and indexes the lower instances, so
/// that the directory's first use costs an openat, a listxattr and a getdents per layer and no
/// lookup in it needs a layer probed again. An instance of more than kEagerIndexMax entries stops
/// the indexing (a lookup in a huge directory stays cheap; the index is built later if the
/// directory keeps being used). Errors: those of openat and getdents (EACCES, EIO, EMFILE...).
Result<ResolvedLower> resolve_lower(const WhiteoutFormat& fmt, const LayerDir& top,
                                    const PendingLower& pending);
inline constexpr size_t kEagerIndexMax = 4096;

/// As lookup_name in a directory whose lower instances below `parts` are still pending, without
/// opening them: each pending instance is asked by path from its parent's instance, "DIR/NAME"
/// down to the first that holds it, then ".wh.NAME", ".wh..wh..opq" and the opaque xattr of
/// those above that one. A name missing from a directory merged over n layers costs n fstatat,
/// one present in its bottom instance a few per layer, as the kernel's lookup does, instead of
/// the openat + listxattr + getdents per layer of resolving them. nullopt when the answer is a
/// directory, whose instances must be opened, or when an instance fails with anything but
/// ENOENT: then the caller resolves the pending instances and looks the name up as usual.
/// Errors: those of fstatat and openat in the instances already open.
Result<std::optional<Found>> lookup_name_probing(const LayerStack& stack,
                                                 const WhiteoutFormat& fmt,
                                                 const DirParts& parts,
                                                 const PendingLower& pending,
                                                 std::string_view name);

}  // namespace unionfs
