// libfuse low-level operations: unpack, call UnionFs, reply. Each op runs inside guard(), which
// turns an escaping exception into an error reply so that nothing throws into libfuse.
// Lookup counts: every entry reply (lookup, create, mknod, mkdir, symlink, link, readdirplus)
// is counted by UnionFs::lookup; forget gives them back. Owners cross the IdMap here: attributes
// on the way out, the caller and chown's new owner on the way in.
#include "fuse/ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "core/sys.h"

namespace unionfs::fuse {
namespace {

// An open file. One opened for reading from a lower layer follows the file's copy-up, as in
// overlayfs (ovl_real_fdget): its reads then come from the copy, and so do the pages they put in
// the kernel's cache, which later opens share.
struct FileHandle {
  FileHandle(UniqueFd f, Inode* lower_of, int flags)
      : fd(std::make_shared<const UniqueFd>(std::move(f))), follow(lower_of), flags(flags) {}
  /// The file to read: the copy, once the inode has been copied up since the open.
  SharedFd current(UnionFs& fs) {
    if (!follow.load(std::memory_order_acquire)) return fd;
    std::lock_guard lock(mu);
    Inode* inode = follow.load(std::memory_order_relaxed);
    if (inode && !fs.in_lower(*inode)) {
      auto copy = fs.open(*inode, flags & ~(O_TRUNC | O_CREAT | O_EXCL));
      if (copy) {
        fd = std::make_shared<const UniqueFd>(std::move(*copy));
        follow.store(nullptr, std::memory_order_release);
      }
    }
    return fd;
  }
  SharedFd fd;  ///< replaced (under mu, then follow cleared) only while follow is set
  std::atomic<Inode*> follow;
  const int flags;
  std::mutex mu;
  const Inode* counted = nullptr;  ///< -o passthrough: the inode whose open this is counted in
  bool passthrough = false;        ///< ... as a passthrough open (else a cached one)
};
struct DirHandle {
  std::vector<DirEntry> entries;  // "." and ".." first
};

Daemon& daemon_of(fuse_req_t req) { return *static_cast<Daemon*>(fuse_req_userdata(req)); }
UnionFs& fs_of(fuse_req_t req) { return *daemon_of(req).fs; }
// -o passthrough, once the kernel has agreed to it.
Passthrough* passthrough_of(fuse_req_t req) {
  Passthrough* pt = daemon_of(req).passthrough;
  return pt && pt->active() ? pt : nullptr;
}

Inode& node(fuse_req_t req, fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return fs_of(req).root();
  return *reinterpret_cast<Inode*>(ino);
}
fuse_ino_t nodeid(fuse_req_t req, const Inode* inode) {
  return inode == &fs_of(req).root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(inode);
}
static_assert(sizeof(fuse_ino_t) >= sizeof(Inode*), "nodeids are inode addresses");

FileHandle& file(fuse_file_info* fi) { return *reinterpret_cast<FileHandle*>(fi->fh); }
DirHandle& dir(fuse_file_info* fi) { return *reinterpret_cast<DirHandle*>(fi->fh); }

const IdMap& ids_of(fuse_req_t req) { return daemon_of(req).ids; }

// New objects belong to the caller, stored as the id mapping says (fuse-overlayfs: get_uid).
Caller caller(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return Caller{ids_of(req).container_uid(c->uid), ids_of(req).container_gid(c->gid)};
}

// Attributes as the mount shows them: owners through the id mapping and squashing.
struct stat shown(fuse_req_t req, struct stat st) {
  if (!ids_of(req).identity()) ids_of(req).to_host(st);
  return st;
}

template <typename F>
void guard(fuse_req_t req, F&& body) {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unionfs-cpp: internal error: %s\n", e.what());
    fuse_reply_err(req, EIO);
  }
}

double attr_timeout(fuse_req_t req, const Inode& inode, const struct stat& st) {
  return fs_of(req).attrs_cacheable(inode, st) ? daemon_of(req).timeout : 0.0;
}

fuse_entry_param entry_param(fuse_req_t req, const Entry& e) {
  fuse_entry_param p{};
  p.ino = nodeid(req, e.inode);
  p.attr = shown(req, e.attr);
  p.attr_timeout = attr_timeout(req, *e.inode, e.attr);
  p.entry_timeout = daemon_of(req).timeout;
  return p;
}

void reply_entry(fuse_req_t req, const Result<Entry>& r) {
  if (!r) {
    fuse_reply_err(req, r.error());
    return;
  }
  fuse_entry_param p = entry_param(req, *r);
  if (fuse_reply_entry(req, &p) == -ENOENT) fs_of(req).forget(*r->inode, 1);  // interrupted
}

void reply_status(fuse_req_t req, Status s) { fuse_reply_err(req, s.error()); }

void op_init(void*, fuse_conn_info* conn) {
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
  // Not splice read, which libfuse turns on by default: where its per-thread pipe can grow to
  // a whole request (1 MiB + 4 KiB; root with CAP_SYS_RESOURCE), every request is spliced
  // into the pipe and then read out of it, two system calls where one read(2) does: +1.5 us
  // per lookup, measured pinned. It only saves a copy of large writes (~8% of their throughput
  // here), and -o passthrough takes writes off the daemon altogether.
  conn->want &= ~FUSE_CAP_SPLICE_READ;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  // write-through keeps the upper the truth
  conn->max_write = 1u << 20;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guard(req, [&] {
    auto r = fs_of(req).lookup(node(req, parent), name);
    if (!r && r.error() == ENOENT) {
      fuse_entry_param p{};  // ino 0: the kernel caches the miss
      p.entry_timeout = daemon_of(req).timeout;
      fuse_reply_entry(req, &p);
      return;
    }
    reply_entry(req, r);
  });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  fs_of(req).forget(node(req, ino), n);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) fs_of(req).forget(node(req, forgets[i].ino), forgets[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  guard(req, [&] {
    Inode& inode = node(req, ino);
    auto st = fs_of(req).getattr(inode);
    if (!st) return (void)fuse_reply_err(req, st.error());
    const struct stat attr = shown(req, *st);
    fuse_reply_attr(req, &attr, attr_timeout(req, inode, attr));
  });
}

SetAttr to_set_attr(fuse_req_t req, const struct stat* attr, int to_set) {
  SetAttr a;
  a.set_mode = to_set & FUSE_SET_ATTR_MODE;
  a.set_uid = to_set & FUSE_SET_ATTR_UID;
  a.set_gid = to_set & FUSE_SET_ATTR_GID;
  a.set_size = to_set & FUSE_SET_ATTR_SIZE;
  a.set_atime = to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW);
  a.set_mtime = to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW);
  a.mode = attr->st_mode;
  a.uid = ids_of(req).container_uid(attr->st_uid);
  a.gid = ids_of(req).container_gid(attr->st_gid);
  a.size = attr->st_size;
  a.atime = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? timespec{0, UTIME_NOW} : attr->st_atim;
  a.mtime = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? timespec{0, UTIME_NOW} : attr->st_mtim;
  return a;
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  guard(req, [&] {
    SetAttr a = to_set_attr(req, attr, to_set);
    const SharedFd open_fd = fi ? file(fi).current(fs_of(req)) : nullptr;
    const int fd = open_fd ? open_fd->get() : -1;
    Inode& inode = node(req, ino);
    // -o passthrough: readers of the lower file would not see a truncate (it copies up).
    Passthrough* pt = a.set_size ? passthrough_of(req) : nullptr;
    if (pt && !pt->begin_change(inode)) return (void)fuse_reply_err(req, ETXTBSY);
    const Passthrough::ChangeEnd change(pt, inode);
    if (ids_of(req).squashes() && (a.set_uid || a.set_gid)) {
      // Squashed owners do not follow a chown, so, like fuse-overlayfs, its failure is no error.
      SetAttr own{.set_uid = a.set_uid, .set_gid = a.set_gid, .uid = a.uid, .gid = a.gid};
      (void)fs_of(req).setattr(inode, own, fd);
      a.set_uid = a.set_gid = false;
    }
    auto st = fs_of(req).setattr(inode, a, fd);
    if (!st) return (void)fuse_reply_err(req, st.error());
    const struct stat out = shown(req, *st);
    fuse_reply_attr(req, &out, attr_timeout(req, inode, out));
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  guard(req, [&] {
    auto t = fs_of(req).readlink(node(req, ino));
    if (!t) return (void)fuse_reply_err(req, t.error());
    fuse_reply_readlink(req, t->c_str());
  });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  guard(req, [&] { reply_entry(req, fs_of(req).mknod(node(req, parent), name, mode, rdev, caller(req))); });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  guard(req, [&] { reply_entry(req, fs_of(req).mkdir(node(req, parent), name, mode, caller(req))); });
}

void op_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  guard(req, [&] { reply_entry(req, fs_of(req).symlink(target, node(req, parent), name, caller(req))); });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  guard(req, [&] { reply_entry(req, fs_of(req).link(node(req, ino), node(req, parent), name)); });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guard(req, [&] { reply_status(req, fs_of(req).unlink(node(req, parent), name)); });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guard(req, [&] { reply_status(req, fs_of(req).rmdir(node(req, parent), name)); });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned flags) {
  guard(req, [&] {
    reply_status(req, fs_of(req).rename(node(req, parent), name, node(req, newparent), newname, flags));
  });
}

// Undoes an open: at its release, or when the kernel did not take the reply (it then sends no
// release).
void drop_handle(fuse_req_t req, FileHandle* h) {
  if (h->counted) daemon_of(req).passthrough->release(*h->counted, h->passthrough);
  delete h;
}

// The handle and fuse_open_out of an open counted by Passthrough (given back if this throws).
FileHandle* handle_of(fuse_req_t req, Passthrough::Opened&& o, Inode& inode, int flags,
                      fuse_open_out& out) {
  FileHandle* h;
  try {
    // A passthrough reader of a lower file pins it: nothing to follow (see passthrough.h).
    h = new FileHandle(std::move(o.fd), o.in_lower && !o.passthrough ? &inode : nullptr, flags);
  } catch (...) {
    daemon_of(req).passthrough->release(inode, o.passthrough);
    throw;
  }
  h->counted = o.counted;
  h->passthrough = o.passthrough;
  out = fuse_open_out{};
  out.fh = reinterpret_cast<uint64_t>(h);
  out.open_flags = o.open_flags;
  out.padding = static_cast<uint32_t>(o.backing_id);  // backing_id (7.40)
  return h;
}

// A file opened read-only has nothing for close(2) to flush: the kernel then sends no FLUSH at
// its closes (FOPEN_NOFLUSH), one round trip less per open of a file that is only read.
bool read_only(int flags) { return (flags & O_ACCMODE) == O_RDONLY; }

// A lower file's handle follows its copy-up, if there can be one.
Inode* follow_of(fuse_req_t req, Inode& inode, bool in_lower) {
  return in_lower && fs_of(req).stack().has_upper() ? &inode : nullptr;
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guard(req, [&] {
    Inode& inode = node(req, ino);
    if (Passthrough* pt = passthrough_of(req)) {
      auto o = pt->open(fs_of(req), inode, fi->flags);
      if (!o) return (void)fuse_reply_err(req, o.error());
      fuse_open_out out;
      FileHandle* h = handle_of(req, std::move(*o), inode, fi->flags, out);
      if (read_only(fi->flags)) out.open_flags |= FOPEN_NOFLUSH;
      // fuse_reply_buf sends from here (fuse_reply_iov allocates, and answers ENOMEM itself).
      if (fuse_reply_buf(req, reinterpret_cast<const char*>(&out), sizeof(out)) != 0) {
        drop_handle(req, h);
      }
      return;
    }
    bool in_lower = false;
    auto fd = fs_of(req).open(inode, fi->flags, &in_lower);
    if (!fd) return (void)fuse_reply_err(req, fd.error());
    auto* h = new FileHandle(std::move(*fd), follow_of(req, inode, in_lower), fi->flags);
    fi->fh = reinterpret_cast<uint64_t>(h);
    // Every change to a file goes through this mount (lower layers never change, the upper
    // only through us, write-through), so cached pages stay valid across opens.
    fi->keep_cache = 1;
    fi->noflush = read_only(fi->flags);
    if (fuse_reply_open(req, fi) != 0) delete h;
  });
}

// libfuse's convert_stat and calc_timeout_*, for the create reply built here.
uint64_t timeout_sec(double t) {
  if (t <= 0) return 0;
  if (t >= 1.8e19) return UINT64_MAX;
  return static_cast<uint64_t>(t);
}
uint32_t timeout_nsec(double t) {
  if (t <= 0 || t >= 1.8e19) return 0;
  const double f = t - static_cast<double>(timeout_sec(t));
  return f >= 0.999999999 ? 999999999u : static_cast<uint32_t>(f * 1.0e9);
}
fuse_entry_out entry_out(const fuse_entry_param& p) {
  fuse_entry_out e{};
  e.nodeid = p.ino;
  e.generation = p.generation;
  e.entry_valid = timeout_sec(p.entry_timeout);
  e.entry_valid_nsec = timeout_nsec(p.entry_timeout);
  e.attr_valid = timeout_sec(p.attr_timeout);
  e.attr_valid_nsec = timeout_nsec(p.attr_timeout);
  const struct stat& st = p.attr;
  fuse_attr& a = e.attr;
  a.ino = st.st_ino;
  a.mode = st.st_mode;
  a.nlink = static_cast<uint32_t>(st.st_nlink);
  a.uid = st.st_uid;
  a.gid = st.st_gid;
  a.rdev = static_cast<uint32_t>(st.st_rdev);
  a.size = static_cast<uint64_t>(st.st_size);
  a.blksize = static_cast<uint32_t>(st.st_blksize);
  a.blocks = static_cast<uint64_t>(st.st_blocks);
  a.atime = static_cast<uint64_t>(st.st_atim.tv_sec);
  a.mtime = static_cast<uint64_t>(st.st_mtim.tv_sec);
  a.ctime = static_cast<uint64_t>(st.st_ctim.tv_sec);
  a.atimensec = static_cast<uint32_t>(st.st_atim.tv_nsec);
  a.mtimensec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  a.ctimensec = static_cast<uint32_t>(st.st_ctim.tv_nsec);
  return e;
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  guard(req, [&] {
    Passthrough* pt = passthrough_of(req);
    // With passthrough an existing name is opened as op_open does (its copy-up reserved).
    bool in_lower = false;
    auto c = fs_of(req).create(node(req, parent), name, mode, fi->flags, caller(req), !pt,
                               &in_lower);
    if (!c) return (void)fuse_reply_err(req, c.error());
    Inode& inode = *c->entry.inode;
    fuse_entry_param p = entry_param(req, c->entry);
    FileHandle* h;
    int sent;
    if (pt) {
      auto o = c->fd ? pt->adopt_created(inode, std::move(c->fd), fi->flags)
                     : pt->open(fs_of(req), inode, fi->flags);
      if (!o) {
        fs_of(req).forget(inode, 1);
        return (void)fuse_reply_err(req, o.error());
      }
      struct {
        fuse_entry_out entry;
        fuse_open_out open;
      } out;
      static_assert(sizeof(out) == sizeof(fuse_entry_out) + sizeof(fuse_open_out));
      h = handle_of(req, std::move(*o), inode, fi->flags, out.open);
      if (read_only(fi->flags)) out.open.open_flags |= FOPEN_NOFLUSH;
      out.entry = entry_out(p);
      sent = fuse_reply_buf(req, reinterpret_cast<const char*>(&out), sizeof(out));
    } else {
      h = new FileHandle(std::move(c->fd), follow_of(req, inode, in_lower), fi->flags);
      fi->fh = reinterpret_cast<uint64_t>(h);
      fi->noflush = read_only(fi->flags);
      sent = fuse_reply_create(req, &p, fi);
    }
    if (sent != 0) {
      drop_handle(req, h);
      fs_of(req).forget(inode, 1);
    }
  });
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  const SharedFd fd = file(fi).current(fs_of(req));
  buf.buf[0].fd = fd->get();
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void op_write_buf(fuse_req_t req, fuse_ino_t, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  const SharedFd fd = file(fi).current(fs_of(req));
  out.buf[0].fd = fd->get();
  out.buf[0].pos = off;
  ssize_t n = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
  } else {
    fuse_reply_write(req, static_cast<size_t>(n));
  }
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  // Closing a duplicate reports delayed write errors, as close(2) would on a local file.
  int dup_fd = ::dup(file(fi).current(fs_of(req))->get());
  int err = (dup_fd < 0 || ::close(dup_fd) < 0) ? errno : 0;
  fuse_reply_err(req, err);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  drop_handle(req, &file(fi));
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  reply_status(req, sys::fsync(file(fi).current(fs_of(req))->get(), datasync != 0));
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guard(req, [&] {
    Inode& d = node(req, ino);
    auto list = fs_of(req).list(d);
    if (!list) return (void)fuse_reply_err(req, list.error());
    auto* h = new DirHandle;
    h->entries.reserve(list->size() + 2);
    h->entries.push_back({".", d.st_ino, DT_DIR});
    Inode::State s = d.state();
    h->entries.push_back({"..", s.parent ? s.parent->st_ino : d.st_ino, DT_DIR});
    for (DirEntry& e : *list) h->entries.push_back(std::move(e));
    fi->fh = reinterpret_cast<uint64_t>(h);
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) == -ENOENT) delete h;
  });
}

void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  guard(req, [&] {
    DirHandle& h = dir(fi);
    std::string buf(size, '\0');
    size_t used = 0;
    for (size_t i = static_cast<size_t>(off); i < h.entries.size(); ++i) {
      const DirEntry& e = h.entries[i];
      const off_t next = static_cast<off_t>(i + 1);
      size_t n;
      if (!plus) {
        struct stat st{};
        st.st_ino = e.ino;
        st.st_mode = static_cast<mode_t>(DTTOIF(e.type));
        n = fuse_add_direntry(req, buf.data() + used, size - used, e.name.c_str(), &st, next);
        if (n > size - used) break;
      } else if (i < 2) {
        fuse_entry_param p{};
        p.attr.st_ino = e.ino;
        p.attr.st_mode = static_cast<mode_t>(DTTOIF(e.type));
        n = fuse_add_direntry_plus(req, buf.data() + used, size - used, e.name.c_str(), &p, next);
        if (n > size - used) break;
      } else {
        auto r = fs_of(req).lookup(node(req, ino), e.name);
        if (!r) continue;  // gone since opendir
        fuse_entry_param p = entry_param(req, *r);
        n = fuse_add_direntry_plus(req, buf.data() + used, size - used, e.name.c_str(), &p, next);
        if (n > size - used) {
          fs_of(req).forget(*r->inode, 1);  // not sent: the kernel will not count it
          break;
        }
      }
      used += n;
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, ino, size, off, fi, false);
}
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, ino, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete &dir(fi);
  fuse_reply_err(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  guard(req, [&] { reply_status(req, fs_of(req).fsyncdir(node(req, ino), datasync != 0)); });
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  guard(req, [&] {
    auto sv = fs_of(req).statfs();
    if (!sv) return (void)fuse_reply_err(req, sv.error());
    fuse_reply_statfs(req, &*sv);
  });
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
  guard(req, [&] {
    reply_status(req, fs_of(req).setxattr(node(req, ino), name, std::string(value, size), flags));
  });
}

void reply_xattr_value(fuse_req_t req, const std::string& v, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, v.size());
  } else if (v.size() > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, v.data(), v.size());
  }
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guard(req, [&] {
    auto v = fs_of(req).getxattr(node(req, ino), name);
    if (!v) return (void)fuse_reply_err(req, v.error());
    reply_xattr_value(req, *v, size);
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guard(req, [&] {
    auto names = fs_of(req).listxattr(node(req, ino));
    if (!names) return (void)fuse_reply_err(req, names.error());
    std::string joined;
    for (const std::string& n : *names) joined.append(n).push_back('\0');
    reply_xattr_value(req, joined, size);
  });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  guard(req, [&] { reply_status(req, fs_of(req).removexattr(node(req, ino), name)); });
}

void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  guard(req, [&] {
    auto st = fs_of(req).getattr(node(req, ino));
    if (!st) return (void)fuse_reply_err(req, st.error());
    fuse_reply_err(req, (mask & W_OK) && !fs_of(req).stack().has_upper() ? EROFS : 0);
  });
}

void op_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  reply_status(req, sys::fallocate(file(fi).current(fs_of(req))->get(), mode, offset, length));
}

void op_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  off_t r = ::lseek(file(fi).current(fs_of(req))->get(), off, whence);
  if (r < 0) {
    fuse_reply_err(req, errno);
  } else {
    fuse_reply_lseek(req, r);
  }
}

}  // namespace

fuse_lowlevel_ops make_operations() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readlink = op_readlink;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.open = op_open;
  ops.create = op_create;
  ops.read = op_read;
  ops.write_buf = op_write_buf;
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.fsyncdir = op_fsyncdir;
  ops.statfs = op_statfs;
  ops.setxattr = op_setxattr;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = op_removexattr;
  ops.access = op_access;
  ops.fallocate = op_fallocate;
  ops.lseek = op_lseek;
  return ops;
}

}  // namespace unionfs::fuse
