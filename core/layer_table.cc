// Layer table: a walk of each layer in name order feeding XXH3-128 (its content ID and
// counts), then one walk of the merged view to find which of each layer's bytes show.
#include "core/layer_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <memory>
#include <new>
#include <set>
#include <utility>

#include "core/dir_index.h"
#include "core/image_diff.h"
#include "core/lookup.h"
#include "core/sys.h"

namespace unionfs {
namespace {

using InodeKey = std::pair<dev_t, ino_t>;

// One streaming XXH3-128 state; integers go in little-endian so IDs match across machines.
class Hash128 {
 public:
  Hash128() : st_(XXH3_createState()) {
    if (!st_) throw std::bad_alloc();
    reset();
  }
  Hash128(const Hash128&) = delete;
  Hash128& operator=(const Hash128&) = delete;
  ~Hash128() { XXH3_freeState(st_); }

  void reset() { XXH3_128bits_reset(st_); }
  void bytes(const void* p, size_t n) { XXH3_128bits_update(st_, p, n); }
  void u64(uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    bytes(b, sizeof(b));
  }
  void str(std::string_view s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  /// The canonical (big-endian) digest bytes.
  [[nodiscard]] XXH128_canonical_t digest() const {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st_));
    return c;
  }

 private:
  XXH3_state_t* st_;
};

std::string hex(const XXH128_canonical_t& c) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : c.digest) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

class LayerScan {
 public:
  LayerScan(const WhiteoutFormat& fmt, LayerStats& stats) : fmt_(fmt), stats_(stats) {}

  /// Hashes and counts the directory `fd` at `rel` ("" = the layer root) and all below it.
  Status dir(int fd, const std::string& rel, bool xwhiteouts);
  /// Hashes the root's own record (attributes and opacity), then its tree.
  Status root(int fd);
  std::string id() const { return hex(tree_.digest()); }
  std::string where;

 private:
  Status entry(int dir_fd, const std::string& name, const std::string& rel, bool xwhiteouts);
  Status file(int dir_fd, const std::string& name, const struct stat& st);
  Opacity opacity(int fd);
  Status fail(int err, const std::string& rel) {
    where = "/" + rel;
    return Errno{err};
  }

  const WhiteoutFormat& fmt_;
  LayerStats& stats_;
  Hash128 tree_;
  Hash128 content_;
  std::set<InodeKey> links_;
  std::unique_ptr<char[]> buf_ = std::make_unique<char[]>(kBufSize);
  static constexpr size_t kBufSize = 1 << 20;
};

// The OCI opaque marker is hashed and counted as the entry it is; the xattr one is not an
// entry, so it goes in as a flag (its xattr name differs between root and rootless writers,
// and the ID must not).
Opacity LayerScan::opacity(int fd) {
  const Opacity op = fmt_.dir_opacity(fd);
  const bool oci = fmt_.read_oci() && sys::stat_at(fd, std::string(kOciOpaqueName).c_str()).ok();
  const bool xattr_opaque = op == Opacity::kOpaque && !oci;
  if (xattr_opaque) ++stats_.opaque_dirs;
  tree_.u64(xattr_opaque ? 1 : 0);
  return op;
}

Status LayerScan::root(int fd) {
  auto st = sys::fstat(fd);
  if (!st) return fail(st.error(), "");
  tree_.str("");
  tree_.u64(st->st_mode);
  tree_.u64(st->st_uid);
  tree_.u64(st->st_gid);
  return dir(fd, "", opacity(fd) == Opacity::kXWhiteouts);
}

Status LayerScan::dir(int fd, const std::string& rel, bool xwhiteouts) {
  auto ents = sys::read_dir(fd);
  if (!ents) return fail(ents.error(), rel);
  std::vector<std::string> names;
  names.reserve(ents->size());
  for (sys::DirEnt& e : *ents) {
    if (!e.name.starts_with(kTempPrefix)) names.push_back(std::move(e.name));
  }
  // Name order, byte by byte (char_traits<char> compares as unsigned char): the same on
  // every machine, whatever order getdents returns.
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    UNIONFS_TRY(entry(fd, n, rel.empty() ? n : rel + "/" + n, xwhiteouts));
  }
  return kOk;
}

Status LayerScan::entry(int dir_fd, const std::string& name, const std::string& rel,
                        bool xwhiteouts) {
  auto st = sys::stat_at(dir_fd, name.c_str());
  if (!st) return fail(st.error(), rel);
  tree_.str(rel);
  tree_.u64(st->st_mode);
  tree_.u64(st->st_uid);
  tree_.u64(st->st_gid);
  const bool oci_marker = fmt_.read_oci() && name.starts_with(kOciWhiteoutPrefix);
  if (oci_marker) {
    ++(name == kOciOpaqueName ? stats_.opaque_dirs : stats_.whiteouts);
  } else if (is_kernel_whiteout(*st) ||
             (xwhiteouts && S_ISREG(st->st_mode) && st->st_size == 0 &&
              fmt_.is_xattr_whiteout(dir_fd, name.c_str()))) {
    ++stats_.whiteouts;
  } else if (!S_ISDIR(st->st_mode)) {
    ++stats_.files;
  }
  if (S_ISLNK(st->st_mode)) {
    auto target = sys::readlink_at(dir_fd, name.c_str());
    if (!target) return fail(target.error(), rel);
    tree_.str(*target);
  } else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
    tree_.u64(major(st->st_rdev));
    tree_.u64(minor(st->st_rdev));
  } else if (S_ISREG(st->st_mode)) {
    Status s = file(dir_fd, name, *st);
    if (!s) return fail(s.error(), rel);
  } else if (S_ISDIR(st->st_mode)) {
    auto fd = sys::open_at(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY);
    if (!fd) return fail(fd.error(), rel);
    return dir(fd->get(), rel, opacity(fd->get()) == Opacity::kXWhiteouts);
  }
  return kOk;
}

// Contents go through their own hash, so a file is one fixed-size record in the tree hash
// whatever its length, and a file that grows while we read it stays unambiguous.
Status LayerScan::file(int dir_fd, const std::string& name, const struct stat& st) {
  if (st.st_nlink < 2 || links_.insert({st.st_dev, st.st_ino}).second) {
    stats_.size += static_cast<uint64_t>(st.st_size);
  }
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(dir_fd, name.c_str(), O_RDONLY));
  content_.reset();
  uint64_t total = 0;
  for (;;) {
    UNIONFS_ASSIGN_OR_RETURN(size_t n, sys::pread(fd.get(), buf_.get(), kBufSize,
                                               static_cast<off_t>(total)));
    if (n == 0) break;
    content_.bytes(buf_.get(), n);
    total += n;
  }
  const XXH128_canonical_t c = content_.digest();
  tree_.u64(total);
  tree_.bytes(c.digest, sizeof(c.digest));
  return kOk;
}

// The merged view, top-down: the bytes of each layer's regular files that show through.
class VisibleWalk {
 public:
  VisibleWalk(const WhiteoutFormat& fmt, size_t layers) : fmt_(fmt), shown_(layers, 0) {}

  Status dir(const DirParts& parts);
  [[nodiscard]] const std::vector<uint64_t>& shown() const { return shown_; }

 private:
  Result<DirParts> child_parts(const DirParts& parts, std::span<const IndexHit> hits,
                               const std::string& name);

  const WhiteoutFormat& fmt_;
  std::vector<uint64_t> shown_;  // per layer
  std::set<InodeKey> links_;
};

Status VisibleWalk::dir(const DirParts& parts) {
  UNIONFS_ASSIGN_OR_RETURN(std::shared_ptr<const DirIndex> index, DirIndex::build(fmt_, parts));
  std::vector<std::string> names;
  index->for_each([&](std::string_view n, std::span<const IndexHit> hits) {
    if (!hits.empty() && hits.front().type != kDtWhiteout) names.emplace_back(n);
  });
  for (const std::string& n : names) {
    std::span<const IndexHit> hits = index->find(n);
    const IndexHit& top = hits.front();
    if (top.type == DT_DIR) {
      UNIONFS_ASSIGN_OR_RETURN(DirParts child, child_parts(parts, hits, n));
      UNIONFS_TRY(dir(child));
    } else if (top.type == DT_REG) {
      const LayerDir& part = parts[top.part];
      UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::stat_at(part.get(), n.c_str()));
      if (st.st_nlink < 2 || links_.insert({st.st_dev, st.st_ino}).second) {
        shown_[part.layer] += static_cast<uint64_t>(st.st_size);
      }
    }
  }
  return kOk;
}

// The instances of a merged subdirectory: the directory hits from the top, down to the
// first that is opaque (a non-directory or whiteout below a directory is hidden).
Result<DirParts> VisibleWalk::child_parts(const DirParts& parts, std::span<const IndexHit> hits,
                                          const std::string& name) {
  DirParts out;
  for (const IndexHit& h : hits) {
    if (h.type != DT_DIR) break;
    const LayerDir& parent = parts[h.part];
    UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd,
                             sys::open_at(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY));
    const Opacity op = fmt_.dir_opacity(fd.get());
    LayerDir d;
    d.layer = parent.layer;
    d.xwhiteouts = op == Opacity::kXWhiteouts;
    d.fd = std::make_shared<const UniqueFd>(std::move(fd));
    out.push_back(std::move(d));
    if (op == Opacity::kOpaque || h.hides_lower) break;
  }
  return out;
}

}  // namespace

Status scan_layer(const WhiteoutFormat& fmt, int root_fd, LayerStats& stats, std::string* where) {
  LayerScan scan(fmt, stats);
  Status s = scan.root(root_fd);
  if (!s) {
    if (where) *where = scan.where;
    return s;
  }
  stats.id = scan.id();
  return kOk;
}

Result<LayerTable> layer_table(const LayerStack& stack, const WhiteoutFormat& fmt,
                               const std::function<void()>& step, std::string* where) {
  LayerTable table;
  for (size_t i = 0; i < stack.size(); ++i) {
    LayerStats stats;
    stats.layer = i;
    stats.path = stack.layer(i).path;
    std::string at;
    Status s = scan_layer(fmt, stack.layer(i).root.get(), stats, &at);
    if (!s) {
      if (where) *where = stats.path + at;
      return Errno{s.error()};
    }
    table.on_disk += stats.size;
    table.layers.push_back(std::move(stats));
    if (step) step();
  }
  auto root = merged_root(stack, fmt, stack.size());
  VisibleWalk walk(fmt, stack.size());
  Status s = root ? walk.dir(*root) : Status(Errno{root.error()});
  if (!s) {
    if (where) *where = "the merged view";
    return Errno{s.error()};
  }
  for (LayerStats& l : table.layers) {
    const uint64_t shown = walk.shown()[l.layer];
    l.hidden = l.size > shown ? l.size - shown : 0;
    table.wasted += l.hidden;
  }
  table.visible = table.on_disk - table.wasted;
  if (step) step();
  return table;
}

}  // namespace unionfs
