// Namespace changes: create, mknod, mkdir, symlink, link, unlink, rmdir, rename.
// All of them write only to the upper layer, copying up the parent chain first; a name that a
// lower layer still holds is covered by a whiteout; a directory made where the upper held a
// whiteout is opaque, so the old children never come back.
// Mirrors fs/overlayfs/dir.c (ovl_create_over_whiteout, ovl_remove_and_whiteout, ovl_rename).
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/sys.h"
#include "core/union_fs.h"

namespace unionfs {

// New objects belong to the caller; in a set-group-ID directory they take its group.
Status UnionFs::own(int dir, const char* name, const Caller& who, const struct stat& parent_st) {
  if (!opts_.privileged) return kOk;
  gid_t gid = (parent_st.st_mode & S_ISGID) ? parent_st.st_gid : who.gid;
  return sys::chown_at(dir, name, who.uid, gid);
}

// Publishes the new object at `tmp` as `name`, where the upper holds a kernel whiteout:
// a non-directory simply replaces it; a directory is exchanged with it and the whiteout,
// now at `tmp`, removed.
Status UnionFs::replace_whiteout(int tmp_dir, const std::string& tmp, int dir,
                                 const std::string& name, bool is_dir) {
  if (!is_dir) return sys::rename_at(tmp_dir, tmp.c_str(), dir, name.c_str());
  UNIONFS_TRY(sys::rename_at(tmp_dir, tmp.c_str(), dir, name.c_str(), RENAME_EXCHANGE));
  (void)sys::unlink_at(tmp_dir, tmp.c_str());
  return kOk;
}

// Makes a new object with `make` at `name` in the upper directory `up` and publishes it over
// whatever whiteout the upper holds there: a kernel whiteout is replaced in one rename (the
// object is built under a temporary name first); an OCI ".wh.NAME" is removed once the object
// exists. A directory made over a whiteout is opaque, so lower children never come back.
Status UnionFs::publish_new(int up, const std::string& name, bool over_whiteout, bool is_dir,
                            const Caller* who, const Maker& make) {
  const bool kernel_wh = over_whiteout && sys::stat_at(up, name.c_str()).ok();
  const std::string at = kernel_wh ? temp_name() : name;
  const int at_dir = kernel_wh ? temp_dir(up) : up;
  UNIONFS_ASSIGN_OR_RETURN(struct stat pst, sys::fstat(up));
  UNIONFS_TRY(make(at_dir, at.c_str()));
  Status s;
  if (who) s = own(at_dir, at.c_str(), *who, pst);
  if (s && is_dir && over_whiteout) {
    auto fd = sys::open_at(at_dir, at.c_str(), O_RDONLY | O_DIRECTORY);
    s = fd ? fmt_.set_opaque(fd->get()) : Status(Errno{fd.error()});
  }
  if (s && kernel_wh) s = replace_whiteout(at_dir, at, up, name, is_dir);
  if (!s) {
    if (is_dir) (void)clear_markers_at(at_dir, at);
    (void)sys::unlink_at(at_dir, at.c_str(), is_dir ? AT_REMOVEDIR : 0);
    return s;
  }
  if (over_whiteout && !kernel_wh) {
    std::string wh = std::string(kOciWhiteoutPrefix) + name;
    (void)sys::unlink_at(up, wh.c_str());
  }
  return kOk;
}

Status UnionFs::clear_markers_at(int up, const std::string& name) {
  auto fd = sys::open_at(up, name.c_str(), O_RDONLY | O_DIRECTORY);
  return fd ? clear_markers(fd->get()) : Status(Errno{fd.error()});
}

Result<Entry> UnionFs::mkdir(Inode& parent, std::string_view name, mode_t mode, const Caller& who) {
  UNIONFS_TRY(check_new_name(name));
  UNIONFS_ASSIGN_OR_RETURN(Found f, find(parent, name));
  if (f.exists) return Errno{EEXIST};
  UNIONFS_ASSIGN_OR_RETURN(LayerDir up, upper_dir(parent));
  UNIONFS_TRY(publish_new(up.get(), std::string(name), f.upper_whiteout, true, &who,
                          [&](int d, const char* n) { return sys::mkdir_at(d, n, mode); }));
  return lookup(parent, name);
}

Result<UnionFs::Created> UnionFs::create(Inode& parent, std::string_view name, mode_t mode,
                                         int flags, const Caller& who, bool open_existing,
                                         bool* in_lower) {
  if (in_lower) *in_lower = false;
  UNIONFS_TRY(check_new_name(name));
  UNIONFS_ASSIGN_OR_RETURN(Found f, find(parent, name));
  if (f.exists) {
    if (flags & O_EXCL) return Errno{EEXIST};
    UNIONFS_ASSIGN_OR_RETURN(Entry e, lookup(parent, name));
    if (!open_existing) return Created{e, UniqueFd{}};
    auto fd = open(*e.inode, flags, in_lower);
    if (!fd) {
      forget(*e.inode, 1);
      return Errno{fd.error()};
    }
    return Created{e, std::move(*fd)};
  }
  UNIONFS_ASSIGN_OR_RETURN(LayerDir up, upper_dir(parent));
  const int oflags = (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY)) | O_CREAT | O_EXCL;
  UniqueFd fd;
  UNIONFS_TRY(publish_new(up.get(), std::string(name), f.upper_whiteout, false, &who,
                          [&](int d, const char* n) -> Status {
                            auto r = sys::open_at(d, n, oflags, mode);
                            if (!r) return Errno{r.error()};
                            fd = std::move(*r);
                            return kOk;
                          }));
  UNIONFS_ASSIGN_OR_RETURN(Entry e, lookup(parent, name));
  return Created{e, std::move(fd)};
}

Result<Entry> UnionFs::mknod(Inode& parent, std::string_view name, mode_t mode, dev_t rdev,
                             const Caller& who) {
  UNIONFS_TRY(check_new_name(name));
  // A char device 0/0 would read back as a whiteout; overlayfs refuses it the same way.
  if (S_ISCHR(mode) && rdev == 0) return Errno{EPERM};
  UNIONFS_ASSIGN_OR_RETURN(Found f, find(parent, name));
  if (f.exists) return Errno{EEXIST};
  UNIONFS_ASSIGN_OR_RETURN(LayerDir up, upper_dir(parent));
  UNIONFS_TRY(publish_new(up.get(), std::string(name), f.upper_whiteout, false, &who,
                          [&](int d, const char* n) { return sys::mknod_at(d, n, mode, rdev); }));
  return lookup(parent, name);
}

Result<Entry> UnionFs::symlink(const std::string& target, Inode& parent, std::string_view name,
                               const Caller& who) {
  UNIONFS_TRY(check_new_name(name));
  UNIONFS_ASSIGN_OR_RETURN(Found f, find(parent, name));
  if (f.exists) return Errno{EEXIST};
  UNIONFS_ASSIGN_OR_RETURN(LayerDir up, upper_dir(parent));
  UNIONFS_TRY(publish_new(up.get(), std::string(name), f.upper_whiteout, false, &who,
                          [&](int d, const char* n) { return sys::symlink_at(target.c_str(), d, n); }));
  return lookup(parent, name);
}

Result<Entry> UnionFs::link(Inode& inode, Inode& parent, std::string_view name) {
  UNIONFS_TRY(check_new_name(name));
  if (inode.is_dir) return Errno{EPERM};
  UNIONFS_ASSIGN_OR_RETURN(Found f, find(parent, name));
  if (f.exists) return Errno{EEXIST};
  UNIONFS_TRY(copy_up(inode));
  UNIONFS_ASSIGN_OR_RETURN(LayerDir up, upper_dir(parent));
  const SharedFd src = inode.state().fd;
  UNIONFS_TRY(publish_new(up.get(), std::string(name), f.upper_whiteout, false, nullptr,
                          [&](int d, const char* n) { return sys::link_fd(src->get(), d, n); }));
  return lookup(parent, name);
}

// Removes every entry of an upper directory that the merged view does not show (whiteouts,
// OCI markers, our temporary names), so that the directory itself can be removed or replaced.
Status UnionFs::clear_markers(int upper_dir_fd) {
  UNIONFS_ASSIGN_OR_RETURN(std::vector<sys::DirEnt> ents, sys::read_dir(upper_dir_fd));
  for (const sys::DirEnt& e : ents) {
    Status s = sys::unlink_at(upper_dir_fd, e.name.c_str(), e.type == DT_DIR ? AT_REMOVEDIR : 0);
    if (!s && s.error() != ENOENT) return s;
  }
  return kOk;
}

Result<bool> UnionFs::is_empty(Inode& parent, std::string_view name, const Found& dir) {
  // The kernel holds the inode of a directory it removes: its index is likely built already.
  std::shared_ptr<Inode> inode = table_.find(key_of(parent, name, dir));
  if (!inode || !inode->is_dir) {
    inode = std::make_shared<Inode>(InodeKey{}, 0, true);  // a throwaway, to read the listing
    Inode::State s;
    s.parts = dir.parts;
    s.pending = dir.pending;
    inode->set_state(std::move(s));
  }
  UNIONFS_ASSIGN_OR_RETURN(std::vector<DirEntry> ents, list(*inode));
  return ents.empty();
}

Status UnionFs::remove(Inode& parent, std::string_view name, bool dir) {
  if (!stack_.has_upper()) return Errno{EROFS};
  UNIONFS_ASSIGN_OR_RETURN(Found f, find(parent, name));
  if (!f.exists) return Errno{ENOENT};
  if (dir && !f.is_dir()) return Errno{ENOTDIR};
  if (!dir && f.is_dir()) return Errno{EISDIR};
  if (dir) {
    UNIONFS_ASSIGN_OR_RETURN(bool empty, is_empty(parent, name, f));
    if (!empty) return Errno{ENOTEMPTY};
  }
  UNIONFS_ASSIGN_OR_RETURN(LayerDir up, upper_dir(parent));
  UNIONFS_ASSIGN_OR_RETURN(SharedParts pparts, dir_parts(parent));
  UNIONFS_ASSIGN_OR_RETURN(bool below, lower_positive(stack_, fmt_, pparts, name));
  const std::string n(name);
  const int flags = dir ? AT_REMOVEDIR : 0;
  if (!stack_.is_upper(f.layer)) return fmt_.make_whiteout(up.get(), name);
  if (dir) UNIONFS_TRY(clear_markers(f.parts.front().get()));
  auto upper_st = sys::stat_at(up.get(), n.c_str());
  if (!below) {
    UNIONFS_TRY(sys::unlink_at(up.get(), n.c_str(), flags));
  } else if (fmt_.write_oci()) {
    UNIONFS_TRY(fmt_.make_whiteout(up.get(), name));
    UNIONFS_TRY(sys::unlink_at(up.get(), n.c_str(), flags));
  } else {
    // One atomic step replaces the upper object with the whiteout (ovl_remove_and_whiteout).
    const int td = temp_dir(up.get());
    std::string tmp = temp_name();
    UNIONFS_TRY(fmt_.make_kernel_whiteout(td, tmp.c_str()));
    Status s = sys::rename_at(td, tmp.c_str(), up.get(), n.c_str(), dir ? RENAME_EXCHANGE : 0);
    if (!s) {
      (void)sys::unlink_at(td, tmp.c_str());
      return s;
    }
    if (dir) UNIONFS_TRY(sys::unlink_at(td, tmp.c_str(), AT_REMOVEDIR));
  }
  if (upper_st) {
    upper_st->st_nlink--;
    if (upper_st->st_nlink == 0) forget_origin(*upper_st);
  }
  return kOk;
}

Status UnionFs::unlink(Inode& parent, std::string_view name) { return remove(parent, name, false); }
Status UnionFs::rmdir(Inode& parent, std::string_view name) { return remove(parent, name, true); }

}  // namespace unionfs
