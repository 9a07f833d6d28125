// Import: per layer, the blob digest is checked in one pass over the archive member, then the
// member is read again through the decompressor (if its magic bytes say so) into the tar
// extractor, hashing the uncompressed stream for the diff_id.
#include "core/image_import.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/byte_stream.h"
#include "core/output_dir.h"
#include "core/sha256.h"
#include "core/sys.h"
#include "core/tar.h"
#include "core/whiteout.h"

namespace unionfs {
namespace {

Errno failed(std::string* why, int err, const std::string& msg) {
  if (why) *why = msg;
  return Errno{err};
}

// The same, for a failed system call: its strerror follows.
Errno failed_sys(std::string* why, int err, const std::string& msg) {
  return failed(why, err, msg + ": " + std::strerror(err));
}

// The sha256 of an archive member's bytes.
Result<std::string> hash_member(int fd, const ArchiveMember& m,
                                const std::function<void(uint64_t)>& bytes) {
  FileRange range(fd, m.offset, m.size);
  HashingSource h(range, bytes);
  UNIONFS_TRY(h.drain());
  if (h.bytes() != m.size) return Errno{EBADMSG};
  return h.hex();
}

// One layer member into the directory `out`.
Result<ExtractStats> import_layer(const ImportSource& src, const LayerRef& l,
                                  const std::string& label, int out, const ImportOptions& opts,
                                  const std::function<void(uint64_t)>& bytes, std::string* why) {
  const ArchiveMember* m = src.index.file(l.path);
  if (!m) return failed(why, EINVAL, label + ": the archive has no member '" + l.path + "'");
  if (l.blob_size != 0 && l.blob_size != m->size) {
    return failed(why, EINVAL,
                  label + ": '" + l.path + "' has " + std::to_string(m->size) +
                      " bytes, the manifest says " + std::to_string(l.blob_size));
  }
  if (!l.blob_sha256.empty()) {
    auto hex = hash_member(src.index.fd(), *m, bytes);
    if (!hex) return failed_sys(why, hex.error(), label + ": cannot read '" + l.path + "'");
    if (*hex != l.blob_sha256) {
      return failed(why, EINVAL,
                    label + ": digest mismatch: '" + l.path + "' has sha256:" + *hex +
                        ", the manifest says sha256:" + l.blob_sha256);
    }
  }
  char head[8] = {};
  auto got = sys::pread(src.index.fd(), head, std::min<uint64_t>(sizeof(head), m->size),
                        static_cast<off_t>(m->offset));
  if (!got) return failed_sys(why, got.error(), label + ": cannot read '" + l.path + "'");
  FileRange range(src.index.fd(), m->offset, m->size);
  HashingSource counted(range, bytes);
  std::string err;
  auto dec = open_decompressed(sniff_compression(head, *got), counted, &err);
  if (!dec) return failed(why, dec.error(), label + ": " + err);
  HashingSource raw_tar(*dec ? **dec : static_cast<ByteSource&>(counted));
  TarReader tar(raw_tar);
  const WhiteoutFormat fmt(opts.format, opts.privileged);
  auto stats = extract_layer(tar, out, fmt, opts.privileged, &err);
  Status s = stats ? raw_tar.drain() : Status(Errno{stats.error()});
  if (!s) {
    auto* filter = dynamic_cast<FilterSource*>(dec->get());
    if (filter && !filter->why().empty()) err = filter->why();
    return failed(why, s.error(), label + " (" + l.path + "): " + err);
  }
  const std::string diff_id = raw_tar.hex();
  if (diff_id != l.diff_id) {
    return failed(why, EINVAL,
                  label + ": diff_id mismatch: the uncompressed '" + l.path +
                      "' has sha256:" + diff_id + ", the config says sha256:" + l.diff_id);
  }
  return stats;
}

Result<ImportResult> import_into(const ImportSource& src, int tmp, const std::string& final_dir,
                                 const ImportOptions& opts,
                                 const std::function<void(uint64_t)>& bytes, std::string* why) {
  ImportResult res;
  for (size_t i = 0; i < src.plan.layers.size(); ++i) {
    const LayerRef& l = src.plan.layers[i];
    // Zero-padded to one width, so that the names sort bottom to top.
    std::string idx = std::to_string(i);
    const size_t width = std::max<size_t>(3, std::to_string(src.plan.layers.size() - 1).size());
    const std::string name =
        std::string(width - idx.size(), '0') + idx + "-" + l.diff_id.substr(0, 12);
    const std::string label = "layer " + std::to_string(i);
    Status s = sys::mkdir_at(tmp, name.c_str(), 0755);
    auto out = s ? sys::open_at(tmp, name.c_str(), O_RDONLY | O_DIRECTORY)
                 : Result<UniqueFd>(Errno{s.error()});
    if (!out) return failed_sys(why, out.error(), label + ": cannot create its directory");
    auto stats = import_layer(src, l, label, out->get(), opts, bytes, why);
    if (!stats) return Errno{stats.error()};
    res.layers.push_back({final_dir + "/" + name, l.diff_id, *stats});
    res.stack += (res.stack.empty() ? "" : ":") + res.layers.back().dir;
  }
  const std::string text = res.stack + "\n";
  auto f = sys::open_at(tmp, "stack", O_WRONLY | O_CREAT | O_EXCL, 0644);
  Status s = f ? sys::write_all(f->get(), text.data(), text.size()) : Status(Errno{f.error()});
  if (!s) return failed_sys(why, s.error(), "cannot write the stack file");
  return res;
}

}  // namespace

Result<ImportSource> open_import(const std::string& archive, const std::string& image,
                                 std::string* why) {
  ImportSource src;
  // O_NONBLOCK: a FIFO with no writer must not hang the import; it is refused just below.
  auto fd = sys::open_path(archive, O_RDONLY | O_NONBLOCK);
  if (!fd) return failed_sys(why, fd.error(), "cannot open '" + archive + "'");
  auto st = sys::fstat(fd->get());
  if (!st) return failed_sys(why, st.error(), "cannot stat '" + archive + "'");
  if (!S_ISREG(st->st_mode)) {
    return failed(why, EINVAL, "'" + archive + "' is not a regular file (an image archive is read "
                               "at random offsets: save it to a file first)");
  }
  char head[8] = {};
  auto got = sys::pread(fd->get(), head, sizeof(head), 0);
  if (!got) return failed_sys(why, got.error(), "cannot read '" + archive + "'");
  const Compression c = sniff_compression(head, *got);
  if (c != Compression::kNone) {
    return failed(
        why, EPROTONOSUPPORT,
        "'" + archive + "' is " + compression_name(c) + "-compressed: decompress it first");
  }
  std::string err;
  auto index = ArchiveIndex::read(std::move(*fd), &err);
  if (!index) return failed(why, index.error(), "'" + archive + "': " + err);
  src.index = std::move(*index);
  auto plan = plan_image(src.index, image, &err);
  if (!plan) return failed(why, plan.error(), "'" + archive + "': " + err);
  src.plan = std::move(*plan);
  for (const LayerRef& l : src.plan.layers) {
    const ArchiveMember* m = src.index.file(l.path);
    if (m) src.total_bytes += m->size * (l.blob_sha256.empty() ? 1 : 2);
  }
  return src;
}

void check_import_target(const std::string& dir) {
  const auto [parent_path, name] = split_target(dir);
  const std::string what = "import directory '" + dir + "'";
  if (dir.find(':') != std::string::npos) {
    throw SetupError(what + ": ':' separates layers in a stack spec, choose a path without it");
  }
  auto parent = sys::open_path(parent_path, O_RDONLY | O_DIRECTORY);
  if (!parent) throw SetupError(what + ": " + std::strerror(parent.error()));
  check_absent_or_empty(parent->get(), name, what);
}

Result<ImportResult> import_layers(const ImportSource& src, const std::string& dir,
                                   const ImportOptions& opts,
                                   const std::function<void(uint64_t)>& bytes, std::string* why) {
  const auto [parent_path, name] = split_target(dir);
  auto parent = sys::open_path(parent_path, O_RDONLY | O_DIRECTORY);
  if (!parent) return failed_sys(why, parent.error(), "cannot open '" + parent_path + "'");
  const int pfd = parent->get();
  auto real = sys::readlink_at(AT_FDCWD, sys::fd_path(pfd).c_str());
  if (!real) return failed_sys(why, real.error(), "cannot resolve '" + parent_path + "'");
  const std::string final_dir = (*real == "/" ? "" : *real) + "/" + name;
  // The stack file names the layers by this path: a ':' reached through a symlink would split it.
  if (final_dir.find(':') != std::string::npos) {
    return failed(why, EINVAL, "'" + final_dir + "': ':' separates layers in a stack spec");
  }
  const bool existed = sys::stat_at(pfd, name.c_str()).ok();
  const std::string tmp = "." + name + ".import-tmp." + std::to_string(::getpid());
  // As root the layers hold what the image holds (set-user-ID files, device nodes): only root
  // may reach into them, while they are built and after.
  Status s = sys::mkdir_at(pfd, tmp.c_str(), ::geteuid() == 0 ? 0700 : 0755);
  if (!s) return failed_sys(why, s.error(), "cannot create '" + parent_path + "/" + tmp + "'");
  // Removes the temporary directory on every way out but success, an exception included.
  struct Cleanup {
    int pfd;
    const std::string& tmp;
    bool armed = true;
    ~Cleanup() {
      if (armed) remove_tree(pfd, tmp);
    }
  } cleanup{pfd, tmp};
  auto out = sys::open_at(pfd, tmp.c_str(), O_RDONLY | O_DIRECTORY);
  Result<ImportResult> res = out ? import_into(src, out->get(), final_dir, opts, bytes, why)
                                 : Result<ImportResult>(Errno{out.error()});
  // Over an empty directory rename(2) replaces it; over nothing, NOREPLACE keeps a racing
  // creator's directory intact.
  if (res) {
    s = sys::rename_at(pfd, tmp.c_str(), pfd, name.c_str(), existed ? 0 : RENAME_NOREPLACE);
    if (!s)
      res = failed_sys(why, s.error(), "cannot rename the result into place as '" + dir + "'");
  }
  if (res) cleanup.armed = false;
  return res;
}

}  // namespace unionfs
