// Squash: one walk of the range's merged view (a DirIndex per directory, as layer_table's
// VisibleWalk), beside the merged view below the range, which decides the markers that must
// stay. Objects are written as copy-up writes them: data, xattrs, owner, mode, times; a
// directory's attributes after its entries, so the deepest directories get theirs first.
#include "core/squash.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "core/dir_index.h"
#include "core/lookup.h"
#include "core/output_dir.h"
#include "core/sys.h"

namespace unionfs {
namespace {

using InodeKey = std::pair<dev_t, ino_t>;

LayerDir make_part(size_t layer, UniqueFd fd, Opacity op) {
  LayerDir d;
  d.layer = layer;
  d.xwhiteouts = op == Opacity::kXWhiteouts;
  d.fd = std::make_shared<const UniqueFd>(std::move(fd));
  return d;
}

// The roots of layers top..bottom, topmost first, down to the first opaque one; `*stopped`
// says whether there was one (then nothing under `bottom` shows through).
Result<DirParts> range_roots(const LayerStack& stack, const WhiteoutFormat& fmt, size_t bottom,
                             size_t top, bool* stopped) {
  DirParts parts;
  *stopped = false;
  for (size_t i = top + 1; i-- > bottom;) {
    UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd,
                             sys::open_at(stack.layer(i).root.get(), ".", O_RDONLY | O_DIRECTORY));
    const Opacity op = fmt.dir_opacity(fd.get());
    parts.push_back(make_part(i, std::move(fd), op));
    if (op == Opacity::kOpaque) {
      *stopped = true;
      break;
    }
  }
  return parts;
}

// The instances of the merged subdirectory `name` of `parts`, from its index hits. `*stopped`
// says whether the merge ends among them (an opaque instance, a ".wh.NAME" beside one, or a
// whiteout or non-directory under one): then the layers further down do not show.
Result<DirParts> child_parts(const WhiteoutFormat& fmt, const DirParts& parts,
                             std::span<const IndexHit> hits, const std::string& name,
                             bool* stopped) {
  DirParts out;
  *stopped = false;
  for (const IndexHit& h : hits) {
    if (h.type != DT_DIR) {
      *stopped = true;
      break;
    }
    const LayerDir& parent = parts[h.part];
    UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd,
                             sys::open_at(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY));
    const Opacity op = fmt.dir_opacity(fd.get());
    out.push_back(make_part(parent.layer, std::move(fd), op));
    if (op == Opacity::kOpaque || h.hides_lower) {
      *stopped = true;
      break;
    }
  }
  return out;
}

// An object for the xattr and attribute helpers: the entry `name` of `dir` (never followed),
// or, with no name, the object behind the fd `dir` itself.
struct Obj {
  int dir;
  const char* name = nullptr;
};

Result<std::vector<std::string>> list_xattrs(Obj o) {
  return o.name ? sys::llistxattr_at(o.dir, o.name) : sys::listxattr(o.dir);
}

// Copies the xattrs but the overlay's own markers (which squash writes itself, where still
// needed). As in copy-up, only user.* failures count: the output filesystem may refuse
// security.* or, unprivileged, trusted.* names.
Status copy_xattrs(const WhiteoutFormat& fmt, Obj src, Obj dst) {
  auto names = list_xattrs(src);
  if (!names) return names.error() == ENOTSUP ? kOk : Status(Errno{names.error()});
  for (const std::string& n : *names) {
    if (fmt.is_internal_xattr(n)) continue;
    auto v = src.name ? sys::lgetxattr_at(src.dir, src.name, n.c_str())
                      : sys::getxattr(src.dir, n.c_str());
    if (!v) continue;
    Status s = dst.name ? sys::lsetxattr_at(dst.dir, dst.name, n.c_str(), *v, 0)
                        : sys::setxattr(dst.dir, n.c_str(), *v, 0);
    if (!s && n.starts_with("user.")) return s;
  }
  return kOk;
}

// Owner, then mode (chown clears set-user-ID bits), then times.
Status set_attrs(Obj dst, const struct stat& st, bool chown_ok) {
  const char* name = dst.name ? dst.name : "";
  if (chown_ok) UNIONFS_TRY(sys::chown_at(dst.dir, name, st.st_uid, st.st_gid));
  if (!S_ISLNK(st.st_mode)) {
    if (dst.name) {
      UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(dst.dir, dst.name, O_PATH));
      UNIONFS_TRY(sys::chmod_fd(fd.get(), st.st_mode & 07777));
    } else {
      UNIONFS_TRY(sys::chmod_fd(dst.dir, st.st_mode & 07777));
    }
  }
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  return sys::utimens_at(dst.dir, name, ts);
}

class SquashWalk {
 public:
  SquashWalk(const WhiteoutFormat& fmt, const SquashOptions& opts, int out_root,
             const std::function<void()>& step)
      : fmt_(fmt),
        out_fmt_(opts.output, opts.privileged),
        privileged_(opts.privileged),
        out_root_(out_root),
        step_(step) {}

  /// Writes the entries of the merged directory `range` into `out` (only counts them when
  /// `out` is -1); `below` is the directory's instances under the range when they show.
  Status dir(const DirParts& range, const DirParts& below, int out, const std::string& rel);
  /// The directory's own opacity marker, xattrs and attributes, once its entries are written.
  Status finish_dir(const LayerDir& src, int out, bool opaque, const std::string& rel);

  SquashStats stats;
  uint64_t steps = 0;
  std::string where;

 private:
  Status whiteout(const DirIndex* below, int out, const std::string& name, const std::string& rel);
  Status subdir(const DirParts& range, std::span<const IndexHit> hits, const DirIndex* below,
                int out, const std::string& name, const std::string& rel);
  Status nondir(const LayerDir& part, int out, const std::string& name, const std::string& rel);
  Result<bool> link_earlier(const struct stat& st, int out, const std::string& name,
                            const std::string& rel);
  Status regular(const LayerDir& part, int out, const std::string& name, const struct stat& st);
  Status special(const LayerDir& part, int out, const std::string& name, const struct stat& st);
  void advance() {
    ++steps;
    if (step_) step_();
  }
  Status fail(int err, const std::string& rel) {
    where = rel.empty() ? "/" : rel;
    return Errno{err};
  }

  const WhiteoutFormat& fmt_;
  const WhiteoutFormat out_fmt_;
  const bool privileged_;
  const int out_root_;
  std::function<void()> step_;  // a copy: callers may pass a temporary
  std::map<InodeKey, std::string> links_;  // source inode → its first output path
};

Status SquashWalk::dir(const DirParts& range, const DirParts& below, int out,
                       const std::string& rel) {
  auto index = DirIndex::build(fmt_, range);
  if (!index) return fail(index.error(), rel);
  std::shared_ptr<const DirIndex> below_index;
  if (!below.empty()) {
    auto built = DirIndex::build(fmt_, below);
    if (!built) return fail(built.error(), rel);
    below_index = std::move(*built);
  }
  // Name order: the output is the same whatever order getdents gives, and so is which name
  // of a hard-linked inode is written first.
  std::vector<std::string> names;
  (*index)->for_each([&](std::string_view n, std::span<const IndexHit> hits) {
    if (!hits.empty()) names.emplace_back(n);
  });
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    std::span<const IndexHit> hits = (*index)->find(n);
    const std::string child = rel + "/" + n;
    if (hits.front().type == kDtWhiteout) {
      UNIONFS_TRY(whiteout(below_index.get(), out, n, child));
    } else if (hits.front().type == DT_DIR) {
      UNIONFS_TRY(subdir(range, hits, below_index.get(), out, n, child));
    } else {
      UNIONFS_TRY(nondir(range[hits.front().part], out, n, child));
    }
  }
  return kOk;
}

// A whiteout matters only if the name shows below the range; elsewhere it hides nothing.
Status SquashWalk::whiteout(const DirIndex* below, int out, const std::string& name,
                            const std::string& rel) {
  if (!below) return kOk;
  std::span<const IndexHit> hits = below->find(name);
  if (hits.empty() || hits.front().type == kDtWhiteout) return kOk;
  advance();
  if (out < 0) return kOk;
  Status s = out_fmt_.make_whiteout(out, name);
  if (!s) return fail(s.error(), rel);
  ++stats.whiteouts;
  return kOk;
}

Status SquashWalk::subdir(const DirParts& range, std::span<const IndexHit> hits,
                          const DirIndex* below, int out, const std::string& name,
                          const std::string& rel) {
  bool stopped = false;
  auto parts = child_parts(fmt_, range, hits, name, &stopped);
  if (!parts) return fail(parts.error(), rel);
  DirParts low;
  bool below_dir = false;
  if (below) {
    std::span<const IndexHit> bh = below->find(name);
    below_dir = !bh.empty() && bh.front().type == DT_DIR;
    if (below_dir && !stopped) {
      bool ignored = false;
      auto lp = child_parts(fmt_, below->parts(), bh, name, &ignored);
      if (!lp) return fail(lp.error(), rel);
      low = std::move(*lp);
    }
  }
  advance();
  if (out < 0) return dir(*parts, low, -1, rel);
  Status s = sys::mkdir_at(out, name.c_str(), 0700);
  if (!s) return fail(s.error(), rel);
  auto fd = sys::open_at(out, name.c_str(), O_RDONLY | O_DIRECTORY);
  if (!fd) return fail(fd.error(), rel);
  UNIONFS_TRY(dir(*parts, low, fd->get(), rel));
  // Opaque only where the range hides a directory that is there below it.
  return finish_dir(parts->front(), fd->get(), stopped && below_dir, rel);
}

Status SquashWalk::finish_dir(const LayerDir& src, int out, bool opaque, const std::string& rel) {
  auto st = sys::fstat(src.get());
  if (!st) return fail(st.error(), rel);
  Status s = opaque ? out_fmt_.set_opaque(out) : kOk;
  if (s) s = copy_xattrs(fmt_, Obj{src.get()}, Obj{out});
  if (s) s = set_attrs(Obj{out}, *st, privileged_);
  if (!s) return fail(s.error(), rel);
  ++stats.dirs;
  if (opaque) ++stats.opaque_dirs;
  return kOk;
}

Status SquashWalk::nondir(const LayerDir& part, int out, const std::string& name,
                          const std::string& rel) {
  advance();
  if (out < 0) return kOk;
  auto st = sys::stat_at(part.get(), name.c_str());
  if (!st) return fail(st.error(), rel);
  ++stats.files;
  auto linked = link_earlier(*st, out, name, rel);
  if (!linked) return fail(linked.error(), rel);
  if (*linked) return kOk;
  Status s = S_ISREG(st->st_mode) ? regular(part, out, name, *st) : special(part, out, name, *st);
  return s ? s : fail(s.error(), rel);
}

// Names of one inode stay one inode: the first is copied, the others are linked to it.
Result<bool> SquashWalk::link_earlier(const struct stat& st, int out, const std::string& name,
                                      const std::string& rel) {
  if (st.st_nlink < 2) return false;
  auto [it, first] = links_.try_emplace(InodeKey{st.st_dev, st.st_ino}, rel);
  if (first) return false;
  const std::string& to = it->second;  // "/a/b/f"
  const size_t slash = to.rfind('/');
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd parent,
                           sys::open_beneath(out_root_, to.substr(1, slash), O_PATH | O_DIRECTORY));
  UNIONFS_TRY(sys::link_at(parent.get(), to.c_str() + slash + 1, out, name.c_str()));
  ++stats.hard_links;
  return true;
}

Status SquashWalk::regular(const LayerDir& part, int out, const std::string& name,
                           const struct stat& st) {
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd in, sys::open_at(part.get(), name.c_str(), O_RDONLY));
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd dst,
                           sys::open_at(out, name.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600));
  // Data before xattrs: writing data after them would drop security.capability.
  UNIONFS_TRY(sys::copy_data(in.get(), dst.get(), st.st_size));
  stats.bytes += static_cast<uint64_t>(st.st_size);
  UNIONFS_TRY(copy_xattrs(fmt_, Obj{in.get()}, Obj{dst.get()}));
  return set_attrs(Obj{dst.get()}, st, privileged_);
}

Status SquashWalk::special(const LayerDir& part, int out, const std::string& name,
                           const struct stat& st) {
  if (S_ISLNK(st.st_mode)) {
    UNIONFS_ASSIGN_OR_RETURN(std::string target, sys::readlink_at(part.get(), name.c_str()));
    UNIONFS_TRY(sys::symlink_at(target.c_str(), out, name.c_str()));
  } else {
    UNIONFS_TRY(sys::mknod_at(out, name.c_str(), st.st_mode, st.st_rdev));
  }
  UNIONFS_TRY(copy_xattrs(fmt_, Obj{part.get(), name.c_str()}, Obj{out, name.c_str()}));
  return set_attrs(Obj{out, name.c_str()}, st, privileged_);
}

// Walks the range from its roots into `out` (-1: counts only).
Status squash_into(const LayerStack& stack, const WhiteoutFormat& fmt, const SquashOptions& opts,
                   int out, SquashWalk& walk) {
  bool stopped = false;
  auto range = range_roots(stack, fmt, opts.range.bottom, opts.range.top, &stopped);
  if (!range) return Errno{range.error()};
  DirParts below;
  if (opts.range.bottom > 0 && !stopped) {
    bool ignored = false;
    auto low = range_roots(stack, fmt, 0, opts.range.bottom - 1, &ignored);
    if (!low) return Errno{low.error()};
    below = std::move(*low);
  }
  UNIONFS_TRY(walk.dir(*range, below, out, ""));
  if (out < 0) return kOk;
  return walk.finish_dir(range->front(), out, stopped && opts.range.bottom > 0, "");
}

std::string layer_clash(const LayerStack& stack, const struct stat& st) {
  for (size_t i = 0; i < stack.size(); ++i) {
    const Layer& l = stack.layer(i);
    if (l.dev == st.st_dev && l.ino == st.st_ino)
      return "layer " + std::to_string(i) + " (" + l.path + ")";
  }
  return "";
}

}  // namespace

SquashRange parse_squash_range(const std::string& spec, size_t layers) {
  if (spec.empty()) return SquashRange{0, layers - 1};
  const size_t colon = spec.find(':');
  auto number = [&](std::string_view s, size_t& v) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return !s.empty() && ec == std::errc() && end == s.data() + s.size();
  };
  SquashRange r;
  const std::string_view sv(spec);
  if (colon == std::string::npos || !number(sv.substr(0, colon), r.bottom) ||
      !number(sv.substr(colon + 1), r.top)) {
    throw SetupError("bad --range '" + spec +
                     "': expected I:J, layer indices counted from 0 = bottom");
  }
  if (r.bottom > r.top || r.top >= layers) {
    throw SetupError("bad --range '" + spec +
                     "': need 0 <= I <= J <= " + std::to_string(layers - 1) + " for a stack of " +
                     std::to_string(layers) + " layers");
  }
  return r;
}

void check_squash_target(const LayerStack& stack, const std::string& outdir) {
  const auto [parent_path, name] = split_target(outdir);
  const std::string what = "output directory '" + outdir + "'";
  auto parent = sys::open_path(parent_path, O_RDONLY | O_DIRECTORY);
  if (!parent) throw SetupError(what + ": " + std::strerror(parent.error()));
  check_absent_or_empty(parent->get(), name, what);
  auto st = sys::stat_at(parent->get(), name.c_str());
  if (st) {
    const std::string clash = layer_clash(stack, *st);
    if (!clash.empty()) throw SetupError(what + " is " + clash + " of the stack");
  }
  // Up from the parent to "/": a layer among them would be written into.
  for_each_ancestor(std::move(*parent), what, [&](const struct stat& here) {
    const std::string clash = layer_clash(stack, here);
    if (!clash.empty()) throw SetupError(what + " is inside " + clash + ": layers are never written");
  });
}

Result<uint64_t> squash_steps(const LayerStack& stack, const WhiteoutFormat& fmt,
                              const SquashOptions& opts) {
  SquashWalk walk(fmt, opts, -1, {});
  UNIONFS_TRY(squash_into(stack, fmt, opts, -1, walk));
  return walk.steps;
}

Result<SquashStats> squash(const LayerStack& stack, const WhiteoutFormat& fmt,
                           const SquashOptions& opts, const std::string& outdir,
                           const std::function<void()>& step, std::string* where) {
  const auto [parent_path, name] = split_target(outdir);
  auto fail = [&](int err, const std::string& at) {
    if (where) *where = at;
    return Errno{err};
  };
  auto parent = sys::open_path(parent_path, O_RDONLY | O_DIRECTORY);
  if (!parent) return fail(parent.error(), outdir);
  const int pfd = parent->get();
  const bool existed = sys::stat_at(pfd, name.c_str()).ok();
  const std::string tmp = "." + name + ".squash-tmp." + std::to_string(::getpid());
  Status s = sys::mkdir_at(pfd, tmp.c_str(), 0700);
  if (!s) return fail(s.error(), outdir);
  auto out = sys::open_at(pfd, tmp.c_str(), O_RDONLY | O_DIRECTORY);
  SquashWalk walk(fmt, opts, out ? out->get() : -1, step);
  s = out ? squash_into(stack, fmt, opts, out->get(), walk) : Status(Errno{out.error()});
  // Over an empty directory rename(2) replaces it; over nothing, NOREPLACE keeps a racing
  // creator's directory intact.
  if (s) s = sys::rename_at(pfd, tmp.c_str(), pfd, name.c_str(), existed ? 0 : RENAME_NOREPLACE);
  if (!s) {
    remove_tree(pfd, tmp);
    return fail(s.error(), walk.where.empty() ? outdir : walk.where);
  }
  return walk.stats;
}

}  // namespace unionfs
