// See passthrough.h.
#include "fuse/passthrough.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>


namespace unionfs::fuse {
namespace {

// struct fuse_backing_map and the /dev/fuse ioctls of the kernel's uapi header (7.40).
struct BackingMap {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
static_assert(sizeof(BackingMap) == 16);
constexpr unsigned long kBackingOpen = _IOW(229, 1, BackingMap);
constexpr unsigned long kBackingClose = _IOW(229, 2, uint32_t);

// fuse_init_out's fields past flags2 (7.40): max_stack_depth replaced unused[0].
constexpr size_t kFlagsOffset = offsetof(fuse_init_out, flags);
constexpr size_t kFlags2Offset = offsetof(fuse_init_out, flags2);
constexpr size_t kMaxStackDepthOffset = kFlags2Offset + 4;
static_assert(offsetof(fuse_init_out, unused) == kMaxStackDepthOffset);
// Backing files must not be on stacked filesystems themselves (overlayfs, ecryptfs, a FUSE
// mount with passthrough): the mount's own depth is then 1, so kernel overlayfs can still use it
// as a layer (but not an overlay over that overlay).
constexpr uint32_t kMaxStackDepth = 1;

uint32_t load32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
void store32(void* p, uint32_t v) { std::memcpy(p, &v, sizeof(v)); }

}  // namespace

int Passthrough::install(fuse_session* se) {
  if (instance_ && instance_ != this) return -EBUSY;
  fuse_custom_io io{};
  io.read = &Passthrough::io_read;
  io.writev = &Passthrough::io_writev;
  io.splice_send = &Passthrough::io_splice_send;
  instance_ = this;
  dev_fd_ = fuse_session_fd(se);
  const int rc = fuse_session_custom_io(se, &io, dev_fd_);
  if (rc != 0) instance_ = nullptr;
  return rc;
}

// Notes the INIT request (read here, as every request is: splice read is off, see op_init) and
// whether the kernel offers passthrough.
ssize_t Passthrough::io_read(int fd, void* buf, size_t len, void*) {
  const ssize_t n = ::read(fd, buf, len);
  Passthrough* self = instance_;
  if (self && n >= static_cast<ssize_t>(sizeof(fuse_in_header)) &&
      self->init_unique_.load(std::memory_order_relaxed) == 0 && !self->active()) {
    const auto* in = static_cast<const fuse_in_header*>(buf);
    if (in->opcode == FUSE_INIT &&
        n >= static_cast<ssize_t>(sizeof(fuse_in_header) + offsetof(fuse_init_in, unused))) {
      const auto* init = reinterpret_cast<const fuse_init_in*>(in + 1);
      self->offered_ = (init->flags & kFuseInitExt) && (init->flags2 & kFusePassthroughFlags2);
      self->init_unique_.store(in->unique, std::memory_order_relaxed);
    }
  }
  return n;
}

// Amends libfuse's INIT reply: FUSE_INIT_EXT, FUSE_PASSTHROUGH and the stack depth of backing
// files (libfuse leaves them 0). Writeback caching, which excludes passthrough, is off.
ssize_t Passthrough::io_writev(int fd, struct iovec* iov, int count, void*) {
  Passthrough* self = instance_;
  const uint64_t unique = self ? self->init_unique_.load(std::memory_order_relaxed) : 0;
  bool amended = false;
  if (unique != 0 && count == 2 && iov[0].iov_len == sizeof(fuse_out_header)) {
    const auto* out = static_cast<const fuse_out_header*>(iov[0].iov_base);
    if (out->unique == unique) {
      self->init_unique_.store(0, std::memory_order_relaxed);
      if (!self->offered_) {
        std::fputs("unionfs-cpp: the kernel does not offer FUSE passthrough (Linux 6.9+ with "
                   "CONFIG_FUSE_PASSTHROUGH): file data go through the daemon\n", stderr);
      }
      if (out->error == 0 && self->offered_ && iov[1].iov_len >= kMaxStackDepthOffset + 4) {
        auto* init = static_cast<char*>(iov[1].iov_base);
        const uint32_t flags = load32(init + kFlagsOffset);
        if (!(flags & FUSE_WRITEBACK_CACHE)) {
          store32(init + kFlagsOffset, flags | kFuseInitExt);
          store32(init + kFlags2Offset, load32(init + kFlags2Offset) | kFusePassthroughFlags2);
          store32(init + kMaxStackDepthOffset, kMaxStackDepth);
          amended = true;
        }
      }
    }
  }
  const ssize_t n = ::writev(fd, iov, count);
  if (amended && n >= 0) self->active_.store(true, std::memory_order_release);
  return n;
}

ssize_t Passthrough::io_splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                                    unsigned flags, void*) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

Result<Passthrough::Opened> Passthrough::open(UnionFs& fs, Inode& inode, int flags) {
  if (opens_for_writing(flags)) {
    // Reserved before the copy-up, which would be wasted (and, with O_TRUNC, empty the copy).
    if (!begin_change(inode)) return Errno{ETXTBSY};
    ChangeEnd change(this, inode);
    bool in_lower = false;
    auto fd = fs.open(inode, flags, &in_lower);
    if (!fd) return Errno{fd.error()};
    if (in_lower) return Errno{EIO};  // UnionFs::open never opens a lower file for writing
    std::lock_guard lock(mu_);
    State& st = states_[&inode];
    --st.changing;
    change.dismiss();
    return attach(inode, st, std::move(*fd), true, false);
  }
  for (;;) {
    bool in_lower = false;
    auto fd = fs.open(inode, flags, &in_lower);
    if (!fd) return Errno{fd.error()};
    std::lock_guard lock(mu_);
    State& st = states_[&inode];
    if (in_lower) {
      // Copied up since fs.open (once up, always up): open the copy instead.
      if (!fs.in_lower(inode)) {
        erase_if_idle(inode);
        continue;
      }
      // A writer or a truncate is copying it up: pinning the lower file would make it fail,
      // and waiting would hold a thread for the whole copy. The daemon serves this reader
      // (cached), and its reads follow the copy once published (ops.cc, FileHandle); the
      // writer's open then joins the cached mode, which the kernel requires beside this one.
      if (st.changing > 0 && st.opens == 0) return cached(st, std::move(*fd), inode, true);
    }
    return attach(inode, st, std::move(*fd), false, in_lower);
  }
}

Passthrough::Opened Passthrough::cached(State& st, UniqueFd fd, const Inode& inode, bool lower) {
  ++st.cached;
  Opened o;
  o.fd = std::move(fd);
  o.open_flags = FOPEN_KEEP_CACHE;
  o.counted = &inode;
  o.in_lower = lower;
  return o;
}

Result<Passthrough::Opened> Passthrough::adopt_created(const Inode& inode, UniqueFd fd, int flags) {
  std::lock_guard lock(mu_);
  return attach(inode, states_[&inode], std::move(fd), opens_for_writing(flags), false);
}

Result<Passthrough::Opened> Passthrough::attach(const Inode& inode, State& st, UniqueFd fd,
                                                bool writes, bool lower) {
  // The kernel's inode caches (its file could not back a FUSE file, or a reader came during a
  // copy-up): this open must too.
  if (st.cached > 0) return cached(st, std::move(fd), inode, lower);
  Opened o;
  o.counted = &inode;
  o.in_lower = lower;
  struct stat sb{};
  if (::fstat(fd.get(), &sb) != 0) {
    const int err = errno;
    erase_if_idle(inode);
    return Errno{err};
  }
  if (st.opens > 0) {
    // A writer never writes through another file than the backing one (a lower file above
    // all); a reader may share it (the copy's data are the lower file's until a write).
    if (writes && (sb.st_dev != st.dev || sb.st_ino != st.ino)) {
      erase_if_idle(inode);
      return Errno{ETXTBSY};
    }
  } else {
    BackingMap map{fd.get(), 0, 0};
    const int id = ::ioctl(dev_fd_, kBackingOpen, &map);
    if (id < 0) {
      const int err = errno;
      warn_once(err);
      if (err == EPERM) active_.store(false, std::memory_order_release);
      return cached(st, std::move(fd), inode, lower);
    }
    st.id = id;
    st.dev = sb.st_dev;
    st.ino = sb.st_ino;
    st.lower = lower;
  }
  ++st.opens;
  o.fd = std::move(fd);
  o.open_flags = kFopenPassthrough;
  o.backing_id = st.id;
  o.passthrough = true;
  return o;
}

void Passthrough::release(const Inode& inode, bool passthrough) {
  std::lock_guard lock(mu_);
  auto it = states_.find(&inode);
  if (it == states_.end()) return;
  State& st = it->second;
  if (!passthrough) {
    if (st.cached > 0) --st.cached;
  } else if (st.opens > 0 && --st.opens == 0) {
    uint32_t id = static_cast<uint32_t>(st.id);
    (void)::ioctl(dev_fd_, kBackingClose, &id);
    st.id = 0;
    st.lower = false;
  }
  erase_if_idle(inode);
}

bool Passthrough::begin_change(const Inode& inode) {
  std::lock_guard lock(mu_);
  State& st = states_[&inode];
  if (st.opens > 0 && st.lower) {
    erase_if_idle(inode);
    return false;
  }
  ++st.changing;
  return true;
}

void Passthrough::end_change(const Inode& inode) {
  std::lock_guard lock(mu_);
  auto it = states_.find(&inode);
  if (it != states_.end() && it->second.changing > 0) --it->second.changing;
  erase_if_idle(inode);
}

void Passthrough::erase_if_idle(const Inode& inode) {
  auto it = states_.find(&inode);
  if (it != states_.end() && it->second.idle()) states_.erase(it);
}

void Passthrough::warn_once(int err) {
  if (warned_.exchange(true)) return;
  if (err == EPERM) {
    std::fputs("unionfs-cpp: the kernel refused a passthrough backing file (EPERM: it takes "
               "CAP_SYS_ADMIN in the initial user namespace): file data go through the daemon\n",
               stderr);
  } else {
    std::fprintf(stderr,
                 "unionfs-cpp: a file could not back a passthrough open (%s; a layer on a "
                 "stacked filesystem?): such files go through the daemon\n",
                 std::strerror(err));
  }
}

}  // namespace unionfs::fuse
