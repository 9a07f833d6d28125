// FUSE passthrough (-o passthrough; Linux 6.9+, root): the kernel reads, writes and maps an
// open file's backing file itself, so that data never crosses into the daemon and a cached
// file reads at the speed of the layer's own page cache (the FUSE client caches in 4 KiB
// folios; the layer's filesystem in large ones).
//
// libfuse 3.14 (Debian 12) cannot ask for it: it neither sends FUSE_PASSTHROUGH in its INIT
// reply nor fills fuse_open_out's backing_id. So the session's io goes through this class,
// which amends the INIT reply, and the open and create replies are built by ops.cc.
//
// The kernel's rules shape the rest (fs/fuse/iomode.c): while an inode has a backing file every
// open of it must be a passthrough open of the same backing object, and while it has cached
// (non-passthrough) opens none may pass through. So each inode has one backing id while it
// has passthrough opens, closed at the last release; an inode whose file cannot back a FUSE
// file (a stacked filesystem: ELOOP) is served cached, as without the option, until its last
// cached open closes. A file open for reading from a lower layer pins its lower file as the
// inode's backing: an open for writing or a truncate (which copy up and change the data) get
// ETXTBSY meanwhile, before they copy up; and a reader that comes while a writer copies the
// file up is served by the daemon, cached, like the writer then. A lower file is thus only ever
// a backing file of read-only opens, and passthrough never writes a lower layer.
#pragma once

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "core/result.h"
#include "core/union_fs.h"
#include "core/unique_fd.h"

namespace unionfs::fuse {

// What Debian 12's <linux/fuse.h> (7.38) lacks, from the kernel's uapi header (7.40+).
inline constexpr uint32_t kFuseInitExt = 1u << 30;             // FUSE_INIT_EXT (flags)
inline constexpr uint32_t kFusePassthroughFlags2 = 1u << 5;    // FUSE_PASSTHROUGH: 1ULL << 37
inline constexpr uint32_t kFopenPassthrough = 1u << 7;         // FOPEN_PASSTHROUGH

/// An open that writes (or empties) the file, and so copies it up.
inline bool opens_for_writing(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

class Passthrough {
 public:
  Passthrough() = default;
  Passthrough(const Passthrough&) = delete;
  Passthrough& operator=(const Passthrough&) = delete;

  /// Routes the session's reads and writes of /dev/fuse through this object (after
  /// fuse_session_mount). Only one may be installed per process. 0 or a negative errno.
  int install(fuse_session* se);

  /// The kernel agreed at INIT and has not refused a backing file for want of privilege.
  [[nodiscard]] bool active() const { return active_.load(std::memory_order_acquire); }

  /// An open for the kernel: its file, and how to answer the open (fuse_open_out).
  struct Opened {
    UniqueFd fd;
    uint32_t open_flags = 0;  ///< kFopenPassthrough, or FOPEN_KEEP_CACHE (served by the daemon)
    int32_t backing_id = 0;
    const Inode* counted = nullptr;  ///< release(*counted, passthrough) when it closes
    bool passthrough = false;
    bool in_lower = false;  ///< fd is the file's lower instance
  };
  /// Opens `inode` as UnionFs::open does (copying up for writing), for an open the kernel will
  /// count: ETXTBSY for a writer while a reader pins the lower file.
  Result<Opened> open(UnionFs& fs, Inode& inode, int flags);
  /// The same for `fd`, a file just created in the upper layer for `inode`.
  Result<Opened> adopt_created(const Inode& inode, UniqueFd fd, int flags);
  /// Ends an open counted by open() or adopt_created(); the last passthrough one closes the
  /// backing id.
  void release(const Inode& inode, bool passthrough);

  /// Brackets a change of `inode`'s data not made through an open (a truncate): false (ETXTBSY)
  /// while a reader pins the lower file; readers that come meanwhile are served cached.
  bool begin_change(const Inode& inode);
  void end_change(const Inode& inode);
  /// Calls end_change() when it goes out of scope (pt null: nothing), unless dismissed.
  class ChangeEnd {
   public:
    ChangeEnd(Passthrough* pt, const Inode& inode) : pt_(pt), inode_(inode) {}
    ChangeEnd(const ChangeEnd&) = delete;
    ChangeEnd& operator=(const ChangeEnd&) = delete;
    ~ChangeEnd() {
      if (pt_) pt_->end_change(inode_);
    }
    void dismiss() { pt_ = nullptr; }

   private:
    Passthrough* pt_;
    const Inode& inode_;
  };

 private:
  static ssize_t io_read(int fd, void* buf, size_t len, void*);
  static ssize_t io_writev(int fd, struct iovec* iov, int count, void*);
  static ssize_t io_splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                                unsigned flags, void*);

  // What the kernel's inode is in, as far as our answers made it.
  struct State {
    int32_t id = 0;        ///< backing id while opens > 0 (ids are >= 1)
    dev_t dev = 0;         ///< the backing file
    ino_t ino = 0;
    bool lower = false;    ///< the backing file is in a lower layer
    uint32_t opens = 0;    ///< passthrough opens
    uint32_t cached = 0;   ///< cached opens (the kernel's inode caches: no passthrough)
    uint32_t changing = 0; ///< writers and truncates between begin and end of their change
    [[nodiscard]] bool idle() const { return opens == 0 && cached == 0 && changing == 0; }
  };
  /// Counts an open of `fd` in `st` and says how to answer it. mu_ held.
  Result<Opened> attach(const Inode& inode, State& st, UniqueFd fd, bool writes, bool lower);
  /// Counts a cached open (served by the daemon). mu_ held.
  static Opened cached(State& st, UniqueFd fd, const Inode& inode, bool lower);
  void erase_if_idle(const Inode& inode);  ///< mu_ held
  void warn_once(int err);

  int dev_fd_ = -1;                       ///< /dev/fuse, for the backing ioctls
  std::atomic<uint64_t> init_unique_{0};  ///< the INIT request whose reply is amended
  bool offered_ = false;                  ///< the kernel's INIT offered FUSE_PASSTHROUGH
  std::atomic<bool> active_{false};
  std::mutex mu_;  ///< guards states_ (held across the backing ioctls, which do no I/O)
  std::unordered_map<const Inode*, State> states_;
  std::atomic<bool> warned_{false};

  static inline Passthrough* instance_ = nullptr;
};

}  // namespace unionfs::fuse
