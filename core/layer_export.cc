// Export: a scan that plans every tar entry in output order (each directory's names sorted,
// depth first), a pass that turns later names of one inode into hard-link entries, then the
// writing, reading each file's data through openat2 beneath the layer root.
#include "core/layer_export.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "core/layer.h"
#include "core/output_dir.h"
#include "core/sys.h"

namespace unionfs {
namespace {

Errno failed(std::string* why, int err, const std::string& path, const std::string& msg = "") {
  if (why)
    *why = "'" + (path.empty() ? std::string(".") : path) +
           "': " + (msg.empty() ? std::strerror(err) : msg);
  return Errno{err};
}

TarEntry header_of(const struct stat& st) {
  TarEntry h;
  h.mode = st.st_mode & 07777;
  h.uid = st.st_uid;
  h.gid = st.st_gid;
  h.mtime = st.st_mtim;
  return h;
}

// The xattrs of an object but the overlay's own, sorted by name.
std::vector<std::pair<std::string, std::string>> user_xattrs(int dir, const char* name,
                                                             const WhiteoutFormat& fmt) {
  std::vector<std::pair<std::string, std::string>> out;
  auto names = name[0] ? sys::llistxattr_at(dir, name) : sys::listxattr(dir);
  if (!names) return out;
  for (const std::string& n : *names) {
    if (fmt.is_internal_xattr(n) || n.starts_with("trusted.overlay.")) continue;
    auto v = name[0] ? sys::lgetxattr_at(dir, name, n.c_str()) : sys::getxattr(dir, n.c_str());
    if (v) out.emplace_back(n, *v);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// "y" or "x" from an opaque xattr, or "".
std::string opaque_value(int dir) {
  for (const char* attr : {"trusted.overlay.opaque", "user.overlay.opaque"}) {
    auto v = sys::getxattr(dir, attr);
    if (v && (*v == "y" || *v == "x")) return *v;
  }
  return "";
}

}  // namespace

Result<LayerExport> LayerExport::scan(const std::string& dir, const WhiteoutFormat& fmt,
                                      std::string* why) {
  LayerExport ex;
  ex.fmt_ = &fmt;
  auto root = sys::open_path(dir, O_RDONLY | O_DIRECTORY);
  if (!root) return failed(why, root.error(), dir);
  ex.root_ = std::move(*root);
  auto st = sys::fstat(ex.root_.get());
  if (!st) return failed(why, st.error(), dir);
  Item self{header_of(*st), "", 0, 0, 1};
  self.hdr.type = TarType::kDir;
  self.hdr.path = "./";
  self.hdr.xattrs = user_xattrs(ex.root_.get(), "", fmt);
  ex.items_.push_back(self);
  UNIONFS_TRY(ex.scan_dir(ex.root_.get(), "", self.hdr, why));
  ex.link_pass();
  ex.fmt_ = nullptr;
  return ex;
}

Status LayerExport::scan_dir(int fd, const std::string& rel, const TarEntry& self,
                             std::string* why) {
  auto ents = sys::read_dir(fd);
  if (!ents) return failed(why, ents.error(), rel);
  std::vector<std::string> names;
  for (const auto& e : *ents) {
    if (!std::string_view(e.name).starts_with(kTempPrefix)) names.push_back(e.name);
  }
  std::sort(names.begin(), names.end());
  const std::string opaque = opaque_value(fd);
  const std::string prefix = rel.empty() ? "" : rel + "/";
  Kids kids;
  if (opaque == "y" && !std::binary_search(names.begin(), names.end(), kOciOpaqueName)) {
    // As moby's overlay differ: the marker takes the directory's mode, owner and time.
    Item m{self, "", 0, 0, 1};
    m.hdr.type = TarType::kFile;
    m.hdr.path = prefix + std::string(kOciOpaqueName);
    m.hdr.xattrs.clear();
    kids.emplace_back(kOciOpaqueName, m);
    ++counts_.opaque_dirs;
  }
  for (const std::string& n : names) {
    Status s = add_child(fd, rel, n, names, opaque == "x", kids);
    if (!s) return failed(why, s.error(), prefix + n);
  }
  std::sort(kids.begin(), kids.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [name, item] : kids) {
    items_.push_back(item);
    if (item.hdr.type != TarType::kDir) continue;
    auto sub = sys::open_at(fd, name.c_str(), O_RDONLY | O_DIRECTORY);
    if (!sub) return failed(why, sub.error(), prefix + name);
    UNIONFS_TRY(scan_dir(sub->get(), prefix + name, item.hdr, why));
  }
  return kOk;
}

Status LayerExport::add_child(int fd, const std::string& rel, const std::string& name,
                              const std::vector<std::string>& names, bool xwhiteouts, Kids& kids) {
  UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::stat_at(fd, name.c_str()));
  const std::string path = rel.empty() ? name : rel + "/" + name;
  Item it{header_of(st), "", st.st_dev, st.st_ino, st.st_nlink};
  const bool whiteout =
      is_kernel_whiteout(st) || (xwhiteouts && S_ISREG(st.st_mode) && st.st_size == 0 &&
                                 fmt_->is_xattr_whiteout(fd, name.c_str()));
  if (whiteout) {
    const std::string wh = std::string(kOciWhiteoutPrefix) + name;
    if (std::binary_search(names.begin(), names.end(), wh)) return kOk;  // both forms
    it.hdr.type = TarType::kFile;
    it.hdr.path = (rel.empty() ? "" : rel + "/") + wh;
    it.nlink = 1;
    kids.emplace_back(wh, it);
    ++counts_.whiteouts;
    return kOk;
  }
  if (S_ISSOCK(st.st_mode)) {
    ++counts_.skipped;
    return kOk;
  }
  it.hdr.path = path;
  it.hdr.xattrs = user_xattrs(fd, name.c_str(), *fmt_);
  if (S_ISDIR(st.st_mode)) {
    it.hdr.type = TarType::kDir;
    it.hdr.path += "/";
  } else if (S_ISREG(st.st_mode)) {
    it.hdr.type = TarType::kFile;
    it.hdr.size = static_cast<uint64_t>(st.st_size);
    it.src = path;
  } else if (S_ISLNK(st.st_mode)) {
    it.hdr.type = TarType::kSymlink;
    UNIONFS_ASSIGN_OR_RETURN(it.hdr.link, sys::readlink_at(fd, name.c_str()));
  } else {
    it.hdr.type = S_ISCHR(st.st_mode)   ? TarType::kChar
                  : S_ISBLK(st.st_mode) ? TarType::kBlock
                                        : TarType::kFifo;
    it.hdr.dev_major = major(st.st_rdev);
    it.hdr.dev_minor = minor(st.st_rdev);
  }
  kids.emplace_back(name, it);
  return kOk;
}

// In output order, the first name of an inode keeps its data; the others become links to it.
void LayerExport::link_pass() {
  std::map<std::pair<dev_t, ino_t>, std::string> first;
  for (Item& it : items_) {
    if (it.hdr.type != TarType::kDir && it.nlink > 1) {
      auto [pos, fresh] = first.try_emplace({it.dev, it.ino}, it.hdr.path);
      if (!fresh) {
        it.hdr.type = TarType::kHardLink;
        it.hdr.link = pos->second;
        it.hdr.size = 0;
        it.hdr.xattrs.clear();
        it.src.clear();
        ++counts_.hard_links;
      }
    }
    data_bytes_ += it.src.empty() ? 0 : it.hdr.size;
  }
}

Status LayerExport::write_items(TarWriter& tar, const std::function<void(uint64_t)>& bytes,
                                std::string* why) {
  std::vector<char> buf(1 << 16);
  for (const Item& it : items_) {
    Status s = tar.add(it.hdr);
    if (!s)
      return failed(why, s.error(), it.hdr.path,
                    "writing the tar: " + std::string(std::strerror(s.error())));
    if (it.src.empty()) continue;
    // O_NONBLOCK: a file swapped for a FIFO since the scan must not block the export.
    auto fd = sys::open_beneath(root_.get(), it.src, O_RDONLY | O_NONBLOCK);
    if (!fd) return failed(why, fd.error(), it.src);
    auto st = sys::fstat(fd->get());
    if (!st) return failed(why, st.error(), it.src);
    if (!S_ISREG(st->st_mode)) {
      return failed(why, EAGAIN, it.src, "it changed while being exported (not a regular file)");
    }
    uint64_t left = it.hdr.size;
    while (left > 0) {
      auto got = sys::read(fd->get(), buf.data(), std::min<uint64_t>(buf.size(), left));
      if (!got) return failed(why, got.error(), it.src);
      if (*got == 0) return failed(why, EIO, it.src, "the file shrank while being exported");
      s = tar.write(buf.data(), *got);
      if (!s)
        return failed(why, s.error(), it.src,
                      "writing the tar: " + std::string(std::strerror(s.error())));
      left -= *got;
      if (bytes) bytes(*got);
    }
  }
  return kOk;
}

Result<ExportStats> LayerExport::write(const std::string& out_tar,
                                       const std::function<void(uint64_t)>& bytes,
                                       std::string* why) {
  const auto [parent_path, name] = split_target(out_tar);
  auto parent = sys::open_path(parent_path, O_RDONLY | O_DIRECTORY);
  if (!parent) return failed(why, parent.error(), parent_path);
  const int pfd = parent->get();
  const std::string tmp = "." + name + ".export-tmp." + std::to_string(::getpid());
  auto fd = sys::open_at(pfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (!fd) return failed(why, fd.error(), parent_path + "/" + tmp);
  FdSink sink(fd->get());
  TarWriter tar(sink);
  Status s = write_items(tar, bytes, why);
  if (s) {
    s = tar.finish();
    if (s) s = sys::fsync(fd->get(), false);
    if (s) s = sys::rename_at(pfd, tmp.c_str(), pfd, name.c_str());
    if (!s) failed(why, s.error(), out_tar);
  }
  if (!s) {
    (void)sys::unlink_at(pfd, tmp.c_str());
    return Errno{s.error()};
  }
  ExportStats stats = counts_;
  stats.entries = items_.size();
  stats.tar_bytes = sink.bytes();
  stats.diff_id = sink.hex();
  return stats;
}

void check_export_target(const std::string& layer_dir, const std::string& out_tar) {
  const auto [parent_path, name] = split_target(out_tar);
  const std::string what = "output '" + out_tar + "'";
  auto layer = sys::open_path(layer_dir, O_RDONLY | O_DIRECTORY);
  if (!layer)
    throw SetupError("layer directory '" + layer_dir + "': " + std::strerror(layer.error()));
  auto lst = sys::fstat(layer->get());
  auto parent = sys::open_path(parent_path, O_RDONLY | O_DIRECTORY);
  if (!lst || !parent) {
    throw SetupError(what + ": " + std::strerror(lst ? parent.error() : lst.error()));
  }
  auto st = sys::stat_at(parent->get(), name.c_str());
  if (st && S_ISDIR(st->st_mode)) throw SetupError(what + " is a directory");
  // Up from the parent to "/": the output must not land in the layer it is made of.
  for_each_ancestor(std::move(*parent), what, [&](const struct stat& here) {
    if (here.st_dev == lst->st_dev && here.st_ino == lst->st_ino) {
      throw SetupError(what + " is inside the layer directory '" + layer_dir + "'");
    }
  });
}

}  // namespace unionfs
