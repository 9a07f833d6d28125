// InodeTable: nodeid lifetime and lookup counts.
#include "core/inode_table.h"

#include <cstdio>
#include <cstdlib>

namespace unionfs {

size_t InodeKeyMap::slot_of(const InodeKey& key) const {
  const size_t mask = slots_.size() - 1;
  for (size_t i = home(key);; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (!s.inode || s.key == key) return i;
  }
}

const std::shared_ptr<Inode>* InodeKeyMap::find(const InodeKey& key) const {
  const Slot& s = slots_[slot_of(key)];
  return s.inode ? &s.inode : nullptr;
}

std::shared_ptr<Inode>& InodeKeyMap::operator[](const InodeKey& key) {
  size_t i = slot_of(key);
  if (slots_[i].inode) return slots_[i].inode;
  if (2 * (size_ + 1) > slots_.size()) {
    grow();
    i = slot_of(key);
  }
  // A new entry: the caller stores a non-null inode in it before anything else looks.
  ++size_;
  slots_[i].key = key;
  return slots_[i].inode;
}

void InodeKeyMap::erase(InodeKey key) {
  size_t i = slot_of(key);
  if (!slots_[i].inode) return;
  --size_;
  // Backward shift: move up each following entry that may not stay where it is (its home is
  // not cyclically in (i, j]), so that every entry stays reachable from its home slot.
  const size_t mask = slots_.size() - 1;
  for (size_t j = (i + 1) & mask; slots_[j].inode; j = (j + 1) & mask) {
    const size_t h = home(slots_[j].key);
    const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (stays) continue;
    slots_[i] = std::move(slots_[j]);
    i = j;
  }
  slots_[i].inode.reset();
}

void InodeKeyMap::grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  for (Slot& s : old) {
    if (s.inode) slots_[slot_of(s.key)] = std::move(s);
  }
}

void InodeTable::set_root(std::shared_ptr<Inode> root) {
  std::lock_guard lock(mu_);
  root->nlookup = 1;
  map_[root->key] = root;
  root_ = std::move(root);
}

std::shared_ptr<Inode> InodeTable::acquire(const InodeKey& key, Inode::State fresh,
                                           uint64_t st_ino, bool is_dir, size_t upper) {
  std::lock_guard lock(mu_);
  if (const std::shared_ptr<Inode>* held = map_.find(key); held && (*held)->is_dir == is_dir) {
    const std::shared_ptr<Inode>& inode = *held;
    if (inode.get() != root_.get()) inode->refresh(std::move(fresh), upper);
    inode->nlookup.fetch_add(1);
    return inode;
  }
  auto inode = std::make_shared<Inode>(key, st_ino, is_dir);
  inode->set_state(std::move(fresh));
  inode->nlookup = 1;
  std::shared_ptr<Inode>& slot = map_[key];
  if (slot) orphans_[slot.get()] = slot;
  slot = inode;
  return inode;
}

void InodeTable::forget(Inode& inode, uint64_t n) {
  std::lock_guard lock(mu_);
  uint64_t prev = inode.nlookup.load();
  if (n > prev) {
    std::fprintf(stderr, "unionfs-cpp: negative lookup count on inode %llu\n",
                 static_cast<unsigned long long>(inode.st_ino));
    n = prev;
  }
  inode.nlookup.fetch_sub(n);
  if (prev - n > 0 || &inode == root_.get()) return;
  const std::shared_ptr<Inode>* held = map_.find(inode.key);
  // Erase only if the map still holds this very inode (a newer one may have replaced it).
  if (held && held->get() == &inode) {
    map_.erase(inode.key);
  } else {
    orphans_.erase(&inode);
  }
}

std::shared_ptr<Inode> InodeTable::find(const InodeKey& key) const {
  std::lock_guard lock(mu_);
  const std::shared_ptr<Inode>* held = map_.find(key);
  return held ? *held : nullptr;
}

size_t InodeTable::size() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

}  // namespace unionfs
