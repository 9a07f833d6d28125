// InodeTable: nodeid lifetime and lookup counts (passthrough_hp's rules): +1 per acquire,
// -n per forget, erase at zero, the root pinned, a replaced key's old inode kept until forgotten.
#include "core/inode_table.h"

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <map>
#include <memory>
#include <random>

namespace unionfs {
namespace {

std::shared_ptr<Inode> make_root() { return std::make_shared<Inode>(InodeKey{1, 2}, 2, true); }

TEST_CASE("the key map finds, inserts and erases as a plain map does", "[inode]") {
  // Random inserts and erases over 3,000 keys (the map grows from 1,024 slots to 8,192, and
  // erasing shifts the entries after a removed one back, wrapping around the end).
  InodeKeyMap m;
  std::map<std::pair<ino_t, uint64_t>, std::shared_ptr<Inode>> want;
  std::mt19937 rng(7);
  auto key_of = [](uint32_t k) { return InodeKey{1, k / 3, k % 3}; };
  for (int step = 0; step < 40000; ++step) {
    const uint32_t k = rng() % 3000;
    const InodeKey key = key_of(k);
    const auto wk = std::make_pair(key.ino, key.name);
    if (rng() % 5 < 3) {
      std::shared_ptr<Inode>& slot = m[key];
      if (!slot) slot = std::make_shared<Inode>(key, k, false);
      want.emplace(wk, slot);
      CHECK(slot.get() == want[wk].get());
    } else {
      m.erase(key);
      want.erase(wk);
    }
    if (step % 1000 == 0 || step == 39999) {
      INFO("step " << step);
      REQUIRE(m.size() == want.size());
      for (uint32_t j = 0; j < 3000; ++j) {
        const InodeKey kj = key_of(j);
        auto it = want.find({kj.ino, kj.name});
        const std::shared_ptr<Inode>* held = m.find(kj);
        REQUIRE((held != nullptr) == (it != want.end()));
        if (held) CHECK(held->get() == it->second.get());
      }
    }
  }
}

TEST_CASE("the key map keeps entries reachable when an erase shifts across its end",
          "[inode]") {
  // Keys whose home slots are the last two and the first of a new map: a at 1022, b at 1023,
  // c at 0. Erasing a must leave b and c where they are (their homes are not before the freed
  // slot), and then erasing b must move nothing wrongly either.
  constexpr size_t n = InodeKeyMap::kMinSlots;
  auto key_with_home = [&](size_t home, ino_t from) {
    for (ino_t i = from;; ++i) {
      InodeKey k{9, i, 0};
      if ((InodeKeyHash{}(k) & (n - 1)) == home) return k;
    }
  };
  const InodeKey a = key_with_home(n - 2, 1), b = key_with_home(n - 1, 1), c = key_with_home(0, 1);
  const InodeKey d = key_with_home(n - 1, b.ino + 1);  // probes on to slot 1
  InodeKeyMap m;
  for (const InodeKey& k : {a, b, c, d}) m[k] = std::make_shared<Inode>(k, k.ino, false);
  m.erase(a);
  for (const InodeKey& k : {b, c, d}) {
    INFO("ino " << k.ino);
    REQUIRE(m.find(k) != nullptr);
    CHECK((*m.find(k))->key == k);
  }
  m.erase(b);  // d (home n-1, at slot 1) moves back to n-1; c stays at 0
  CHECK(m.find(b) == nullptr);
  CHECK(m.find(c) != nullptr);
  CHECK(m.find(d) != nullptr);
  CHECK(m.size() == 2);
}

TEST_CASE("acquire counts lookups on one inode per key", "[inode]") {
  InodeTable t;
  t.set_root(make_root());
  CHECK(t.size() == 1);
  CHECK(t.root().nlookup == 1);
  auto a = t.acquire(InodeKey{1, 10}, Inode::State{}, 10, false);
  auto a2 = t.acquire(InodeKey{1, 10}, Inode::State{}, 10, false);
  CHECK(a.get() == a2.get());
  CHECK(a->nlookup == 2);
  CHECK(a->st_ino == 10u);
  CHECK(t.size() == 2);
  CHECK(t.find(InodeKey{1, 10}).get() == a.get());
  CHECK(t.find(InodeKey{1, 11}) == nullptr);
  t.forget(*a, 1);
  CHECK(a->nlookup == 1);
  CHECK(t.size() == 2);
  t.forget(*a, 1);
  CHECK(a->nlookup == 0);
  CHECK(t.size() == 1);
  CHECK(t.find(InodeKey{1, 10}) == nullptr);
  // A new lookup after the erase makes a new inode.
  auto b = t.acquire(InodeKey{1, 10}, Inode::State{}, 10, false);
  CHECK(b->nlookup == 1);
  CHECK(t.size() == 2);
}

TEST_CASE("acquire replaces the stored state with the fresh one", "[inode]") {
  InodeTable t;
  t.set_root(make_root());
  Inode::State s1;
  s1.name = "first";
  Inode::State s2;
  s2.name = "second";
  s2.layer = 3;
  auto a = t.acquire(InodeKey{1, 10}, s1, 10, false);
  CHECK(a->state().name == "first");
  (void)t.acquire(InodeKey{1, 10}, s2, 10, false);
  CHECK(a->state().name == "second");
  CHECK(a->state().layer == 3u);
}

TEST_CASE("a lookup that raced a copy-up never moves the inode back to the lower layer",
          "[inode]") {
  // find() saw the lower file (layer 0) before a concurrent copy-up published the upper one
  // (layer 2): the stale state must not replace it, or writers would write the lower file.
  constexpr size_t kUpper = 2;
  InodeTable t;
  t.set_root(make_root());
  Inode::State lower;
  lower.name = std::string(1, 'f');
  lower.layer = 0;
  auto a = t.acquire(InodeKey{1, 10}, lower, 10, false, kUpper);
  Inode::State copied = a->state();
  copied.layer = kUpper;
  copied.fd = std::make_shared<const UniqueFd>(::open("/", O_PATH | O_CLOEXEC));
  a->set_state(copied);  // what copy-up publishes
  Inode::State stale;
  stale.name = std::string(1, 'g');  // reached by another name meanwhile
  stale.layer = 0;
  (void)t.acquire(InodeKey{1, 10}, stale, 10, false, kUpper);
  CHECK(a->layer() == kUpper);
  CHECK(a->state().fd == copied.fd);
  CHECK(a->state().name == "g");
  // A directory keeps its upper instance the same way.
  Inode::State dir_lower;
  dir_lower.layer = 1;
  auto d = t.acquire(InodeKey{1, 20}, dir_lower, 20, true, kUpper);
  Inode::State dir_up = dir_lower;
  dir_up.layer = kUpper;
  d->set_state(dir_up);
  (void)t.acquire(InodeKey{1, 20}, dir_lower, 20, true, kUpper);
  CHECK(d->layer() == kUpper);
  // A non-directory keeps its descriptor in the same layer (no churn of O_PATH descriptors).
  Inode::State other = copied;
  other.fd = std::make_shared<const UniqueFd>(::open("/", O_PATH | O_CLOEXEC));
  (void)t.acquire(InodeKey{1, 10}, other, 10, false, kUpper);
  CHECK(a->state().fd == copied.fd);
}

TEST_CASE("the root is pinned", "[inode]") {
  InodeTable t;
  t.set_root(make_root());
  Inode& root = t.root();
  // Looking the root up again (e.g. "..") counts and forgets, but never erases it.
  auto again = t.acquire(root.key, Inode::State{}, root.st_ino, true);
  CHECK(again.get() == &root);
  CHECK(root.nlookup == 2);
  t.forget(root, 2);
  CHECK(t.size() == 1);
  CHECK(t.find(root.key).get() == &root);
}

TEST_CASE("an over-large forget is clamped", "[inode]") {
  InodeTable t;
  t.set_root(make_root());
  auto a = t.acquire(InodeKey{1, 10}, Inode::State{}, 10, false);
  t.forget(*a, 5);
  CHECK(a->nlookup == 0);
  CHECK(t.size() == 1);
}

TEST_CASE("a key whose object changed type gets a new inode, the old lives until forgotten",
          "[inode]") {
  InodeTable t;
  t.set_root(make_root());
  auto file = t.acquire(InodeKey{1, 10}, Inode::State{}, 10, false);
  auto dir = t.acquire(InodeKey{1, 10}, Inode::State{}, 10, true);
  CHECK(file.get() != dir.get());
  CHECK(dir->is_dir);
  CHECK(t.find(InodeKey{1, 10}).get() == dir.get());
  CHECK(t.size() == 2);
  std::weak_ptr<Inode> weak_file = file;
  Inode* raw = file.get();
  file.reset();
  CHECK_FALSE(weak_file.expired());  // the table keeps the orphan alive
  t.forget(*raw, 1);
  CHECK(weak_file.expired());
  CHECK(t.find(InodeKey{1, 10}).get() == dir.get());
  t.forget(*dir, 1);
  CHECK(t.size() == 1);
}

TEST_CASE("keys differing only in the name part are distinct inodes", "[inode]") {
  // One inode per name of a lower file with several hard links.
  InodeTable t;
  t.set_root(make_root());
  auto a = t.acquire(InodeKey{1, 10, 0}, Inode::State{}, 10, false);
  auto b = t.acquire(InodeKey{1, 10, 7}, Inode::State{}, 10, false);
  auto c = t.acquire(InodeKey{1, 10, 9}, Inode::State{}, 10, false);
  CHECK(a.get() != b.get());
  CHECK(b.get() != c.get());
  CHECK(t.size() == 4);
  CHECK(t.find(InodeKey{1, 10, 7}).get() == b.get());
}

}  // namespace
}  // namespace unionfs
