// InodeTable: nodeid lifetime and lookup counts.
#include "core/inode_table.h"

#include <cstdio>
#include <cstdlib>

namespace unionfs {

void InodeTable::set_root(std::shared_ptr<Inode> root) {
  std::lock_guard lock(mu_);
  root->nlookup = 1;
  map_[root->key] = root;
  root_ = std::move(root);
}

std::shared_ptr<Inode> InodeTable::acquire(const InodeKey& key, Inode::State fresh,
                                           uint64_t st_ino, bool is_dir) {
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  if (it != map_.end() && it->second->is_dir == is_dir) {
    std::shared_ptr<Inode> inode = it->second;
    if (inode.get() != root_.get()) inode->set_state(std::move(fresh));
    inode->nlookup.fetch_add(1);
    return inode;
  }
  auto inode = std::make_shared<Inode>(key, st_ino, is_dir);
  inode->set_state(std::move(fresh));
  inode->nlookup = 1;
  if (it != map_.end()) {
    orphans_[it->second.get()] = it->second;
    it->second = inode;
  } else {
    map_.emplace(key, inode);
  }
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
  auto it = map_.find(inode.key);
  // Erase only if the map still holds this very inode (a newer one may have replaced it).
  if (it != map_.end() && it->second.get() == &inode) {
    map_.erase(it);
  } else {
    orphans_.erase(&inode);
  }
}

std::shared_ptr<Inode> InodeTable::find(const InodeKey& key) const {
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  return it == map_.end() ? nullptr : it->second;
}

size_t InodeTable::size() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

}  // namespace unionfs
