// LayerBuilder: a temporary directory holding N layer directories (l0 = bottom ... lN-1 = top)
// and helpers that write layer trees in both whiteout formats; removed in the destructor.
// Also the layer manifest used to check DESIGN.md invariant 1 (lower layers are never written)
// and a scoped tmpfs mount for the few tests that need a second filesystem.
#pragma once

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/hash.h"

namespace unionfs::test {

namespace fs = std::filesystem;

[[noreturn]] inline void fail_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

/// All of an open file, read from offset 0 (the fd's offset is not used).
inline std::string read_fd(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof(buf), static_cast<off_t>(out.size()));
    if (n < 0) fail_errno("pread fd " + std::to_string(fd));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

/// All of a file on the host; never follows a symlink in the last component.
inline std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) fail_errno("open " + path);
  std::string out;
  try {
    out = read_fd(fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return out;
}

/// lgetxattr as a string; "<errno N>" when absent or failing.
inline std::string get_xattr(const std::string& path, const char* name) {
  char buf[4096];
  ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof(buf));
  if (n < 0) return "<errno " + std::to_string(errno) + ">";
  return std::string(buf, static_cast<size_t>(n));
}

inline struct stat lstat_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) fail_errno("lstat " + path);
  return st;
}

inline bool exists_no_follow(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

/// One line per object under `root` (itself included), sorted by path: type, mode, owner,
/// size, link count, rdev, inode, mtime and ctime in ns, symlink target, content hash and
/// every xattr. Any write to the tree (data, metadata, xattrs, names) changes it; atime is
/// left out since reads may update it.
inline std::vector<std::string> manifest(const std::string& root) {
  std::vector<std::string> lines;
  auto describe = [&](const std::string& path, const std::string& rel) {
    struct stat st = lstat_of(path);
    std::ostringstream o;
    o << (rel.empty() ? "." : rel) << " mode=" << std::oct << st.st_mode << std::dec
      << " uid=" << st.st_uid << " gid=" << st.st_gid << " size=" << st.st_size
      << " nlink=" << st.st_nlink << " rdev=" << major(st.st_rdev) << ":" << minor(st.st_rdev)
      << " ino=" << st.st_ino << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec
      << " ctime=" << st.st_ctim.tv_sec << "." << st.st_ctim.tv_nsec;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
      o << " target=" << std::string(buf, n < 0 ? 0 : static_cast<size_t>(n));
    } else if (S_ISREG(st.st_mode)) {
      std::string data = read_file(path);
      o << " data=" << std::hex << hash_bytes(data.data(), data.size()) << std::dec;
    }
    char names[65536];
    ssize_t len = ::llistxattr(path.c_str(), names, sizeof(names));
    std::vector<std::string> xs;
    for (ssize_t i = 0; i < len;) {
      std::string n(names + i);
      i += static_cast<ssize_t>(n.size()) + 1;
      xs.push_back(n);
    }
    std::sort(xs.begin(), xs.end());
    for (const std::string& n : xs) o << " xattr:" << n << "=" << get_xattr(path, n.c_str());
    lines.push_back(o.str());
  };
  describe(root, "");
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    describe(it->path().string(), fs::relative(it->path(), root).string());
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

/// The lines only one of two manifests holds, "-" before / "+" after; empty when equal.
inline std::string manifest_diff(const std::vector<std::string>& before,
                                 const std::vector<std::string>& after) {
  std::string out;
  for (const auto& l : before) {
    if (!std::binary_search(after.begin(), after.end(), l)) out += "- " + l + "\n";
  }
  for (const auto& l : after) {
    if (!std::binary_search(before.begin(), before.end(), l)) out += "+ " + l + "\n";
  }
  return out;
}

class LayerBuilder {
 public:
  explicit LayerBuilder(size_t layers) {
    std::string tmpl = (fs::temp_directory_path() / "unionfs-unit.XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) fail_errno("mkdtemp");
    root_ = tmpl;
    for (size_t i = 0; i < layers; ++i) {
      layers_.push_back(root_ + "/l" + std::to_string(i));
      if (::mkdir(layers_.back().c_str(), 0755) != 0) fail_errno("mkdir " + layers_.back());
    }
  }
  LayerBuilder(const LayerBuilder&) = delete;
  LayerBuilder& operator=(const LayerBuilder&) = delete;
  ~LayerBuilder() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  [[nodiscard]] const std::string& root() const { return root_; }
  [[nodiscard]] size_t size() const { return layers_.size(); }
  [[nodiscard]] const std::string& layer(size_t i) const { return layers_.at(i); }
  /// "l0:l1:...": bottom first, as LayerStack::open takes it.
  [[nodiscard]] std::string spec() const {
    std::string s;
    for (const auto& l : layers_) s += (s.empty() ? "" : ":") + l;
    return s;
  }
  [[nodiscard]] std::string path(size_t i, const std::string& rel) const {
    return rel.empty() ? layer(i) : layer(i) + "/" + rel;
  }

  /// A directory (and its missing parents, 0755).
  void dir(size_t i, const std::string& rel, mode_t mode = 0755) {
    std::string p = path(i, rel);
    parents(p);
    if (::mkdir(p.c_str(), mode) != 0 && errno != EEXIST) fail_errno("mkdir " + p);
    if (::chmod(p.c_str(), mode) != 0) fail_errno("chmod " + p);
  }
  void file(size_t i, const std::string& rel, const std::string& content, mode_t mode = 0644) {
    std::string p = path(i, rel);
    parents(p);
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) fail_errno("create " + p);
    size_t done = 0;
    while (done < content.size()) {
      ssize_t n = ::write(fd, content.data() + done, content.size() - done);
      if (n < 0) {
        ::close(fd);
        fail_errno("write " + p);
      }
      done += static_cast<size_t>(n);
    }
    ::close(fd);
    if (::chmod(p.c_str(), mode) != 0) fail_errno("chmod " + p);
  }
  /// A sparse file: `head` at 0, `tail` at `tail_at`, a hole between.
  void sparse_file(size_t i, const std::string& rel, const std::string& head, off_t tail_at,
                   const std::string& tail) {
    file(i, rel, head);
    std::string p = path(i, rel);
    int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) fail_errno("open " + p);
    ssize_t n = ::pwrite(fd, tail.data(), tail.size(), tail_at);
    ::close(fd);
    if (n != static_cast<ssize_t>(tail.size())) fail_errno("pwrite " + p);
  }
  void symlink(size_t i, const std::string& rel, const std::string& target) {
    std::string p = path(i, rel);
    parents(p);
    if (::symlink(target.c_str(), p.c_str()) != 0) fail_errno("symlink " + p);
  }
  /// Kernel whiteout: a character device 0/0.
  void kernel_whiteout(size_t i, const std::string& rel) {
    std::string p = path(i, rel);
    parents(p);
    if (::mknod(p.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) fail_errno("mknod " + p);
  }
  /// OCI whiteout for `rel`: an empty file ".wh.NAME" beside it.
  void oci_whiteout(size_t i, const std::string& rel) {
    fs::path r(rel);
    std::string parent = r.parent_path().string();
    file(i, (parent.empty() ? "" : parent + "/") + ".wh." + r.filename().string(), "");
  }
  /// OCI opaque marker ".wh..wh..opq" inside the directory `rel`.
  void oci_opaque(size_t i, const std::string& rel) {
    file(i, (rel.empty() ? "" : rel + "/") + ".wh..wh..opq", "");
  }
  /// Kernel opaque marker (or "x" for a directory that holds xattr whiteouts).
  void opaque_xattr(size_t i, const std::string& rel, const char* attr = "trusted.overlay.opaque",
                    const std::string& value = "y") {
    xattr(i, rel, attr, value);
  }
  /// Xattr-form whiteout: an empty file with overlay.whiteout, inside a dir marked opaque "x".
  void xattr_whiteout(size_t i, const std::string& rel,
                      const char* attr = "trusted.overlay.whiteout") {
    file(i, rel, "");
    xattr(i, rel, attr, "");
  }
  void xattr(size_t i, const std::string& rel, const char* name, const std::string& value) {
    std::string p = path(i, rel);
    if (::lsetxattr(p.c_str(), name, value.data(), value.size(), 0) != 0) {
      fail_errno("lsetxattr " + std::string(name) + " " + p);
    }
  }
  void times(size_t i, const std::string& rel, time_t sec, long nsec) {
    std::string p = path(i, rel);
    struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
    if (::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) fail_errno("utimens " + p);
  }
  void owner(size_t i, const std::string& rel, uid_t uid, gid_t gid) {
    std::string p = path(i, rel);
    if (::lchown(p.c_str(), uid, gid) != 0) fail_errno("lchown " + p);
  }

  [[nodiscard]] std::string read(size_t i, const std::string& rel) const {
    return read_file(path(i, rel));
  }
  [[nodiscard]] bool exists(size_t i, const std::string& rel) const {
    return exists_no_follow(path(i, rel));
  }
  [[nodiscard]] struct stat stat(size_t i, const std::string& rel) const {
    return lstat_of(path(i, rel));
  }
  [[nodiscard]] std::vector<std::string> manifest(size_t i) const {
    return test::manifest(layer(i));
  }

 private:
  static void parents(const std::string& p) {
    std::error_code ec;
    fs::create_directories(fs::path(p).parent_path(), ec);
    if (ec) throw std::runtime_error("create_directories " + p + ": " + ec.message());
  }

  std::string root_;
  std::vector<std::string> layers_;
};

/// Manifests of layers [0, count) taken now; changes() reports what differs later.
class LowerSnapshot {
 public:
  LowerSnapshot() = default;
  LowerSnapshot(const LayerBuilder& b, size_t count) : b_(&b) {
    for (size_t i = 0; i < count; ++i) before_.push_back(b.manifest(i));
  }
  /// Empty if every lower layer is as it was; else the changed lines per layer.
  [[nodiscard]] std::string changes() const {
    std::string out;
    for (size_t i = 0; i < before_.size(); ++i) {
      std::string d = manifest_diff(before_[i], b_->manifest(i));
      if (!d.empty()) out += "layer l" + std::to_string(i) + ":\n" + d;
    }
    return out;
  }

 private:
  const LayerBuilder* b_ = nullptr;
  std::vector<std::vector<std::string>> before_;
};

/// A small tmpfs mounted on `dir` (created if missing) for the life of the object, if the
/// process may mount; ok() says whether it is.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, bool read_only) : dir_(dir) {
    ::mkdir(dir.c_str(), 0755);
    unsigned long flags = read_only ? MS_RDONLY : 0;
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", flags, "size=16m,mode=0755") == 0;
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  [[nodiscard]] bool ok() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

}  // namespace unionfs::test
