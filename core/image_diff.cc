// Change list of the top layer: one walk of the upper tree, each entry classified against
// the merged view of the layers below (one DirIndex per directory the upper holds).
#include "core/image_diff.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <unordered_set>

#include "core/dir_index.h"
#include "core/lookup.h"
#include "core/sys.h"

namespace unionfs {
namespace {

struct Record {
  std::string path;
  ChangeKind kind;
  bool dir;
};

// Gnu tar and Go's tar writer keep whole seconds only, so containers/storage counts a time
// with no nanoseconds as equal to any time in the same second (sameFsTime).
bool same_time(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && (a.tv_nsec == b.tv_nsec || a.tv_nsec == 0 || b.tv_nsec == 0);
}

// A directory copied up only because something under it changed keeps the lower one's
// attributes (overlayfs copies them, and restores the parent's times after a copy-up).
bool same_dir(const struct stat& up, const struct stat& low) {
  return S_ISDIR(low.st_mode) && up.st_mode == low.st_mode && up.st_size == low.st_size &&
         same_time(up.st_mtim, low.st_mtim);
}

class DiffWalk {
 public:
  DiffWalk(const LayerStack& stack, const WhiteoutFormat& fmt) : stack_(stack), fmt_(fmt) {}

  /// Records the changes under the upper directory `up`, whose path is `path` ("" = root);
  /// `low` is the same directory's merged instances below (empty if it has none).
  Status walk(const LayerDir& up, const DirParts& low, const std::string& path);

  std::vector<Record> records;
  std::string where;

 private:
  Status entry(const LayerDir& up, const DirParts& low, const DirIndex* index,
               const sys::DirEnt& e, bool oci_hides, const std::string& path);
  Status dir(const LayerDir& up, const std::string& name, bool oci_hides, const Found& below,
             const std::string& path);
  Status fail(int err, const std::string& path) {
    where = path.empty() ? "/" : path;
    return Errno{err};
  }

  const LayerStack& stack_;
  const WhiteoutFormat& fmt_;
};

Status DiffWalk::walk(const LayerDir& up, const DirParts& low, const std::string& path) {
  auto listing = read_layer_dir(fmt_, up);
  if (!listing) return fail(listing.error(), path);
  std::shared_ptr<const DirIndex> index;
  if (!low.empty()) {
    auto built = DirIndex::build(fmt_, low);
    if (!built) return fail(built.error(), path);
    index = std::move(*built);
  }
  std::unordered_set<std::string> names;
  for (const sys::DirEnt& e : listing->entries) names.insert(e.name);
  // An OCI ".wh.NAME" beside NAME in the same layer marks NAME as replaced, not deleted.
  std::unordered_set<std::string> oci(listing->oci_whiteouts.begin(),
                                      listing->oci_whiteouts.end());
  for (const std::string& n : listing->oci_whiteouts) {
    if (!names.contains(n)) records.push_back({path + "/" + n, ChangeKind::kDelete, false});
  }
  for (const sys::DirEnt& e : listing->entries) {
    UNIONFS_TRY(entry(up, low, index.get(), e, oci.contains(e.name), path));
  }
  return kOk;
}

Status DiffWalk::entry(const LayerDir& up, const DirParts& low, const DirIndex* index,
                       const sys::DirEnt& e, bool oci_hides, const std::string& path) {
  std::string child = path + "/" + e.name;
  if (e.type == kDtWhiteout) {
    records.push_back({std::move(child), ChangeKind::kDelete, false});
    return kOk;
  }
  Found below;
  if (index) {
    auto f = lookup_name(stack_, fmt_, low, e.name, index);
    if (!f) return fail(f.error(), child);
    below = std::move(*f);
  }
  if (e.type != DT_DIR) {
    records.push_back({std::move(child), below.exists ? ChangeKind::kModify : ChangeKind::kAdd,
                       false});
    return kOk;
  }
  return dir(up, e.name, oci_hides, below, child);
}

Status DiffWalk::dir(const LayerDir& up, const std::string& name, bool oci_hides,
                     const Found& below, const std::string& path) {
  auto fd = sys::open_at(up.get(), name.c_str(), O_RDONLY | O_DIRECTORY);
  if (!fd) return fail(fd.error(), path);
  auto st = sys::fstat(fd->get());
  if (!st) return fail(st.error(), path);
  const Opacity op = fmt_.dir_opacity(fd->get());
  const bool opaque = op == Opacity::kOpaque || oci_hides;
  if (opaque && below.exists) {
    records.push_back({path, ChangeKind::kDelete, true});
  } else if (!below.exists) {
    records.push_back({path, ChangeKind::kAdd, true});
  } else if (!same_dir(*st, below.st)) {
    records.push_back({path, ChangeKind::kModify, true});
  }
  LayerDir d;
  d.layer = up.layer;
  d.xwhiteouts = op == Opacity::kXWhiteouts;
  d.fd = std::make_shared<const UniqueFd>(std::move(*fd));
  // The entries of an opaque directory are still compared with what was below, as
  // containers/storage does: a name that existed there is shown as changed, not added.
  return walk(d, below.is_dir() ? below.parts : DirParts{}, path);
}

// Every parent of an added or deleted path is changed (docker PR 13590: its entries
// changed even when its attributes did not).
std::vector<Change> with_parents(std::vector<Record> records) {
  std::unordered_set<std::string> listed_dirs;
  for (const Record& r : records) {
    if (r.dir) listed_dirs.insert(r.path);
  }
  std::vector<Change> out;
  out.reserve(records.size());
  for (Record& r : records) {
    if (r.kind != ChangeKind::kModify) {
      for (size_t slash = r.path.rfind('/'); slash != 0 && slash != std::string::npos;
           slash = r.path.rfind('/', slash - 1)) {
        const std::string parent = r.path.substr(0, slash);
        // Not a break: a listed parent may be a change of its own whose parents are not.
        if (listed_dirs.insert(parent).second) out.push_back({parent, ChangeKind::kModify});
      }
    }
    out.push_back({std::move(r.path), r.kind});
  }
  std::sort(out.begin(), out.end(),
            [](const Change& a, const Change& b) { return a.path < b.path; });
  return out;
}

}  // namespace

Result<DirParts> merged_root(const LayerStack& stack, const WhiteoutFormat& fmt, size_t top) {
  DirParts parts;
  for (size_t i = top; i-- > 0;) {
    UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd,
                             sys::open_at(stack.layer(i).root.get(), ".", O_RDONLY | O_DIRECTORY));
    LayerDir d;
    d.layer = i;
    const Opacity op = fmt.dir_opacity(fd.get());
    d.xwhiteouts = op == Opacity::kXWhiteouts;
    d.fd = std::make_shared<const UniqueFd>(std::move(fd));
    parts.push_back(std::move(d));
    if (op == Opacity::kOpaque) break;
  }
  return parts;
}

Result<std::vector<Change>> image_diff(const LayerStack& stack, const WhiteoutFormat& fmt,
                                       std::string* where) {
  auto fail = [&](int err) {
    if (where) where->assign(1, '/');  // not = "/": GCC 12 -O3 warns falsely (-Wrestrict)
    return Errno{err};
  };
  auto low = merged_root(stack, fmt, stack.top());
  if (!low) return fail(low.error());
  auto top = sys::open_at(stack.layer(stack.top()).root.get(), ".", O_RDONLY | O_DIRECTORY);
  if (!top) return fail(top.error());
  LayerDir up;
  up.layer = stack.top();
  up.xwhiteouts = fmt.dir_opacity(top->get()) == Opacity::kXWhiteouts;
  up.fd = std::make_shared<const UniqueFd>(std::move(*top));
  DiffWalk walk(stack, fmt);
  Status s = walk.walk(up, *low, "");
  if (!s) {
    if (where) *where = walk.where;
    return Errno{s.error()};
  }
  return with_parents(std::move(walk.records));
}

}  // namespace unionfs
