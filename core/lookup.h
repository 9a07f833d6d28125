// Lookup of one name across the layers of a merged directory, top-down: the topmost layer
// holding the name decides it; a whiteout ends the search; a non-directory hides everything
// below it; a directory merges with directories below until one is opaque.
// Mirrors ovl_lookup / ovl_lookup_layer in fs/overlayfs/namei.c.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/layer.h"
#include "core/result.h"
#include "core/unique_fd.h"
#include "core/whiteout.h"

namespace unionfs {

using SharedFd = std::shared_ptr<const UniqueFd>;

/// One layer's instance of a merged directory.
struct LayerDir {
  size_t layer = 0;
  SharedFd fd;              ///< O_RDONLY | O_DIRECTORY
  bool xwhiteouts = false;  ///< opaque xattr "x": may hold xattr-form whiteouts
  [[nodiscard]] int get() const { return fd->get(); }
};

/// The instances of a merged directory, topmost first.
using DirParts = std::vector<LayerDir>;

/// A shared, immutable DirParts: copying it (every lookup takes its directory's parts) costs
/// one reference count, not one per layer.
class SharedParts {
 public:
  SharedParts() : p_(std::make_shared<const DirParts>()) {}
  SharedParts(DirParts v) : p_(std::make_shared<const DirParts>(std::move(v))) {}  // NOLINT
  operator const DirParts&() const { return *p_; }  // NOLINT: read-only view
  [[nodiscard]] const DirParts& get() const { return *p_; }
  [[nodiscard]] bool empty() const { return p_->empty(); }
  [[nodiscard]] size_t size() const { return p_->size(); }
  [[nodiscard]] const LayerDir& front() const { return p_->front(); }
  [[nodiscard]] const LayerDir& operator[](size_t i) const { return (*p_)[i]; }
  [[nodiscard]] DirParts::const_iterator begin() const { return p_->begin(); }
  [[nodiscard]] DirParts::const_iterator end() const { return p_->end(); }
  /// A new set with `d` on top (copy-up of the directory).
  void push_front(LayerDir d) {
    DirParts v;
    v.reserve(p_->size() + 1);
    v.push_back(std::move(d));
    v.insert(v.end(), p_->begin(), p_->end());
    p_ = std::make_shared<const DirParts>(std::move(v));
  }
  /// A new set with `more` below.
  void append(const DirParts& more) {
    DirParts v;
    v.reserve(p_->size() + more.size());
    v.insert(v.end(), p_->begin(), p_->end());
    v.insert(v.end(), more.begin(), more.end());
    p_ = std::make_shared<const DirParts>(std::move(v));
  }

 private:
  std::shared_ptr<const DirParts> p_;
};

/// What one layer says about a name.
enum class Probe { kAbsent, kWhiteout, kPresent };

struct ProbeResult {
  Probe kind = Probe::kAbsent;
  struct stat st {};
  bool hides_lower = false;  ///< a directory that is opaque (or OCI-whited-out in its layer)
  bool xwhiteouts = false;
};

/// Asks one directory instance about `name`. Errors other than ENOENT (ENAMETOOLONG, EACCES,
/// EIO...) are returned. `bottom`: no instance of the directory is below this one, so an OCI
/// ".wh.NAME" in it would hide nothing and is not asked for (a missing name is kAbsent).
Result<ProbeResult> probe(const WhiteoutFormat& fmt, const LayerDir& dir, std::string_view name,
                          bool bottom = false);

struct PendingLower;

/// Where a non-directory of a lower layer was found: `rel` below the directory `dir` (an
/// instance of its parent, or of its grandparent for a name probed by path). Lower layers do
/// not change under a mount, so the object is opened only when an operation needs it: a lookup
/// costs one fstatat, and a file that is only stat'ed holds no descriptor.
struct FoundAt {
  SharedFd dir;
  std::string rel;
};

/// The merged answer for a name.
struct Found {
  bool exists = false;
  bool upper_whiteout = false;  ///< the upper layer holds a whiteout for the name
  struct stat st {};            ///< of the topmost instance
  size_t layer = 0;             ///< layer of the topmost instance
  SharedFd fd;                  ///< non-directory in the upper layer: O_PATH of it
  std::shared_ptr<const FoundAt> at;  ///< non-directory in a lower layer: where it is
  DirParts parts;               ///< directory: its instances, topmost first
  /// Directory found by lookup_name_deferred: the lower instances below the last of `parts`
  /// (its topmost lower instance), not opened yet; null when `parts` has them all.
  std::shared_ptr<const PendingLower> pending;
  bool top_opaque = false;      ///< directory: its topmost instance hides the lower ones
  dev_t origin_dev = 0;         ///< identity: the topmost lower instance of a directory (its
  ino_t origin_ino = 0;         ///< upper one if it has none), the topmost instance otherwise
  [[nodiscard]] bool is_dir() const { return exists && S_ISDIR(st.st_mode); }
};

class DirIndex;

/// An O_PATH descriptor of the non-directory `f` found: its own, or opened at `f.at`.
Result<SharedFd> open_found(const Found& f);

/// Looks `name` up in the merged directory `parent`. A missing name is not an error
/// (exists == false). With `lower_index` (built from parent's lower instances), only the upper
/// instance is asked directly and the lower ones through the index. Errors: ENAMETOOLONG,
/// EACCES, EIO and other probe errors.
Result<Found> lookup_name(const LayerStack& stack, const WhiteoutFormat& fmt,
                          const DirParts& parent, std::string_view name,
                          const DirIndex* lower_index = nullptr);

/// As lookup_name with an index, but a merged directory's lower instances below its topmost
/// lower one are left in Found::pending instead of being opened: a lookup of a directory then
/// costs the same at any depth, and the directory's first use opens the rest (resolve_lower).
Result<Found> lookup_name_deferred(const LayerStack& stack, const WhiteoutFormat& fmt,
                                   const DirParts& parent, std::string_view name,
                                   const std::shared_ptr<const DirIndex>& lower_index);

/// Whether any layer below the upper holds a (non-whiteout) entry for `name` in `parent`:
/// then removing the name from the upper needs a whiteout (ovl_lower_positive).
Result<bool> lower_positive(const LayerStack& stack, const WhiteoutFormat& fmt,
                            const DirParts& parent, std::string_view name);

/// The root directory: every layer's root, topmost first, stopping at an opaque one.
DirParts root_parts(const LayerStack& stack, const WhiteoutFormat& fmt);

}  // namespace unionfs
