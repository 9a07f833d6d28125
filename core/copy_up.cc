// Copy-up: gives an object its own instance in the upper layer, parents first, atomically.
// The copy is built unnamed (O_TMPFILE) or under a temporary name, with data first, then
// xattrs, owner, mode and times, and published with one link/rename, so a crash leaves either
// the lower version visible or the whole upper one (DESIGN.md invariant 3).
// Mirrors fs/overlayfs/copy_up.c (ovl_copy_up_one, ovl_copy_up_tmpfile, ovl_copy_up_workdir).
#include <fcntl.h>
#include <unistd.h>

#include "core/blocking.h"
#include "core/sys.h"
#include "core/union_fs.h"

namespace unionfs {
namespace {

// Copies the xattrs of the object behind `src` (any fd but a symlink's) to `dst` (the same),
// leaving out our own markers. Only user.* failures count: others (security.*, trusted.*
// without privilege) may be refused by the upper filesystem, as overlayfs tolerates.
Status copy_xattrs(const WhiteoutFormat& fmt, int src, int dst) {
  auto names = sys::listxattr(src);
  if (!names) return names.error() == ENOTSUP ? kOk : Status(Errno{names.error()});
  for (const std::string& n : *names) {
    if (fmt.is_internal_xattr(n)) continue;
    auto v = sys::getxattr(src, n.c_str());
    if (!v) continue;
    Status s = sys::setxattr(dst, n.c_str(), *v, 0);
    if (!s && n.starts_with("user.")) return s;
  }
  return kOk;
}

Status set_times(int fd, const struct stat& st) {
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  return sys::utimens_at(fd, "", ts);
}

// Restores the times of an upper directory after we linked something into it: a copy-up is
// not a change the user made (ovl_set_timestamps on the parent).
void restore_times(int dir, const Result<struct stat>& before) {
  if (before.ok()) (void)set_times(dir, *before);
}

}  // namespace

void UnionFs::remember_origin(int upper_parent, const std::string& name, InodeKey origin,
                              bool own_ino) {
  auto st = sys::stat_at(upper_parent, name.c_str());
  if (!st) return;
  std::lock_guard lock(origin_mu_);
  origins_[InodeKey{st->st_dev, st->st_ino}] = Origin{origin, own_ino};
}

void UnionFs::forget_origin(const struct stat& upper_st) {
  if (S_ISDIR(upper_st.st_mode) || upper_st.st_nlink > 1) return;
  std::lock_guard lock(origin_mu_);
  origins_.erase(InodeKey{upper_st.st_dev, upper_st.st_ino});
}

Status UnionFs::copy_up_object(int upper_parent, const std::string& name, int src_fd,
                               const struct stat& st, bool with_data) {
  const bool chown_ok = opts_.privileged;
  if (S_ISREG(st.st_mode)) {
    UNIONFS_ASSIGN_OR_RETURN(UniqueFd in, sys::reopen(src_fd, O_RDONLY));
    const int td = temp_dir(upper_parent);
    std::string tmp_name;
    auto tmp = sys::open_at(td, ".", O_TMPFILE | O_WRONLY, 0600);
    if (!tmp) {
      tmp_name = temp_name();
      tmp = sys::open_at(td, tmp_name.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
      if (!tmp) return Errno{tmp.error()};
    }
    auto cleanup = [&](Status s) {
      if (!tmp_name.empty()) (void)sys::unlink_at(td, tmp_name.c_str());
      return s;
    };
    int out = tmp->get();
    Status s = with_data ? sys::copy_data(in.get(), out, st.st_size) : kOk;
    if (s) s = copy_xattrs(fmt_, in.get(), out);
    if (s && chown_ok) s = sys::chown_at(out, "", st.st_uid, st.st_gid);
    if (s) s = sys::chmod_fd(out, st.st_mode & 07777);
    if (s) s = set_times(out, st);
    if (s) s = sys::fsync(out, false);
    if (!s) return cleanup(s);
    if (tmp_name.empty()) return sys::link_fd(out, upper_parent, name.c_str());
    s = sys::rename_at(td, tmp_name.c_str(), upper_parent, name.c_str(), RENAME_NOREPLACE);
    return s ? s : cleanup(s);
  }
  const int td = temp_dir(upper_parent);
  std::string tmp = temp_name();
  if (S_ISLNK(st.st_mode)) {
    UNIONFS_ASSIGN_OR_RETURN(std::string target, sys::readlink_at(src_fd, ""));
    UNIONFS_TRY(sys::symlink_at(target.c_str(), td, tmp.c_str()));
  } else {
    UNIONFS_TRY(sys::mknod_at(td, tmp.c_str(), st.st_mode, st.st_rdev));
  }
  Status s;
  if (chown_ok) s = sys::chown_at(td, tmp.c_str(), st.st_uid, st.st_gid);
  if (s && !S_ISLNK(st.st_mode)) {
    auto fd = sys::open_at(td, tmp.c_str(), O_PATH);
    s = fd ? sys::chmod_fd(fd->get(), st.st_mode & 07777) : Status(Errno{fd.error()});
    if (s && fd) s = copy_xattrs(fmt_, src_fd, fd->get());
  }
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  if (s) s = sys::utimens_at(td, tmp.c_str(), ts);
  if (s) s = sys::rename_at(td, tmp.c_str(), upper_parent, name.c_str(), RENAME_NOREPLACE);
  if (!s) (void)sys::unlink_at(td, tmp.c_str());
  return s;
}

Status UnionFs::copy_up(Inode& inode, bool with_data) {
  if (!stack_.has_upper()) return Errno{EROFS};
  if (inode.is_dir) {
    auto d = upper_dir(inode);
    return d ? kOk : Status(Errno{d.error()});
  }
  std::lock_guard copy_lock(inode.copy_mu);
  Inode::State s = inode.state();
  if (stack_.is_upper(s.layer)) return kOk;
  if (!s.parent) return Errno{EIO};
  UNIONFS_ASSIGN_OR_RETURN(const SharedFd src, object_fd(inode));
  UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::fstat(src->get()));
  {
    // The name must still show this very object: a copy of a file that was unlinked (or
    // renamed over) while open must not bring the name back.
    UNIONFS_ASSIGN_OR_RETURN(SharedParts pparts, dir_parts(*s.parent));
    UNIONFS_ASSIGN_OR_RETURN(Found cur, lookup_name(stack_, fmt_, pparts, s.name));
    if (!cur.exists || cur.st.st_dev != st.st_dev || cur.st.st_ino != st.st_ino) {
      return Errno{ENOENT};
    }
  }
  UNIONFS_ASSIGN_OR_RETURN(LayerDir up, upper_dir(*s.parent));
  auto parent_before = sys::fstat(up.get());
  about_to_block();  // copies the data
  Status made = copy_up_object(up.get(), s.name, src->get(), st, with_data);
  if (!made && made.error() != EEXIST) return made;  // EEXIST: lost a race, which is success
  restore_times(up.get(), parent_before);
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(up.get(), s.name.c_str(), O_PATH));
  // A lower file with several names may be copied up once per name (the hard link breaks,
  // as in overlayfs without index=on), so its copies cannot all claim the lower st_ino:
  // like ovl_getattr, they report their own upper inode numbers.
  remember_origin(up.get(), s.name, inode.key, st.st_nlink > 1);
  s.fd = std::make_shared<const UniqueFd>(std::move(fd));
  s.at.reset();
  s.layer = up.layer;
  inode.set_state(std::move(s));
  return kOk;
}

Result<LayerDir> UnionFs::upper_dir(Inode& dir) {
  if (!stack_.has_upper()) return Errno{EROFS};
  if (!dir.is_dir) return Errno{ENOTDIR};
  {
    Inode::State s = dir.state();
    if (!s.parts.empty() && stack_.is_upper(s.parts.front().layer)) return s.parts.front();
  }
  std::lock_guard copy_lock(dir.copy_mu);
  Inode::State s = dir.state();
  if (!s.parts.empty() && stack_.is_upper(s.parts.front().layer)) return s.parts.front();
  if (!s.parent || s.parts.empty()) return Errno{EIO};
  UNIONFS_ASSIGN_OR_RETURN(LayerDir parent_up, upper_dir(*s.parent));
  const int pfd = parent_up.get();
  const LayerDir& src = s.parts.front();
  UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::fstat(src.get()));
  auto parent_before = sys::fstat(pfd);
  const int td = temp_dir(pfd);
  std::string tmp = temp_name();
  UNIONFS_TRY(sys::mkdir_at(td, tmp.c_str(), 0700));
  Status made;
  {
    auto fd = sys::open_at(td, tmp.c_str(), O_RDONLY | O_DIRECTORY);
    made = fd ? copy_xattrs(fmt_, src.get(), fd->get()) : Status(Errno{fd.error()});
    if (made && opts_.privileged) made = sys::chown_at(fd->get(), "", st.st_uid, st.st_gid);
    if (made) made = sys::chmod_fd(fd->get(), st.st_mode & 07777);
    if (made) made = set_times(fd->get(), st);
  }
  if (made) made = sys::rename_at(td, tmp.c_str(), pfd, s.name.c_str(), RENAME_NOREPLACE);
  if (!made) {
    (void)sys::unlink_at(td, tmp.c_str(), AT_REMOVEDIR);
    if (made.error() != EEXIST) return Errno{made.error()};  // EEXIST: lost a race
  }
  restore_times(pfd, parent_before);
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(pfd, s.name.c_str(), O_RDONLY | O_DIRECTORY));
  LayerDir up;
  up.layer = parent_up.layer;
  up.fd = std::make_shared<const UniqueFd>(std::move(fd));
  s.parts.push_front(up);
  s.layer = up.layer;
  dir.set_state(std::move(s));
  return up;
}

}  // namespace unionfs
