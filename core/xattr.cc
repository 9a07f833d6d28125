// Extended attributes through the mount: read from the topmost instance, written after a
// copy-up; the overlay's own attributes (trusted.overlay.*, user.overlay.*) are neither listed
// nor settable (ovl_own_xattr_get/set in fs/overlayfs/xattrs.c).
#include "core/sys.h"
#include "core/union_fs.h"

namespace unionfs {
namespace {

// The fd to reach an inode's xattrs through, or -1 for a symlink (reached by parent + name).
int xattr_fd(const Inode& inode, const Inode::State& s) {
  if (inode.is_dir) return s.parts.empty() ? -1 : s.parts.front().get();
  return s.fd ? s.fd->get() : -1;
}

}  // namespace

bool UnionFs::hidden_xattr(const std::string& name) const {
  return fmt_.is_internal_xattr(name);
}

Result<std::string> UnionFs::getxattr(Inode& inode, const std::string& name) {
  if (hidden_xattr(name)) return Errno{EOPNOTSUPP};
  if (auto opened = object_fd(inode); !inode.is_dir && !opened) return Errno{opened.error()};
  Inode::State s = inode.state();
  int fd = xattr_fd(inode, s);
  if (fd < 0) return Errno{EIO};
  UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::fstat(fd));
  if (S_ISLNK(st.st_mode)) return Errno{ENODATA};
  return sys::getxattr(fd, name.c_str());
}

Result<std::vector<std::string>> UnionFs::listxattr(Inode& inode) {
  if (auto opened = object_fd(inode); !inode.is_dir && !opened) return Errno{opened.error()};
  Inode::State s = inode.state();
  int fd = xattr_fd(inode, s);
  if (fd < 0) return Errno{EIO};
  UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::fstat(fd));
  if (S_ISLNK(st.st_mode)) return std::vector<std::string>{};
  UNIONFS_ASSIGN_OR_RETURN(std::vector<std::string> names, sys::listxattr(fd));
  std::erase_if(names, [&](const std::string& n) { return hidden_xattr(n); });
  return names;
}

Status UnionFs::setxattr(Inode& inode, const std::string& name, const std::string& value,
                         int flags) {
  if (hidden_xattr(name)) return Errno{EOPNOTSUPP};
  UNIONFS_TRY(copy_up(inode));
  Inode::State s = inode.state();
  int fd = xattr_fd(inode, s);
  if (fd < 0) return Errno{EIO};
  UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::fstat(fd));
  if (S_ISLNK(st.st_mode)) return Errno{EPERM};
  return sys::setxattr(fd, name.c_str(), value, flags);
}

Status UnionFs::removexattr(Inode& inode, const std::string& name) {
  if (hidden_xattr(name)) return Errno{EOPNOTSUPP};
  // Nothing to copy up for an attribute that is not there.
  {
    if (auto opened = object_fd(inode); !inode.is_dir && !opened) return Errno{opened.error()};
    Inode::State s = inode.state();
    int fd = xattr_fd(inode, s);
    if (fd < 0) return Errno{EIO};
    auto v = sys::getxattr(fd, name.c_str());
    if (!v) return Errno{v.error()};
  }
  UNIONFS_TRY(copy_up(inode));
  Inode::State s = inode.state();
  return sys::removexattr(xattr_fd(inode, s), name.c_str());
}

}  // namespace unionfs
