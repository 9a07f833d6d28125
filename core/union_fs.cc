// UnionFs: lookup, attributes, open and statfs (fs/overlayfs/inode.c, namei.c).
#include "core/union_fs.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/blocking.h"
#include "core/sys.h"

namespace unionfs {

UnionFs::UnionFs(LayerStack stack, Options opts, UniqueFd workdir)
    : stack_(std::move(stack)),
      opts_(opts),
      work_(std::move(workdir)),
      fmt_(opts.whiteout, opts.privileged) {
  DirParts parts = root_parts(stack_, fmt_);
  // Known by its topmost lower instance, like every merged directory (see lookup.h).
  const LayerDir& origin = parts.size() > 1 && stack_.is_upper(parts.front().layer) ? parts[1]
                                                                                    : parts.front();
  auto st = sys::fstat(origin.get());
  InodeKey key{st.ok() ? st->st_dev : 0, st.ok() ? st->st_ino : 0};
  auto root = std::make_shared<Inode>(key, stack_.st_ino(key.dev, key.ino), true);
  Inode::State s;
  s.layer = parts.front().layer;
  s.parts = std::move(parts);
  root->set_state(std::move(s));
  table_.set_root(std::move(root));
  // Index the root now, at mount: every path starts there, so the first lookup after the mount
  // does not pay for reading every layer's root (a failure only leaves it to the first lookup).
  Inode& r = table_.root();
  (void)index_of(r, r.state().parts, false);
}

Result<SharedParts> UnionFs::dir_parts(Inode& dir) const {
  if (!dir.is_dir) return Errno{ENOTDIR};
  Inode::State s = dir.state();
  if (!s.pending) return std::move(s.parts);
  // First use of a directory looked up with its lower instances deferred: open them now.
  std::lock_guard lock(dir.resolve_mu);
  std::shared_ptr<const DirParts> rest = dir.rest();
  if (!rest) {
    about_to_block();  // opens and reads every remaining layer of the directory
    UNIONFS_ASSIGN_OR_RETURN(ResolvedLower r, resolve_lower(fmt_, s.parts.get().back(), *s.pending));
    if (r.index) dir.set_index(std::move(r.index));
    rest = std::make_shared<const DirParts>(std::move(r.rest));
  }
  return dir.finish_pending(rest);
}

InodeKey UnionFs::upper_key(dev_t dev, ino_t ino, uint64_t* st_ino) const {
  InodeKey key{dev, ino};
  *st_ino = stack_.st_ino(dev, ino);
  std::lock_guard lock(origin_mu_);
  auto it = origins_.find(key);
  if (it == origins_.end()) return key;
  if (!it->second.own_ino) *st_ino = stack_.st_ino(it->second.key.dev, it->second.key.ino);
  return it->second.key;
}

InodeKey UnionFs::key_of(Inode& parent, std::string_view name, const Found& f) const {
  InodeKey key{f.origin_dev, f.origin_ino};
  if (f.is_dir()) return key;
  if (stack_.is_upper(f.layer)) {
    uint64_t ignored;
    return upper_key(f.origin_dev, f.origin_ino, &ignored);
  }
  if (f.st.st_nlink > 1) {
    uint64_t parent_and_name[2] = {reinterpret_cast<uintptr_t>(&parent), hash_name(name)};
    key.name = hash_bytes(parent_and_name, sizeof(parent_and_name)) | 1;
  }
  return key;
}

Result<std::shared_ptr<const DirIndex>> UnionFs::index_of(Inode& dir, const SharedParts& parts,
                                                         bool build) {
  if (auto index = dir.index()) return index;
  const size_t first_lower = !parts.empty() && stack_.is_upper(parts.front().layer) ? 1 : 0;
  const size_t lower = parts.size() - first_lower;
  if (lower == 0) return std::shared_ptr<const DirIndex>();
  // A directory with one lower instance is probed directly: one fstatat for a present name,
  // like the index's own probe of the right layer, but two for a missing one (NAME, then
  // .wh.NAME), which module loaders ask for most. It is indexed once the lookups so far have
  // cost about what reading it would (ski rental: kEntriesPerLookup entries per lookup), so a
  // lookup in a huge directory never pays for reading all of it. A merged directory is indexed
  // on its first lookup, which reads each instance once (about what probing each for one name
  // costs), unless an instance is huge: then on its next lookup. A listing reads every
  // instance anyway and indexes any directory.
  size_t max_entries = SIZE_MAX;
  if (!build) {
    const uint32_t before = dir.direct_lookups.fetch_add(1, std::memory_order_relaxed);
    if (lower < 2) {
      const uint32_t n = before + 1;
      if (n < kSingleIndexAfterLookups || n < dir.index_retry_at.load(std::memory_order_relaxed)) {
        return std::shared_ptr<const DirIndex>();
      }
      // Larger than that: try again after twice the lookups, going on from where this read
      // stopped (Inode::PartialRead), so that no entry is read twice.
      dir.index_retry_at.store(2 * n, std::memory_order_relaxed);
      max_entries = static_cast<size_t>(n) * kEntriesPerLookup;
      // Its size tells a huge directory without reading it (a read stopped early would hold
      // the entries it read until the next try): ext4 and xfs count bytes of entries, at
      // most ~64 each for names of up to ~40 bytes, tmpfs 20 per entry.
      auto st = sys::fstat(parts[first_lower].get());
      if (st.ok() && static_cast<size_t>(st->st_size) / kMaxBytesPerEntry > max_entries) {
        return std::shared_ptr<const DirIndex>();
      }
      if (max_entries > kQuickIndexEntries) about_to_block();
      return index_single(dir, parts[first_lower], max_entries);
    } else if (before == 0) {
      max_entries = kEagerIndexMax;
    } else if (before < kIndexAfterLookups) {
      return std::shared_ptr<const DirIndex>();
    }
  }
  // Built with no lock held: a second builder racing this one only wastes its work. A small
  // directory's build is as quick as a lookup (a getdents reads ~1,000 entries at a time).
  if (max_entries > kQuickIndexEntries) about_to_block();
  auto built =
      DirIndex::build(fmt_, DirParts(parts.begin() + static_cast<ptrdiff_t>(first_lower), parts.end()),
                      max_entries);
  // A lookup builds the index only because it may pay off: if reading fails (EMFILE, EIO...),
  // probing the layers still answers it. A listing needs the entries and reports the error.
  if (!built) return build ? Result<std::shared_ptr<const DirIndex>>(Errno{built.error()})
                           : std::shared_ptr<const DirIndex>();
  std::shared_ptr<const DirIndex> index = std::move(*built);
  if (!index) return index;  // a huge instance: probe directly this time
  dir.set_index(index);
  return dir.index();
}

std::shared_ptr<const DirIndex> UnionFs::index_single(Inode& dir, const LayerDir& part,
                                                      size_t max_entries) {
  std::unique_ptr<Inode::PartialRead> p = dir.take_partial();
  // The same instance as before: a lower directory does not change under the mount, and a
  // new lookup of this inode (which opens the instance again) finds the same one. The read
  // keeps its descriptor between tries: on ext4, a new one sought to the same offset could
  // return again the names that share the hash at which the last read stopped.
  if (!p || p->layer != part.layer) {
    p = std::make_unique<Inode::PartialRead>();
    p->layer = part.layer;
    // A descriptor of its own: the instance's fd is shared, and getdents moves its offset.
    auto fd = sys::open_at(part.get(), ".", O_RDONLY | O_DIRECTORY);
    if (!fd) return nullptr;  // EMFILE...: probing still answers the lookup
    p->fd = std::move(*fd);
  }
  auto complete = sys::read_dir_fd(p->fd.get(), &p->ents, max_entries);
  if (!complete) return nullptr;  // EIO...: as above, and the next try starts again
  if (!*complete) {
    dir.keep_partial(std::move(p));
    return nullptr;
  }
  bool oci_opaque = false;  // a single instance hides nothing below it
  std::vector<LayerListing> listing;
  listing.push_back(classify_layer_dir(fmt_, part, std::move(p->ents), &oci_opaque));
  dir.set_index(DirIndex::from_listings(DirParts{part}, std::move(listing)));
  return dir.index();
}

Result<Found> UnionFs::find(Inode& parent, std::string_view name) {
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  if (!parent.is_dir) return Errno{ENOTDIR};
  Inode::State s = parent.state();
  if (s.pending && !fmt_.is_reserved_name(name) &&
      parent.direct_lookups.fetch_add(1, std::memory_order_relaxed) < kProbeLookups) {
    // A directory whose deeper instances are still pending: ask them by path for this one
    // name (a few fstatat per layer); opening and indexing them all pays off only if the
    // directory is used more (see kProbeLookups).
    if (s.pending->hits.size() > kQuickProbeLayers) about_to_block();
    UNIONFS_ASSIGN_OR_RETURN(std::optional<Found> f,
                             lookup_name_probing(stack_, fmt_, s.parts, *s.pending, name));
    if (f) return std::move(*f);
  }
  SharedParts parts = std::move(s.parts);
  if (s.pending) {
    UNIONFS_ASSIGN_OR_RETURN(parts, dir_parts(parent));
  }
  if (fmt_.is_reserved_name(name)) return Found{};
  UNIONFS_ASSIGN_OR_RETURN(std::shared_ptr<const DirIndex> index, index_of(parent, parts, false));
  return lookup_name_deferred(stack_, fmt_, parts, name, index);
}

Result<Entry> UnionFs::lookup(Inode& parent, std::string_view name) {
  UNIONFS_ASSIGN_OR_RETURN(Found f, find(parent, name));
  if (!f.exists) return Errno{ENOENT};
  InodeKey key = key_of(parent, name, f);
  Inode::State s;
  s.parent = parent.shared_from_this();
  s.name = std::string(name);
  s.layer = f.layer;
  s.fd = f.fd;
  s.at = f.at;
  s.parts = std::move(f.parts);
  s.pending = std::move(f.pending);
  bool is_dir = f.is_dir();
  uint64_t ino = stack_.st_ino(key.dev, key.ino);
  const size_t upper = stack_.has_upper() ? stack_.upper_index() : SIZE_MAX;
  std::shared_ptr<Inode> inode = table_.acquire(key, s, ino, is_dir, upper);
  Entry e;
  e.inode = inode.get();
  // A lower object cannot have changed since find() stat'ed it: no second fstat. Unless the
  // inode was copied up meanwhile (it kept its upper state): then its copy is asked.
  if (inode->layer() != f.layer) s = inode->state();
  auto st = stat_of(s, *inode, stack_.is_upper(s.layer) ? nullptr : &f.st);
  if (!st) {
    table_.forget(*inode, 1);
    return Errno{st.error()};
  }
  e.attr = *st;
  return e;
}

Result<Entry> UnionFs::entry_for(Inode& parent, std::string_view name) {
  return lookup(parent, name);
}

Result<struct stat> UnionFs::stat_of(const Inode::State& s, const Inode& inode,
                                     const struct stat* known) const {
  struct stat st{};
  if (known) {
    st = *known;
  } else if (!inode.is_dir && !s.fd && s.at) {
    UNIONFS_ASSIGN_OR_RETURN(st, sys::stat_at(s.at->dir->get(), s.at->rel.c_str()));
  } else {
    int fd = inode.is_dir ? (s.parts.empty() ? -1 : s.parts.front().get()) : (s.fd ? s.fd->get() : -1);
    if (fd < 0) return Errno{ESTALE};
    UNIONFS_ASSIGN_OR_RETURN(st, sys::fstat(fd));
  }
  if (!inode.is_dir && stack_.is_upper(s.layer)) {
    (void)upper_key(st.st_dev, st.st_ino, &st.st_ino);
  } else {
    st.st_ino = inode.st_ino;
  }
  // Like overlayfs: counting subdirectories across layers is not worth it; 1 pacifies find.
  if (inode.is_dir && s.merged()) st.st_nlink = 1;
  return st;
}

Result<struct stat> UnionFs::getattr(Inode& inode) { return stat_of(inode.state(), inode); }

Result<SharedFd> UnionFs::object_fd(Inode& inode) const {
  Inode::State s = inode.state();
  if (s.fd) return s.fd;
  if (inode.is_dir || !s.at) return Errno{ESTALE};
  UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(s.at->dir->get(), s.at->rel.c_str(), O_PATH));
  return inode.install_fd(std::make_shared<const UniqueFd>(std::move(fd)));
}

bool UnionFs::attrs_cacheable(const Inode& inode, const struct stat& st) const {
  return inode.is_dir || st.st_nlink <= 1 || stack_.is_upper(inode.state().layer);
}

Result<std::string> UnionFs::readlink(Inode& inode) {
  if (inode.is_dir) return Errno{EINVAL};
  UNIONFS_ASSIGN_OR_RETURN(SharedFd fd, object_fd(inode));
  return sys::readlink_at(fd->get(), "");
}

Result<struct stat> UnionFs::setattr(Inode& inode, const SetAttr& a, int fd) {
  UNIONFS_TRY(copy_up(inode, !(a.set_size && a.size == 0)));
  Inode::State s = inode.state();
  int path_fd = inode.is_dir ? s.parts.front().get() : s.fd->get();
  UNIONFS_ASSIGN_OR_RETURN(struct stat cur, sys::fstat(path_fd));
  if (a.set_size) {
    if (S_ISDIR(cur.st_mode)) return Errno{EISDIR};
    if (!S_ISREG(cur.st_mode)) return Errno{EINVAL};
    if (fd >= 0) {
      UNIONFS_TRY(sys::ftruncate(fd, a.size));
    } else {
      UNIONFS_ASSIGN_OR_RETURN(UniqueFd w, sys::reopen(path_fd, O_WRONLY));
      UNIONFS_TRY(sys::ftruncate(w.get(), a.size));
    }
  }
  if (a.set_uid || a.set_gid) {
    UNIONFS_TRY(sys::chown_at(path_fd, "", a.set_uid ? a.uid : static_cast<uid_t>(-1),
                              a.set_gid ? a.gid : static_cast<gid_t>(-1)));
  }
  if (a.set_mode) {
    if (S_ISLNK(cur.st_mode)) return Errno{EOPNOTSUPP};
    UNIONFS_TRY(sys::chmod_fd(path_fd, a.mode & 07777));
  }
  if (a.set_atime || a.set_mtime) {
    struct timespec ts[2] = {a.set_atime ? a.atime : timespec{0, UTIME_OMIT},
                             a.set_mtime ? a.mtime : timespec{0, UTIME_OMIT}};
    UNIONFS_TRY(sys::utimens_at(path_fd, "", ts));
  }
  return stat_of(inode.state(), inode);
}

Result<UniqueFd> UnionFs::open(Inode& inode, int flags, bool* in_lower) {
  if (inode.is_dir) return Errno{EISDIR};
  const bool writes = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  if (!writes) {
    const Inode::State s = inode.state();
    if (!s.fd && s.at && !stack_.is_upper(s.layer)) {
      // A lower file with no descriptor yet: one openat (O_NOFOLLOW) by name in its parent's
      // instance (lower layers do not change under a mount), not an O_PATH open and a reopen
      // through /proc/self/fd. A copy-up racing with it leaves a lower handle, which follows
      // the copy.
      if (in_lower) *in_lower = true;
      return sys::open_at(s.at->dir->get(), s.at->rel.c_str(),
                          flags & ~(O_CREAT | O_EXCL | O_NOCTTY));
    }
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    // O_TRUNC empties the file anyway: copying its data up first would be wasted work.
    if (writes) UNIONFS_TRY(copy_up(inode, !(flags & O_TRUNC)));
    UNIONFS_ASSIGN_OR_RETURN(SharedFd fd, object_fd(inode));
    // A copy-up replaces fd and layer together: another fd now means that ours was the lower.
    const Inode::State s = inode.state();
    const bool lower = s.fd != fd || !stack_.is_upper(s.layer);
    // Never open a lower file for writing, whatever raced with the copy-up: copy up again.
    if (writes && lower) continue;
    if (in_lower) *in_lower = lower;
    return sys::reopen(fd->get(), flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW));
  }
  return Errno{EIO};
}

bool UnionFs::in_lower(const Inode& inode) const {
  return !inode.is_dir && !stack_.is_upper(inode.layer());
}

Result<struct statvfs> UnionFs::statfs() {
  UNIONFS_ASSIGN_OR_RETURN(struct statvfs sv, sys::fstatvfs(stack_.layer(stack_.top()).root.get()));
  // Room for the ".wh." prefix when whiteouts are written as OCI files.
  if (fmt_.write_oci() && sv.f_namemax > kOciWhiteoutPrefix.size()) {
    sv.f_namemax -= kOciWhiteoutPrefix.size();
  }
  return sv;
}

Status UnionFs::fsyncdir(Inode& inode, bool datasync) {
  UNIONFS_ASSIGN_OR_RETURN(SharedParts parts, dir_parts(inode));
  if (parts.empty() || !stack_.is_upper(parts.front().layer)) return kOk;
  return sys::fsync(parts.front().get(), datasync);
}

Status UnionFs::check_new_name(std::string_view name) const {
  if (!stack_.has_upper()) return Errno{EROFS};
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  if (fmt_.write_oci() && name.size() + kOciWhiteoutPrefix.size() > NAME_MAX) {
    return Errno{ENAMETOOLONG};
  }
  // A name that would read back as a marker or as one of our temporary files.
  if (fmt_.is_reserved_name(name)) return Errno{EINVAL};
  return kOk;
}

}  // namespace unionfs
