// Layer extraction: each entry's parent is opened with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS) under the layer root, so no name, symlink or hard link of the archive
// can reach outside it. Objects are written as copy-up writes them: data, owner, mode, xattrs
// (after chown, which would drop security.capability), times; directories' attributes once
// all their entries are in, deepest first.
#include "core/layer_extract.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "core/output_dir.h"
#include "core/sys.h"

namespace unionfs {
namespace {

constexpr size_t kHoleBlock = 4096;

std::pair<std::string, std::string> split_parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

class Extractor {
 public:
  Extractor(int root, const WhiteoutFormat& out, bool privileged)
      : root_(root), out_(out), privileged_(privileged) {}

  Status entry(TarReader& tar, const TarEntry& e);
  Status finish();

  ExtractStats stats;
  std::string why;

 private:
  Errno fail(int err, const std::string& path, const std::string& msg) {
    why = "'" + path + "': " + msg;
    return Errno{err};
  }
  Result<UniqueFd> parent_dir(const std::string& path, const std::string& parent);
  Status marker(const TarEntry& e, const std::string& path, const std::string& parent,
                const std::string& base);
  Status clear(int dir, const std::string& base, bool keep_dir);
  Status make(TarReader& tar, const TarEntry& e, int dir, const std::string& base,
              const std::string& path);
  Status regular(TarReader& tar, const TarEntry& e, int dir, const std::string& base);
  Status hard_link(const TarEntry& e, int dir, const std::string& base, const std::string& path);
  Status attrs(int dir, const char* name, const TarEntry& e);

  int root_;
  const WhiteoutFormat& out_;
  bool privileged_;
  std::set<std::string> created_;  // paths this layer creates (implicit parents included)
  std::set<std::string> whited_;   // paths this layer whites out
  std::map<std::string, TarEntry> dir_attrs_;  // directories' headers, applied at the end
};

// The parent directory of `path`, creating missing components (0755, as docker does). The
// fast path is one openat2 beneath the root; otherwise a walk one component at a time, never
// following a symlink, says which component is in the way.
Result<UniqueFd> Extractor::parent_dir(const std::string& path, const std::string& parent) {
  for (size_t end = 0; end != std::string::npos && !parent.empty();) {
    end = parent.find('/', end + 1);
    const std::string prefix = parent.substr(0, end);
    if (whited_.contains(prefix)) {
      return fail(EINVAL, path, "the layer both whites out '" + prefix + "' and creates it");
    }
  }
  auto fd = sys::open_beneath(root_, parent, O_PATH | O_DIRECTORY);
  if (fd) return fd;
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd cur, sys::open_at(root_, ".", O_PATH | O_DIRECTORY));
  std::string done;
  for (size_t start = 0; start < parent.size();) {
    size_t slash = parent.find('/', start);
    if (slash == std::string::npos) slash = parent.size();
    const std::string comp = parent.substr(start, slash - start);
    done = done.empty() ? comp : done + "/" + comp;
    start = slash + 1;
    auto st = sys::stat_at(cur.get(), comp.c_str());
    if (!st && st.error() == ENOENT) {
      Status s = sys::mkdir_at(cur.get(), comp.c_str(), 0755);
      if (!s)
        return fail(s.error(), path, "cannot create '" + done + "': " + std::strerror(s.error()));
      created_.insert(done);
    } else if (!st) {
      return fail(st.error(), path, "'" + done + "': " + std::strerror(st.error()));
    } else if (S_ISLNK(st->st_mode)) {
      return fail(ELOOP, path,
                  "its parent '" + done +
                      "' is a symlink in the archive: "
                      "refusing to extract through it");
    } else if (!S_ISDIR(st->st_mode)) {
      return fail(ENOTDIR, path, "its parent '" + done + "' is not a directory");
    }
    auto next = sys::open_at(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY);
    if (!next) return fail(next.error(), path, "'" + done + "': " + std::strerror(next.error()));
    cur = std::move(*next);
  }
  return cur;
}

// ".wh..wh..opq" and ".wh.NAME" entries.
Status Extractor::marker(const TarEntry& e, const std::string& path, const std::string& parent,
                         const std::string& base) {
  const bool opaque = base == kOciOpaqueName;
  const std::string name = base.substr(kOciWhiteoutPrefix.size());
  if (!opaque && (name.empty() || name == "." || name == ".." || name.starts_with(".wh."))) {
    return fail(EINVAL, path, "not a valid whiteout name");
  }
  const std::string target = parent.empty() ? name : parent + "/" + name;
  if (!opaque) {
    if (created_.contains(target)) {
      return fail(EINVAL, path, "the layer both whites out '" + target + "' and creates it");
    }
    if (!whited_.insert(target).second) return kOk;  // repeated whiteout
  }
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd dir, parent_dir(path, parent));
  Status s;
  if (opaque) {
    s = out_.set_opaque(dir.get());
    if (s) ++stats.opaque_dirs;
  } else {
    s = out_.make_whiteout(dir.get(), name);
    if (s) ++stats.whiteouts;
  }
  if (!s) return fail(s.error(), path, std::strerror(s.error()));
  // The marker keeps the entry's owner, mode and time (a file, or the kernel's char device).
  if (!opaque || out_.write_oci())
    s = attrs(dir.get(), (out_.write_oci() ? base : name).c_str(), e);
  return s ? s : fail(s.error(), path, std::strerror(s.error()));
}

// Makes room for a new entry at `base`: a later entry replaces an earlier one of the same
// name (tar semantics), but a directory over a directory only updates its attributes.
Status Extractor::clear(int dir, const std::string& base, bool keep_dir) {
  auto st = sys::stat_at(dir, base.c_str());
  if (!st) return st.error() == ENOENT ? kOk : Status(Errno{st.error()});
  if (S_ISDIR(st->st_mode)) {
    if (keep_dir) return kOk;
    remove_tree(dir, base);
    return kOk;
  }
  return sys::unlink_at(dir, base.c_str());
}

Status Extractor::entry(TarReader& tar, const TarEntry& e) {
  ++stats.entries;
  auto clean = clean_archive_path(e.path);
  if (!clean) {
    return fail(
        EINVAL, e.path,
        e.path.starts_with("/") ? "absolute name in the archive" : "name with '..' in the archive");
  }
  const std::string& path = *clean;
  if (path.empty()) {
    if (e.type != TarType::kDir) return fail(EINVAL, e.path, "the root must be a directory");
    dir_attrs_[""] = e;
    return kOk;
  }
  const auto [parent, base] = split_parent(path);
  if (base.starts_with(kOciWhiteoutPrefix)) return marker(e, path, parent, base);
  if (whited_.contains(path)) {
    return fail(EINVAL, path, "the layer both whites out this name and creates it");
  }
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd dir, parent_dir(path, parent));
  created_.insert(path);
  Status s = clear(dir.get(), base, e.type == TarType::kDir);
  if (!s) return fail(s.error(), path, std::strerror(s.error()));
  s = make(tar, e, dir.get(), base, path);
  if (!s && why.empty()) {
    if (!tar.why().empty())
      why = tar.why() + ", in '" + path + "'";
    else
      return fail(s.error(), path, std::strerror(s.error()));
  }
  return s;
}

Status Extractor::make(TarReader& tar, const TarEntry& e, int dir, const std::string& base,
                       const std::string& path) {
  const char* name = base.c_str();
  switch (e.type) {
    case TarType::kDir: {
      Status s = sys::mkdir_at(dir, name, 0700);
      if (!s && s.error() != EEXIST) return s;
      dir_attrs_[path] = e;
      ++stats.dirs;
      return kOk;
    }
    case TarType::kFile:
      return regular(tar, e, dir, base);
    case TarType::kHardLink:
      return hard_link(e, dir, base, path);
    case TarType::kSymlink:
      UNIONFS_TRY(sys::symlink_at(e.link.c_str(), dir, name));
      break;
    default: {
      const mode_t kind = e.type == TarType::kChar    ? S_IFCHR
                          : e.type == TarType::kBlock ? S_IFBLK
                                                      : S_IFIFO;
      Status s = sys::mknod_at(dir, name, kind | 0600, makedev(e.dev_major, e.dev_minor));
      if (!s && s.error() == EPERM && kind != S_IFIFO) {
        return fail(EPERM, path, "a device node: only root may create it");
      }
      UNIONFS_TRY(s);
    }
  }
  ++stats.files;
  return attrs(dir, name, e);
}

// Data with holes: zero blocks of 4 KiB at aligned offsets are skipped, not written.
Status Extractor::regular(TarReader& tar, const TarEntry& e, int dir, const std::string& base) {
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd,
                           sys::open_at(dir, base.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600));
  static thread_local std::vector<char> buf(1 << 16);
  uint64_t off = 0;
  for (;;) {
    UNIONFS_ASSIGN_OR_RETURN(size_t got, tar.read(buf.data(), buf.size()));
    if (got == 0) break;
    for (size_t pos = 0; pos < got;) {
      const size_t n = std::min(kHoleBlock - (off + pos) % kHoleBlock, got - pos);
      const char* p = buf.data() + pos;
      const bool zero = n == kHoleBlock && std::all_of(p, p + n, [](char c) { return c == 0; });
      if (!zero) UNIONFS_TRY(sys::pwrite_all(fd.get(), p, n, static_cast<off_t>(off + pos)));
      pos += n;
    }
    off += got;
  }
  UNIONFS_TRY(sys::ftruncate(fd.get(), static_cast<off_t>(off)));
  stats.bytes += off;
  ++stats.files;
  return attrs(fd.get(), "", e);
}

Status Extractor::hard_link(const TarEntry& e, int dir, const std::string& base,
                            const std::string& path) {
  auto target = clean_archive_path(e.link);
  if (!target || target->empty()) {
    return fail(EINVAL, path, "hard link to '" + e.link + "', outside the layer");
  }
  auto st = sys::stat_at(root_, ".");
  const auto [tparent, tbase] = split_parent(*target);
  auto tdir = sys::open_beneath(root_, tparent, O_PATH | O_DIRECTORY);
  if (tdir) st = sys::stat_at(tdir->get(), tbase.c_str());
  if (!tdir || !st || !created_.contains(*target) || S_ISDIR(st->st_mode)) {
    return fail(
        EINVAL, path,
        "hard link to '" + e.link + "', which is not a file extracted before it in this layer");
  }
  UNIONFS_TRY(sys::link_at(tdir->get(), tbase.c_str(), dir, base.c_str()));
  ++stats.files;
  ++stats.hard_links;
  return kOk;
}

// Owner (root only), mode (not for symlinks), xattrs, times; `name` "" = the fd itself.
Status Extractor::attrs(int dir, const char* name, const TarEntry& e) {
  auto st = name[0] ? sys::stat_at(dir, name) : sys::fstat(dir);
  if (!st) return Errno{st.error()};
  if (privileged_) {
    UNIONFS_TRY(sys::chown_at(dir, name, static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid)));
  }
  if (!S_ISLNK(st->st_mode)) {
    if (name[0]) {
      UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(dir, name, O_PATH));
      UNIONFS_TRY(sys::chmod_fd(fd.get(), e.mode));
    } else {
      UNIONFS_TRY(sys::chmod_fd(dir, e.mode));
    }
  }
  for (const auto& [k, v] : e.xattrs) {
    if (k.starts_with("trusted.overlay.") || k.starts_with("user.overlay.")) continue;
    Status s = name[0] ? sys::lsetxattr_at(dir, name, k.c_str(), v, 0)
                       : sys::setxattr(dir, k.c_str(), v, 0);
    // As copy-up: only user.* must succeed (trusted.* needs root, security.* may be refused).
    if (!s && k.starts_with("user.") && !S_ISLNK(st->st_mode)) return s;
  }
  struct timespec ts[2] = {e.mtime, e.mtime};
  return sys::utimens_at(dir, name, ts);
}

Status Extractor::finish() {
  // Deepest first: setting a child's times would not change its parent's, but creating it did.
  std::vector<const std::pair<const std::string, TarEntry>*> dirs;
  for (const auto& d : dir_attrs_) dirs.push_back(&d);
  std::sort(dirs.begin(), dirs.end(), [](auto* a, auto* b) {
    return std::count(a->first.begin(), a->first.end(), '/') + !a->first.empty() >
           std::count(b->first.begin(), b->first.end(), '/') + !b->first.empty();
  });
  for (const auto* d : dirs) {
    auto fd = sys::open_beneath(root_, d->first, O_PATH | O_DIRECTORY);
    if (!fd) {
      if (fd.error() == ENOTDIR || fd.error() == ENOENT) continue;  // replaced later
      return fail(fd.error(), d->first, std::strerror(fd.error()));
    }
    Status s = attrs(fd->get(), "", d->second);
    if (!s) return fail(s.error(), d->first.empty() ? "." : d->first, std::strerror(s.error()));
  }
  return kOk;
}

}  // namespace

Result<std::string> clean_archive_path(const std::string& name) {
  if (name.starts_with("/") || name.find('\0') != std::string::npos) return Errno{EINVAL};
  std::string out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    const std::string comp = name.substr(start, slash - start);
    if (comp == "..") return Errno{EINVAL};
    if (!comp.empty() && comp != ".") out += (out.empty() ? "" : "/") + comp;
    start = slash + 1;
  }
  return out;
}

Result<ExtractStats> extract_layer(TarReader& tar, int root, const WhiteoutFormat& out,
                                   bool privileged, std::string* why) {
  Extractor x(root, out, privileged);
  std::string path;
  Status s = tar.for_each([&](const TarEntry& e) {
    path = e.path;
    return x.entry(tar, e);
  });
  if (!s) {
    if (why) *why = !x.why.empty() ? x.why : !tar.why().empty() ? tar.why() : "'" + path + "'";
    return Errno{s.error()};
  }
  s = x.finish();
  if (!s) {
    if (why) *why = x.why;
    return Errno{s.error()};
  }
  return x.stats;
}

}  // namespace unionfs
