// The inode table: one Inode per object the kernel knows, keyed by the object's origin so that
// the nodeid and st_ino survive copy-up (ovl_inode_update). Lookup counts follow libfuse's
// passthrough_hp: +1 per entry reply, -n per forget, erase at zero; the root is pinned.
//
// Lock order: InodeTable::mu_ before Inode::mu. Inode::copy_mu and Inode::resolve_mu are taken
// before Inode::mu and are the only locks held across I/O (a copy-up; the opening of a merged
// directory's deferred instances), so that a second caller waits for the first's work.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/dir_index.h"
#include "core/hash.h"
#include "core/lookup.h"

namespace unionfs {

struct InodeKey {
  dev_t dev = 0;
  ino_t ino = 0;
  /// Non-zero for one name of a lower file with several hard links: each name is an inode of
  /// its own, because copy-up breaks the link (overlayfs without index=on does the same).
  uint64_t name = 0;
  bool operator==(const InodeKey&) const = default;
};

struct InodeKeyHash {
  size_t operator()(const InodeKey& k) const {
    uint64_t v[3] = {static_cast<uint64_t>(k.dev), static_cast<uint64_t>(k.ino), k.name};
    return static_cast<size_t>(hash_bytes(v, sizeof(v)));
  }
};

class Inode : public std::enable_shared_from_this<Inode> {
 public:
  Inode(InodeKey key, uint64_t st_ino, bool is_dir) : key(key), st_ino(st_ino), is_dir(is_dir) {}
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  const InodeKey key;
  const uint64_t st_ino;
  const bool is_dir;
  std::atomic<uint64_t> nlookup{0};
  std::mutex copy_mu;  ///< held across a copy-up of this inode

  /// A consistent copy of the mutable state, taken under mu.
  struct State {
    std::shared_ptr<Inode> parent;  ///< null for the root
    std::string name;               ///< a name it was last reached by
    SharedFd fd;                    ///< non-directory: O_PATH of the topmost instance, once open
    std::shared_ptr<const FoundAt> at;  ///< lower non-directory: where it is (UnionFs::object_fd)
    size_t layer = 0;               ///< layer of fd (non-directory) or of parts[0]
    SharedParts parts;              ///< directory: instances, topmost first
    /// Directory: lower instances below the last of `parts` not opened yet (PendingLower);
    /// UnionFs::dir_parts opens them on first use.
    std::shared_ptr<const PendingLower> pending;
    /// Whether the directory merges several instances (for st_nlink), resolved or not.
    [[nodiscard]] bool merged() const { return parts.size() > 1 || pending; }
  };
  [[nodiscard]] State state() const {
    std::lock_guard lock(mu_);
    return state_;
  }
  /// Takes the state a lookup found: parent and name always; the object (fd, location, layer;
  /// a directory's instances) unless the stored one is as good or newer. A lookup that found
  /// the lower object before a concurrent copy-up was published must never move the inode
  /// back down (its writers would then write the lower file), and a non-directory keeps the
  /// descriptor it has in the same layer. `upper`: the upper layer's index (SIZE_MAX: none).
  void refresh(State fresh, size_t upper) {
    std::lock_guard lock(mu_);
    const bool keep = (state_.layer == upper && fresh.layer != upper) ||
                      (!is_dir && state_.layer == fresh.layer && (state_.fd || state_.at));
    if (!keep) {
      state_ = std::move(fresh);
      return;
    }
    state_.parent = std::move(fresh.parent);
    state_.name = std::move(fresh.name);
  }
  /// state().layer without the copy.
  [[nodiscard]] size_t layer() const {
    std::lock_guard lock(mu_);
    return state_.layer;
  }
  void set_state(State s) {
    std::lock_guard lock(mu_);
    state_ = std::move(s);
  }
  /// Non-directory: installs `fd` (just opened at state().at) unless one is there already (a
  /// racing open, or a copy-up's), and returns the one that stays.
  SharedFd install_fd(SharedFd fd) {
    std::lock_guard lock(mu_);
    if (!state_.fd) state_.fd = std::move(fd);
    return state_.fd;
  }
  void set_name(std::shared_ptr<Inode> parent, std::string name) {
    std::lock_guard lock(mu_);
    state_.parent = std::move(parent);
    state_.name = std::move(name);
  }

  /// Directory: the index of its lower instances, once built (see DirIndex).
  [[nodiscard]] std::shared_ptr<const DirIndex> index() const {
    std::lock_guard lock(mu_);
    return index_;
  }
  void set_index(std::shared_ptr<const DirIndex> index) {
    std::unique_ptr<PartialRead> done;  // closed and freed after the lock is released
    std::lock_guard lock(mu_);
    if (!index_) index_ = std::move(index);
    done = std::move(partial_);
  }
  /// Directory with one lower instance: a read of it for its index that stopped at the
  /// entries its lookups so far were worth (UnionFs::index_of). The next try goes on from
  /// there instead of reading those entries again.
  struct PartialRead {
    size_t layer = 0;                ///< the instance's layer (the inode's key names it)
    UniqueFd fd;                     ///< a descriptor of it, positioned after `ents`
    std::vector<sys::DirEnt> ents;   ///< the entries read so far
  };
  /// The read kept by keep_partial, which this caller then owns, or null.
  std::unique_ptr<PartialRead> take_partial() {
    std::lock_guard lock(mu_);
    return std::move(partial_);
  }
  /// Keeps `p` for the next try, unless an index was built meanwhile or a racing reader kept
  /// a longer one.
  void keep_partial(std::unique_ptr<PartialRead> p) {
    std::lock_guard lock(mu_);
    if (!index_ && (!partial_ || partial_->ents.size() < p->ents.size())) std::swap(partial_, p);
  }
  /// Directory: replaces a pending state's deferred instances with `rest`, the instances
  /// they resolve to (the same for every lookup of this inode: they depend on its topmost
  /// lower instance only, which is its key), and returns the parts.
  SharedParts finish_pending(const std::shared_ptr<const DirParts>& rest) {
    std::lock_guard lock(mu_);
    if (!rest_) rest_ = rest;
    if (state_.pending) {
      state_.parts.append(*rest_);
      state_.pending.reset();
    }
    return state_.parts;
  }
  /// The resolved deferred instances, once a first use has opened them.
  [[nodiscard]] std::shared_ptr<const DirParts> rest() const {
    std::lock_guard lock(mu_);
    return rest_;
  }
  /// Held while the deferred instances are opened, so that they are opened once.
  std::mutex resolve_mu;

  /// Lookups made in this directory without an index (to decide when one pays off).
  std::atomic<uint32_t> direct_lookups{0};
  /// A directory with one lower instance: the lookup count at which to try indexing it again,
  /// after an instance too big to be worth it yet (UnionFs::index_of).
  std::atomic<uint32_t> index_retry_at{0};

 private:
  mutable std::mutex mu_;
  State state_;
  std::shared_ptr<const DirIndex> index_;
  std::shared_ptr<const DirParts> rest_;
  std::unique_ptr<PartialRead> partial_;
};

/// The inode table's map from key to inode: open addressing with linear probing, at most half
/// full, deletion by backward shift (no tombstones). A cold lookup finds or inserts one key:
/// with std::unordered_map that touched the bucket array, the node before and the node (three
/// cache misses, ~12% of the daemon's user time at 20,000 names); here one slot of 40 bytes.
/// Not thread-safe: InodeTable holds its mutex around every call.
class InodeKeyMap {
 public:
  InodeKeyMap() : slots_(kMinSlots) {}
  /// The inode stored for `key`, or null.
  [[nodiscard]] const std::shared_ptr<Inode>* find(const InodeKey& key) const;
  /// The entry for `key`, inserted empty (null) if it was not there.
  std::shared_ptr<Inode>& operator[](const InodeKey& key);
  /// Removes `key` if it is there. By value: erasing may destroy the inode that holds it.
  void erase(InodeKey key);
  [[nodiscard]] size_t size() const { return size_; }
  static constexpr size_t kMinSlots = 1024;  ///< slots of a new map

 private:
  struct Slot {
    InodeKey key;
    std::shared_ptr<Inode> inode;  ///< null: the slot is free
  };
  [[nodiscard]] size_t home(const InodeKey& key) const {
    return InodeKeyHash{}(key) & (slots_.size() - 1);
  }
  /// The slot holding `key`, or the free slot where it would go.
  [[nodiscard]] size_t slot_of(const InodeKey& key) const;
  void grow();

  std::vector<Slot> slots_;  ///< a power of two of them
  size_t size_ = 0;
};

class InodeTable {
 public:
  /// Installs the root inode (pinned: never erased by forget).
  void set_root(std::shared_ptr<Inode> root);
  [[nodiscard]] Inode& root() const { return *root_; }

  /// Finds the inode for `key` or inserts the one `make()` returns, and counts one lookup.
  /// `fresh` (the state just looked up) refreshes the stored state (Inode::refresh, `upper`
  /// the upper layer's index), so that it follows changes made through other names. Takes mu_,
  /// then the inode's mu.
  std::shared_ptr<Inode> acquire(const InodeKey& key, Inode::State fresh, uint64_t st_ino,
                                 bool is_dir, size_t upper = SIZE_MAX);
  /// The live inode for `key`, if the kernel holds one; the lookup count is not changed.
  std::shared_ptr<Inode> find(const InodeKey& key) const;
  /// Drops n lookups; erases the inode at zero unless it is the root.
  void forget(Inode& inode, uint64_t n);
  [[nodiscard]] size_t size() const;

 private:
  mutable std::mutex mu_;
  InodeKeyMap map_;
  // Inodes the kernel still holds whose key was taken over by a newer inode (the object
  // behind the key changed type): kept alive until their last forget.
  std::unordered_map<Inode*, std::shared_ptr<Inode>> orphans_;
  std::shared_ptr<Inode> root_;
};

}  // namespace unionfs
