// UnionFs: the union filesystem, one method per operation, independent of FUSE.
// Each method takes inodes from the InodeTable, returns Result/Status with a positive errno,
// and writes only to the upper layer. The implementation is split by concern:
//   union_fs.cc (lookup, attributes, open, statfs), copy_up.cc, dir_ops.cc (namespace
//   changes), readdir.cc (merged listings), xattr.cc.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/dir_index.h"
#include "core/inode_table.h"
#include "core/layer.h"
#include "core/lookup.h"
#include "core/whiteout.h"

namespace unionfs {

/// Who asks: new objects are owned by the caller, as on a local filesystem.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
};

/// An entry reply: the inode (its lookup count already raised by one) and its attributes.
struct Entry {
  Inode* inode = nullptr;
  struct stat attr {};
};

/// Attribute changes for setattr; each field applies when its flag is set.
struct SetAttr {
  bool set_mode = false, set_uid = false, set_gid = false, set_size = false;
  bool set_atime = false, set_mtime = false;
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  off_t size = 0;
  struct timespec atime {UTIME_OMIT, UTIME_OMIT};  ///< tv_nsec may be UTIME_NOW
  struct timespec mtime {UTIME_OMIT, UTIME_OMIT};
};

/// One entry of a merged directory listing.
struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  unsigned char type = 0;  // DT_*
};

struct Options {
  WhiteoutMode whiteout = WhiteoutMode::kAuto;
  bool privileged = false;  ///< running as root: kernel-format markers, chown of new files
};

class UnionFs {
 public:
  /// `workdir` (optional, on the upper's filesystem) holds the temporary objects of copy-up and
  /// whiteout creation, as overlayfs's workdir does; without it they are built under hidden
  /// temporary names in the directory they are published in.
  UnionFs(LayerStack stack, Options opts, UniqueFd workdir = UniqueFd());
  UnionFs(const UnionFs&) = delete;
  UnionFs& operator=(const UnionFs&) = delete;

  [[nodiscard]] Inode& root() const { return table_.root(); }
  [[nodiscard]] const LayerStack& stack() const { return stack_; }
  [[nodiscard]] const WhiteoutFormat& format() const { return fmt_; }
  [[nodiscard]] const InodeTable& table() const { return table_; }

  // --- union_fs.cc ---
  /// Lookups in a directory with pending instances answered by probing them by path before
  /// they are opened and indexed: a directory looked into once (one path through it) never
  /// pays for reading all of its layers; the next lookup does. A probe of a new name costs
  /// about half an index build (each layer's NAME and .wh.NAME, their dentries cold), so more
  /// probes cost more in total as soon as the directory is used further: with 4, 2,000 cold
  /// lookups in a 256-layer directory took 43 us each instead of 28 (bench_e2e, pinned).
  static constexpr uint32_t kProbeLookups = 1;
  /// Pending layers a probing lookup asks without telling the loop it may block (about 2-4
  /// system calls each).
  static constexpr size_t kQuickProbeLayers = 16;
  /// One lower instance: indexed from this lookup on, once it holds at most kEntriesPerLookup
  /// entries per lookup made (reading ~16 entries costs about what probing a missing name
  /// does: two fstatat, ~4 us here).
  static constexpr uint32_t kSingleIndexAfterLookups = 4;
  static constexpr size_t kEntriesPerLookup = 16;
  /// A directory's st_size over this is more entries than it can hold (UnionFs::index_of).
  static constexpr size_t kMaxBytesPerEntry = 64;
  /// ENOENT, ENOTDIR, ENAMETOOLONG, EACCES, EIO.
  Result<Entry> lookup(Inode& parent, std::string_view name);
  void forget(Inode& inode, uint64_t n) { table_.forget(inode, n); }
  Result<struct stat> getattr(Inode& inode);
  /// Whether the kernel may cache these attributes: not for a lower file with several links,
  /// whose copy-up will change st_nlink and st_ino (the link breaks, as in overlayfs).
  [[nodiscard]] bool attrs_cacheable(const Inode& inode, const struct stat& st) const;
  /// Copies up first. `fd` is an open file of the inode or -1. EROFS, EPERM, EINVAL...
  Result<struct stat> setattr(Inode& inode, const SetAttr& attr, int fd);
  Result<std::string> readlink(Inode& inode);
  /// Opens for I/O; any write access (or O_TRUNC) copies up first. `in_lower`, if given, is
  /// set to whether the file opened is in a lower layer.
  Result<UniqueFd> open(Inode& inode, int flags, bool* in_lower = nullptr);
  /// Whether a non-directory's data are in a lower layer now (not copied up).
  [[nodiscard]] bool in_lower(const Inode& inode) const;
  Result<struct statvfs> statfs();
  /// Directory fsync: the upper instance, if there is one.
  Status fsyncdir(Inode& inode, bool datasync);

  // --- dir_ops.cc ---
  struct Created {
    Entry entry;
    UniqueFd fd;  ///< empty if the name existed and `open_existing` was false
  };
  /// Creates and opens a file; an existing name (without O_EXCL) is opened (`in_lower` as for
  /// open), or with `open_existing` false only looked up, for the caller to open.
  Result<Created> create(Inode& parent, std::string_view name, mode_t mode, int flags,
                         const Caller& who, bool open_existing = true, bool* in_lower = nullptr);
  Result<Entry> mknod(Inode& parent, std::string_view name, mode_t mode, dev_t rdev,
                      const Caller& who);
  Result<Entry> mkdir(Inode& parent, std::string_view name, mode_t mode, const Caller& who);
  Result<Entry> symlink(const std::string& target, Inode& parent, std::string_view name,
                        const Caller& who);
  Result<Entry> link(Inode& inode, Inode& parent, std::string_view name);
  Status unlink(Inode& parent, std::string_view name);
  Status rmdir(Inode& parent, std::string_view name);
  /// flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE. A lower or merged directory as the
  /// source gives EXDEV, as the kernel does without redirect_dir.
  Status rename(Inode& parent, std::string_view name, Inode& new_parent,
                std::string_view new_name, unsigned flags);

  // --- readdir.cc ---
  /// The merged listing of a directory, without "." and "..", markers and internal names.
  Result<std::vector<DirEntry>> list(Inode& dir);

  // --- xattr.cc ---
  Result<std::string> getxattr(Inode& inode, const std::string& name);
  Result<std::vector<std::string>> listxattr(Inode& inode);
  Status setxattr(Inode& inode, const std::string& name, const std::string& value, int flags);
  Status removexattr(Inode& inode, const std::string& name);

  // --- copy_up.cc ---
  /// Makes sure the inode has its own upper instance (parents first). EROFS without upper.
  /// Without `with_data` a regular file is copied up empty (it is about to be truncated).
  Status copy_up(Inode& inode, bool with_data = true);

 private:
  friend class UnionFsTestPeer;

  // union_fs.cc
  Result<SharedParts> dir_parts(Inode& dir) const;  ///< ENOTDIR for a non-directory
  /// The identity of what `f` found as parent/name: the inode key (the origin of a copied-up
  /// file; one key per name for a lower file with several links) and the st_ino to report.
  InodeKey key_of(Inode& parent, std::string_view name, const Found& f) const;
  /// The identity of an upper non-directory object with this (dev, ino).
  InodeKey upper_key(dev_t dev, ino_t ino, uint64_t* st_ino) const;
  Result<Entry> entry_for(Inode& parent, std::string_view name);  ///< lookup after a change
  /// The attributes the kernel sees: of `known` if given (just read from the same object),
  /// else read from the inode's descriptor.
  Result<struct stat> stat_of(const Inode::State& s, const Inode& inode,
                              const struct stat* known = nullptr) const;
  /// Non-directory: its O_PATH descriptor, opened now if the lookup left it at a place (a
  /// lower object). ESTALE if it has neither.
  Result<SharedFd> object_fd(Inode& inode) const;
  Status check_new_name(std::string_view name) const;

  // copy_up.cc
  Result<LayerDir> upper_dir(Inode& dir);
  Status copy_up_object(int upper_parent, const std::string& name, int src_fd,
                        const struct stat& st, bool with_data = true);
  void remember_origin(int upper_parent, const std::string& name, InodeKey origin,
                       bool own_ino);
  void forget_origin(const struct stat& upper_st);

  // dir_ops.cc
  using Maker = std::function<Status(int dir, const char* name)>;
  Status publish_new(int up, const std::string& name, bool over_whiteout, bool is_dir,
                     const Caller* who, const Maker& make);
  Status clear_markers_at(int up, const std::string& name);
  Status own(int dir, const char* name, const Caller& who, const struct stat& parent_st);
  Status replace_whiteout(int tmp_dir, const std::string& tmp, int dir, const std::string& name,
                          bool is_dir);
  /// Where to build a temporary object that will be published in the upper directory `dir`.
  [[nodiscard]] int temp_dir(int dir) const { return work_.valid() ? work_.get() : dir; }
  Status clear_markers(int upper_dir_fd);
  Result<Found> find(Inode& parent, std::string_view name);
  /// The directory's index, building it now if `build` or if it has become worth it.
  Result<std::shared_ptr<const DirIndex>> index_of(Inode& dir, const SharedParts& parts, bool build);
  /// index_of for a directory with one lower instance, `part`: reads it on from where the last
  /// try stopped, up to `max_entries` in all; null if it holds more (or cannot be read).
  std::shared_ptr<const DirIndex> index_single(Inode& dir, const LayerDir& part,
                                               size_t max_entries);
  static constexpr uint32_t kIndexAfterLookups = 1;  ///< merged: on the 2nd lookup
  /// An index build up to this many entries per instance does not tell the loop it may block.
  static constexpr size_t kQuickIndexEntries = 256;
  Result<bool> is_empty(Inode& parent, std::string_view name, const Found& dir);
  Status remove(Inode& parent, std::string_view name, bool dir);

  // rename.cc
  Status copy_up_found(Inode& parent, std::string_view name, const Found& f);

  // xattr.cc
  bool hidden_xattr(const std::string& name) const;

  LayerStack stack_;
  Options opts_;
  UniqueFd work_;
  WhiteoutFormat fmt_;
  InodeTable table_;
  // Upper objects made by copy-up, mapped to the identity of the object they copy, so that
  // st_ino and the nodeid survive copy-up for the life of the mount.
  mutable std::mutex origin_mu_;
  struct Origin {
    InodeKey key;  ///< the inode key the copy keeps
    bool own_ino;  ///< report the copy's own st_ino (a broken lower hard link, as overlayfs)
  };
  std::unordered_map<InodeKey, Origin, InodeKeyHash> origins_;
};

}  // namespace unionfs
