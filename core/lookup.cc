// Top-down lookup of a name across the instances of a merged directory.
#include "core/lookup.h"

#include <dirent.h>
#include <fcntl.h>

#include <optional>
#include <span>
#include <string>

#include "core/dir_index.h"
#include "core/sys.h"

namespace unionfs {

Result<ProbeResult> probe(const WhiteoutFormat& fmt, const LayerDir& dir, std::string_view name,
                          bool bottom) {
  std::string n(name);
  ProbeResult r;
  auto st = sys::stat_at(dir.get(), n.c_str());
  if (!st) {
    if (st.error() != ENOENT) return Errno{st.error()};
    if (!bottom && fmt.has_oci_whiteout(dir.get(), name)) r.kind = Probe::kWhiteout;
    return r;
  }
  r.st = *st;
  if (is_kernel_whiteout(r.st) ||
      (dir.xwhiteouts && S_ISREG(r.st.st_mode) && r.st.st_size == 0 &&
       fmt.is_xattr_whiteout(dir.get(), n.c_str()))) {
    r.kind = Probe::kWhiteout;
    return r;
  }
  r.kind = Probe::kPresent;
  return r;
}

namespace {

// Opens a directory instance and reads its opacity. `oci_hides`: whether an OCI ".wh.NAME"
// stands beside it in its layer, if already known.
// `fd` is the instance when the caller has opened it already.
Result<LayerDir> open_part(const WhiteoutFormat& fmt, const LayerDir& parent,
                           std::string_view name, std::optional<bool> oci_hides,
                           bool* hides_lower, UniqueFd opened = UniqueFd()) {
  Result<UniqueFd> fd = std::move(opened);
  if (!fd->valid()) fd = sys::open_at(parent.get(), std::string(name).c_str(), O_RDONLY | O_DIRECTORY);
  if (!fd) return Errno{fd.error()};
  LayerDir d;
  d.layer = parent.layer;
  Opacity op = fmt.dir_opacity(fd->get());
  d.xwhiteouts = op == Opacity::kXWhiteouts;
  // An OCI ".wh.NAME" next to a directory NAME in the same layer hides the lower NAMEs.
  *hides_lower = op == Opacity::kOpaque ||
                 (oci_hides ? *oci_hides : fmt.has_oci_whiteout(parent.get(), name));
  d.fd = std::make_shared<const UniqueFd>(std::move(*fd));
  return d;
}

// The search state of one lookup (ovl_lookup_data).
class Search {
 public:
  Search(const LayerStack& stack, const WhiteoutFormat& fmt, std::string_view name)
      : stack_(stack), fmt_(fmt), name_(name) {}

  /// Folds in what `part` holds for the name; true when the search ends here. `st` is the
  /// instance's stat when the caller has it; `ino` its inode number otherwise.
  Result<bool> take(const LayerDir& part, bool whiteout, bool is_dir, const struct stat* st,
                    ino_t ino, std::optional<bool> oci_hides) {
    if (whiteout) {
      if (!f_.exists && stack_.is_upper(part.layer)) f_.upper_whiteout = true;
      return true;
    }
    if (!f_.exists) {
      const std::string n(name_);
      const bool upper = stack_.is_upper(part.layer);
      struct stat s{};
      UniqueFd path_fd;
      if (st) {
        s = *st;
      } else if (!is_dir && upper) {
        // An upper non-directory: open it, then stat what was opened (the reply's attributes
        // then come from the very object the inode holds; the upper may change meanwhile).
        UNIONFS_ASSIGN_OR_RETURN(path_fd, sys::open_at(part.get(), n.c_str(), O_PATH));
        UNIONFS_ASSIGN_OR_RETURN(s, sys::fstat(path_fd.get()));
      } else {
        UNIONFS_ASSIGN_OR_RETURN(s, sys::stat_at(part.get(), n.c_str()));
      }
      f_.exists = true;
      f_.st = s;
      f_.layer = part.layer;
      f_.origin_dev = s.st_dev;
      f_.origin_ino = s.st_ino;
      if (!S_ISDIR(s.st_mode)) {
        if (!upper) {
          // A lower one does not change: opened only when needed (open_found, object_fd).
          f_.at = std::make_shared<const FoundAt>(FoundAt{part.fd, n});
          return true;
        }
        if (!path_fd.valid()) {
          UNIONFS_ASSIGN_OR_RETURN(path_fd, sys::open_at(part.get(), n.c_str(), O_PATH));
        }
        f_.fd = std::make_shared<const UniqueFd>(std::move(path_fd));
        return true;
      }
    } else if (!is_dir) {
      return true;  // a non-directory below a directory is hidden, and so is all beneath it
    } else if (!seen_lower_ && !stack_.is_upper(part.layer)) {
      // A merged directory is known by its topmost lower instance: stable across copy-up.
      f_.origin_dev = st ? st->st_dev : stack_.layer(part.layer).dev;
      f_.origin_ino = st ? st->st_ino : ino;
    }
    if (!stack_.is_upper(part.layer)) seen_lower_ = true;
    bool hides_lower = false;
    UNIONFS_ASSIGN_OR_RETURN(LayerDir d, open_part(fmt_, part, name_, oci_hides, &hides_lower));
    if (f_.parts.empty()) f_.top_opaque = hides_lower;
    f_.parts.push_back(std::move(d));
    return hides_lower;
  }

  /// Folds in a directory instance below the topmost directory, already opened.
  Result<bool> take_dir(const LayerDir& part, UniqueFd fd) {
    if (!seen_lower_ && !stack_.is_upper(part.layer)) {
      UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::fstat(fd.get()));
      f_.origin_dev = st.st_dev;
      f_.origin_ino = st.st_ino;
    }
    if (!stack_.is_upper(part.layer)) seen_lower_ = true;
    bool hides_lower = false;
    UNIONFS_ASSIGN_OR_RETURN(LayerDir d, open_part(fmt_, part, name_, std::nullopt, &hides_lower,
                                                   std::move(fd)));
    f_.parts.push_back(std::move(d));
    return hides_lower;
  }

  /// Leaves `hits` (below the topmost lower instance, which is taken) for later.
  void defer(const std::shared_ptr<const DirIndex>& index, std::span<const IndexHit> hits) {
    auto p = std::make_shared<PendingLower>();
    p->parent_index = index;
    p->hits.assign(hits.begin(), hits.end());
    p->name = std::string(name_);
    p->opacity = std::vector<std::atomic<uint8_t>>(p->hits.size());
    f_.pending = std::move(p);
  }

  [[nodiscard]] bool found_dir() const { return f_.exists && S_ISDIR(f_.st.st_mode); }
  /// Whether a lower instance of the directory found is among its parts.
  [[nodiscard]] bool has_lower_part() const { return seen_lower_; }
  Found& found() { return f_; }

 private:
  const LayerStack& stack_;
  const WhiteoutFormat& fmt_;
  std::string_view name_;
  Found f_;
  bool seen_lower_ = false;
};

}  // namespace

namespace {

// lookup_name, deferring the lower instances below the topmost lower one if `keep` is given
// (the shared owner of `lower_index`).
Result<Found> lookup(const LayerStack& stack, const WhiteoutFormat& fmt, const DirParts& parent,
                     std::string_view name, const DirIndex* lower_index,
                     const std::shared_ptr<const DirIndex>* keep) {
  Search search(stack, fmt, name);
  const std::string n(name);
  for (const LayerDir& part : parent) {
    if (lower_index && !stack.is_upper(part.layer)) break;
    // The last instance of the directory, a lower one: what ".wh.NAME" would hide is not there.
    const bool bottom = !lower_index && &part == &parent.back() && !stack.is_upper(part.layer);
    if (search.found_dir()) {
      // Below a directory only directories matter, and one openat tells them apart: a
      // whiteout or any other non-directory (ENOTDIR, ELOOP) ends the merge.
      auto fd = sys::open_at(part.get(), n.c_str(), O_RDONLY | O_DIRECTORY);
      if (!fd) {
        if (fd.error() == ENOTDIR || fd.error() == ELOOP) break;
        if (fd.error() != ENOENT) return Errno{fd.error()};
        if (!bottom && fmt.has_oci_whiteout(part.get(), name)) break;
        continue;
      }
      UNIONFS_ASSIGN_OR_RETURN(bool stop, search.take_dir(part, std::move(*fd)));
      if (stop) break;
      continue;
    }
    UNIONFS_ASSIGN_OR_RETURN(ProbeResult p, probe(fmt, part, name, bottom));
    if (p.kind == Probe::kAbsent) continue;
    UNIONFS_ASSIGN_OR_RETURN(bool stop, search.take(part, p.kind == Probe::kWhiteout,
                                                    S_ISDIR(p.st.st_mode), &p.st, p.st.st_ino,
                                                    std::nullopt));
    if (stop) return std::move(search.found());
  }
  if (lower_index) {
    const DirParts& lower = lower_index->parts();
    const std::span<const IndexHit> hits = lower_index->find(name);
    for (size_t i = 0; i < hits.size(); ++i) {
      const IndexHit& h = hits[i];
      if (keep && h.type == DT_DIR && search.found_dir() && search.has_lower_part()) {
        search.defer(*keep, hits.subspan(i));
        break;
      }
      UNIONFS_ASSIGN_OR_RETURN(bool stop, search.take(lower[h.part], h.type == kDtWhiteout,
                                                      h.type == DT_DIR, nullptr, h.ino,
                                                      h.hides_lower));
      if (stop) break;
    }
  }
  return std::move(search.found());
}

}  // namespace

Result<SharedFd> open_found(const Found& f) {
  if (f.fd) return f.fd;
  if (!f.at) return Errno{ESTALE};
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(f.at->dir->get(), f.at->rel.c_str(), O_PATH));
  return SharedFd(std::make_shared<const UniqueFd>(std::move(fd)));
}

Result<Found> lookup_name(const LayerStack& stack, const WhiteoutFormat& fmt,
                          const DirParts& parent, std::string_view name,
                          const DirIndex* lower_index) {
  return lookup(stack, fmt, parent, name, lower_index, nullptr);
}

Result<Found> lookup_name_deferred(const LayerStack& stack, const WhiteoutFormat& fmt,
                                   const DirParts& parent, std::string_view name,
                                   const std::shared_ptr<const DirIndex>& lower_index) {
  return lookup(stack, fmt, parent, name, lower_index.get(), lower_index ? &lower_index : nullptr);
}

Result<bool> lower_positive(const LayerStack& stack, const WhiteoutFormat& fmt,
                            const DirParts& parent, std::string_view name) {
  for (const LayerDir& part : parent) {
    if (stack.is_upper(part.layer)) continue;
    UNIONFS_ASSIGN_OR_RETURN(ProbeResult p, probe(fmt, part, name, &part == &parent.back()));
    if (p.kind == Probe::kAbsent) continue;
    return p.kind == Probe::kPresent;
  }
  return false;
}

DirParts root_parts(const LayerStack& stack, const WhiteoutFormat& fmt) {
  DirParts parts;
  for (size_t i = stack.size(); i-- > 0;) {
    auto fd = sys::open_at(stack.layer(i).root.get(), ".", O_RDONLY | O_DIRECTORY);
    if (!fd) continue;  // cannot happen: the roots were opened at setup
    LayerDir d;
    d.layer = i;
    Opacity op = fmt.dir_opacity(fd->get());
    d.xwhiteouts = op == Opacity::kXWhiteouts;
    d.fd = std::make_shared<const UniqueFd>(std::move(*fd));
    parts.push_back(std::move(d));
    if (op == Opacity::kOpaque) break;
  }
  return parts;
}

}  // namespace unionfs
