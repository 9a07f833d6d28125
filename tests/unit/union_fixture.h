// The fixture of the UnionFs tests: a LayerBuilder stack, the union over it, path helpers and
// the lower-layer snapshot taken at start() that CHECK_LOWERS_UNCHANGED compares against
// (DESIGN.md invariant 1: lower layers are never written).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/union_fs.h"
#include "tests/unit/layer_builder.h"

namespace unionfs::test {

constexpr Options kPriv{WhiteoutMode::kAuto, true};  // root: kernel-format markers
constexpr Options kOciOpts{WhiteoutMode::kOci, true};
constexpr Options kUnpriv{WhiteoutMode::kAuto, false};  // OCI markers, no chown
constexpr Options kOverlayOpts{WhiteoutMode::kOverlay, true};
inline const Caller kRoot{0, 0};

inline std::string errno_name(int e) {
  return e == 0 ? "ok" : std::to_string(e) + " " + strerror(e);
}
template <typename R>
std::string err(const R& r) {
  return errno_name(r.error());
}

// A layer stack plus the union over it. The topmost layer is the upper unless read-only.
struct Union {
  LayerBuilder b;
  LowerSnapshot lowers;
  std::unique_ptr<UnionFs> fs;

  explicit Union(size_t layers) : b(layers) {}

  UnionFs& start(Options opts = kPriv, bool read_only = false) {
    lowers = LowerSnapshot(b, read_only ? b.size() : b.size() - 1);
    fs = std::make_unique<UnionFs>(LayerStack::open(b.spec(), read_only), opts);
    return *fs;
  }
  [[nodiscard]] size_t up() const { return b.size() - 1; }

  // The inode at a '/'-separated path ("" is the root); each component is looked up once.
  Result<Entry> lookup(const std::string& path) {
    Inode* cur = &fs->root();
    if (path.empty()) return Entry{cur, *fs->getattr(*cur)};
    size_t start = 0;
    for (;;) {
      size_t slash = path.find('/', start);
      std::string name = path.substr(start, slash == std::string::npos ? slash : slash - start);
      auto e = fs->lookup(*cur, name);
      if (!e || slash == std::string::npos) return e;
      cur = e->inode;
      start = slash + 1;
    }
  }
  Inode& at(const std::string& path) {
    auto e = lookup(path);
    INFO("lookup " << path << ": " << err(e));
    REQUIRE(e.ok());
    return *e->inode;
  }
  int lookup_error(const std::string& path) { return lookup(path).error(); }

  std::vector<DirEntry> list(const std::string& dir) {
    auto l = fs->list(at(dir));
    INFO("list " << dir << ": " << err(l));
    REQUIRE(l.ok());
    return *l;
  }
  std::vector<std::string> names(const std::string& dir) {
    std::vector<std::string> out;
    for (const DirEntry& e : list(dir)) out.push_back(e.name);
    std::sort(out.begin(), out.end());
    return out;
  }
  DirEntry entry(const std::string& dir, const std::string& name) {
    for (const DirEntry& e : list(dir)) {
      if (e.name == name) return e;
    }
    FAIL("no entry " << name << " in " << dir);
    return {};
  }
  struct stat attr(const std::string& path) {
    auto st = fs->getattr(at(path));
    REQUIRE(st.ok());
    return *st;
  }

  std::string read(const std::string& path) {
    auto fd = fs->open(at(path), O_RDONLY);
    INFO("open " << path << ": " << err(fd));
    REQUIRE(fd.ok());
    return read_fd(fd->get());
  }
  // Opens for writing through the union (copy-up) and writes `data` at `offset`.
  void write(const std::string& path, const std::string& data, off_t offset = 0,
             int flags = O_WRONLY) {
    auto fd = fs->open(at(path), flags);
    INFO("open " << path << ": " << err(fd));
    REQUIRE(fd.ok());
    REQUIRE(::pwrite(fd->get(), data.data(), data.size(), offset) ==
            static_cast<ssize_t>(data.size()));
  }
  Inode& create(const std::string& dir, const std::string& name, const std::string& data,
                mode_t mode = 0644) {
    auto c = fs->create(at(dir), name, mode, O_WRONLY | O_CREAT | O_EXCL, kRoot);
    INFO("create " << name << ": " << err(c));
    REQUIRE(c.ok());
    REQUIRE(::write(c->fd.get(), data.data(), data.size()) == static_cast<ssize_t>(data.size()));
    return *c->entry.inode;
  }
  Status rename(const std::string& d1, const std::string& n1, const std::string& d2,
                const std::string& n2, unsigned flags = 0) {
    return fs->rename(at(d1), n1, at(d2), n2, flags);
  }
  static std::string sys_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }
};

#define CHECK_LOWERS_UNCHANGED(u) CHECK((u).lowers.changes() == "")

inline bool is_kernel_wh(const LayerBuilder& b, size_t layer, const std::string& rel) {
  if (!b.exists(layer, rel)) return false;
  return is_kernel_whiteout(b.stat(layer, rel));
}

using Names = std::vector<std::string>;

}  // namespace unionfs::test
