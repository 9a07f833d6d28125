// rename(2) across layers, with overlayfs's rules (fs/overlayfs/dir.c, ovl_rename): any
// non-directory moves (copied up first); a directory moves only if it lives in the upper layer
// alone, else EXDEV; a whiteout is left at the source when a lower layer holds that name; a
// directory moved into a merged directory is made opaque so lower names cannot appear in it.
#include <fcntl.h>
#include <unistd.h>

#include "core/sys.h"
#include "core/union_fs.h"

namespace unionfs {
namespace {

bool pure_upper_dir(const LayerStack& stack, const Found& f) {
  return f.is_dir() && f.parts.size() == 1 && stack.is_upper(f.parts.front().layer);
}

}  // namespace

// Copies up the non-directory `f` found as parent/name, through its inode when the kernel
// holds one reached by that very name, so that the inode follows the copy.
Status UnionFs::copy_up_found(Inode& parent, std::string_view name, const Found& f) {
  if (f.is_dir() || stack_.is_upper(f.layer)) return kOk;
  const InodeKey key = key_of(parent, name, f);
  if (auto inode = table_.find(key); inode && !inode->is_dir) {
    Inode::State s = inode->state();
    if (s.parent.get() == &parent && s.name == name) return copy_up(*inode);
  }
  UNIONFS_ASSIGN_OR_RETURN(LayerDir up, upper_dir(parent));
  UNIONFS_ASSIGN_OR_RETURN(const SharedFd src, open_found(f));
  UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::fstat(src->get()));
  const std::string n(name);
  UNIONFS_TRY(copy_up_object(up.get(), n, src->get(), st));
  remember_origin(up.get(), n, key, st.st_nlink > 1);
  return kOk;
}

Status UnionFs::rename(Inode& p1, std::string_view n1, Inode& p2, std::string_view n2,
                       unsigned flags) {
  if (!stack_.has_upper()) return Errno{EROFS};
  const bool exchange = flags & RENAME_EXCHANGE;
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) ||
      (exchange && (flags & RENAME_NOREPLACE))) {
    return Errno{EINVAL};
  }
  UNIONFS_ASSIGN_OR_RETURN(Found src, find(p1, n1));
  if (!src.exists) return Errno{ENOENT};
  UNIONFS_TRY(check_new_name(n2));
  UNIONFS_ASSIGN_OR_RETURN(Found dst, find(p2, n2));
  if (exchange && !dst.exists) return Errno{ENOENT};
  if ((flags & RENAME_NOREPLACE) && dst.exists) return Errno{EEXIST};
  if (&p1 == &p2 && n1 == n2) return kOk;
  if (dst.exists && !src.is_dir() && !dst.is_dir() && src.origin_dev == dst.origin_dev &&
      src.origin_ino == dst.origin_ino && src.layer == dst.layer) {
    return kOk;  // two names of one file: POSIX says do nothing
  }
  const bool src_dir = src.is_dir(), dst_dir = dst.is_dir();
  if (src_dir && !pure_upper_dir(stack_, src)) return Errno{EXDEV};
  if (exchange && dst_dir && !pure_upper_dir(stack_, dst)) return Errno{EXDEV};
  if (!exchange && dst.exists) {
    if (src_dir && !dst_dir) return Errno{ENOTDIR};
    if (!src_dir && dst_dir) return Errno{EISDIR};
    if (dst_dir) {
      UNIONFS_ASSIGN_OR_RETURN(bool empty, is_empty(p2, n2, dst));
      if (!empty) return Errno{ENOTEMPTY};
    }
  }

  UNIONFS_ASSIGN_OR_RETURN(LayerDir up1, upper_dir(p1));
  UNIONFS_ASSIGN_OR_RETURN(LayerDir up2, upper_dir(p2));
  UNIONFS_TRY(copy_up_found(p1, n1, src));
  if (exchange) UNIONFS_TRY(copy_up_found(p2, n2, dst));
  UNIONFS_ASSIGN_OR_RETURN(SharedParts parts1, dir_parts(p1));
  UNIONFS_ASSIGN_OR_RETURN(SharedParts parts2, dir_parts(p2));
  UNIONFS_ASSIGN_OR_RETURN(bool src_below, lower_positive(stack_, fmt_, parts1, n1));
  const std::string a(n1), b(n2);
  const InodeKey src_key = key_of(p1, n1, src);
  const InodeKey dst_key = key_of(p2, n2, dst);

  if (exchange) {
    UNIONFS_TRY(sys::rename_at(up1.get(), a.c_str(), up2.get(), b.c_str(), RENAME_EXCHANGE));
    if (src_dir && !src.top_opaque && parts2.size() > 1) (void)fmt_.set_opaque(src.parts[0].get());
    if (dst_dir && !dst.top_opaque && parts1.size() > 1) (void)fmt_.set_opaque(dst.parts[0].get());
    if (auto in = table_.find(dst_key)) in->set_name(p1.shared_from_this(), a);
  } else {
    if (dst_dir && stack_.is_upper(dst.layer)) UNIONFS_TRY(clear_markers(dst.parts[0].get()));
    auto overwritten = sys::stat_at(up2.get(), b.c_str());
    if (src_dir && dst.upper_whiteout && !fmt_.write_oci()) {
      // A directory cannot replace the whiteout by rename: swap them, then drop the whiteout
      // unless the source name needs one now.
      UNIONFS_TRY(sys::rename_at(up1.get(), a.c_str(), up2.get(), b.c_str(), RENAME_EXCHANGE));
      if (!src_below) UNIONFS_TRY(sys::unlink_at(up1.get(), a.c_str()));
    } else {
      const bool kernel_wh = src_below && !fmt_.write_oci();
      Status s = sys::rename_at(up1.get(), a.c_str(), up2.get(), b.c_str(),
                                kernel_wh ? RENAME_WHITEOUT : 0);
      bool need_wh = src_below && !kernel_wh;
      if (!s && kernel_wh && (s.error() == EINVAL || s.error() == EPERM)) {
        s = sys::rename_at(up1.get(), a.c_str(), up2.get(), b.c_str(), 0);
        need_wh = true;
      }
      UNIONFS_TRY(s);
      if (need_wh) UNIONFS_TRY(fmt_.make_whiteout(up1.get(), a));
      if (dst.upper_whiteout && fmt_.read_oci()) {
        // An OCI whiteout for the target name is moot now that the name exists again.
        std::string wh = std::string(kOciWhiteoutPrefix) + b;
        (void)sys::unlink_at(up2.get(), wh.c_str());
      }
    }
    if (src_dir && !src.top_opaque && parts2.size() > 1) {
      UNIONFS_TRY(fmt_.set_opaque(src.parts[0].get()));
    }
    if (overwritten && !S_ISDIR(overwritten->st_mode) && !is_kernel_whiteout(*overwritten)) {
      overwritten->st_nlink--;
      if (overwritten->st_nlink == 0) forget_origin(*overwritten);
    }
  }
  if (auto in = table_.find(src_key)) in->set_name(p2.shared_from_this(), b);
  return kOk;
}

}  // namespace unionfs
