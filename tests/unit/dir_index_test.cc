// DirIndex's table against a model: from_listings, given synthetic listings (no directories
// are read), must answer every name, present or not, with the hits a plain map built the
// same way holds, in order; for_each must visit each name once. Enough names to wrap the
// open-addressing table around and to fill it to its limit.
#include "core/dir_index.h"

#include <dirent.h>

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace unionfs {
namespace {

// What the index must hold: per name its hits, topmost first, cut after the first whiteout,
// non-directory or hiding directory (DirIndex::find).
std::map<std::string, std::vector<IndexHit>> model(const std::vector<LayerListing>& listings) {
  std::map<std::string, std::vector<IndexHit>> m;
  auto closed = [](const std::vector<IndexHit>& h) {
    return !h.empty() && (h.back().type != DT_DIR || h.back().hides_lower);
  };
  for (uint32_t p = 0; p < listings.size(); ++p) {
    for (const sys::DirEnt& e : listings[p].entries) {
      auto& h = m[e.name];
      if (!closed(h)) h.push_back(IndexHit{p, e.type, false, e.ino});
    }
    for (const std::string& n : listings[p].oci_whiteouts) {
      auto& h = m[n];
      if (closed(h)) continue;
      if (!h.empty() && h.back().part == p) {
        h.back().hides_lower = true;
      } else {
        h.push_back(IndexHit{p, kDtWhiteout, false, 0});
      }
    }
  }
  return m;
}

bool same(std::span<const IndexHit> a, const std::vector<IndexHit>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].part != b[i].part || a[i].type != b[i].type || a[i].hides_lower != b[i].hides_lower ||
        a[i].ino != b[i].ino) {
      return false;
    }
  }
  return true;
}

void check_against_model(const std::vector<LayerListing>& listings) {
  const auto want = model(listings);
  DirParts parts(listings.size());
  auto index = DirIndex::from_listings(parts, listings);
  REQUIRE(index);
  CHECK(index->size() == want.size());
  CHECK(index->parts().size() == listings.size());
  for (const auto& [name, hits] : want) {
    INFO("name " << name);
    CHECK(same(index->find(name), hits));
    std::string other = name;
    other += '~';
    CHECK(index->find(other).empty());  // absent names share no slot with present ones
  }
  CHECK(index->find("").empty());
  std::map<std::string, int> seen;
  index->for_each([&](std::string_view name, std::span<const IndexHit> hits) {
    ++seen[std::string(name)];
    auto it = want.find(std::string(name));
    REQUIRE(it != want.end());
    CHECK(same(hits, it->second));
  });
  CHECK(seen.size() == want.size());
  for (const auto& [name, n] : seen) CHECK(n == 1);
}

TEST_CASE("index of many names over many layers answers as a plain map", "[dir_index]") {
  // 40 layers; each name appears in some of them as a directory, a file, a kernel whiteout
  // or an OCI whiteout (sometimes beside the same name in its layer).
  std::mt19937 rng(42);
  const unsigned char kinds[] = {DT_DIR, DT_DIR, DT_DIR, DT_REG, DT_LNK, kDtWhiteout};
  for (size_t names : {0u, 1u, 12u, 13u, 3000u}) {
    INFO(names << " names");
    std::vector<LayerListing> listings(40);
    for (uint32_t p = 0; p < listings.size(); ++p) {
      for (size_t k = 0; k < names; ++k) {
        if (rng() % 3 != 0) continue;
        std::string n = std::to_string(k);  // (not "lit" + string&&: GCC 12's -Wrestrict)
        n.append(k % 7 * 5, 'x');
        if (rng() % 9 == 0) listings[p].oci_whiteouts.push_back(n);
        if (rng() % 5 == 0) continue;
        listings[p].entries.push_back(sys::DirEnt{n, p * 100000 + k + 1, kinds[rng() % 6]});
      }
    }
    check_against_model(listings);
  }
}

TEST_CASE("index holds names of every length up to NAME_MAX", "[dir_index]") {
  std::vector<LayerListing> listings(2);
  for (size_t len = 1; len <= 255; ++len) {
    listings[len % 2].entries.push_back(sys::DirEnt{std::string(len, 'a'), len, DT_REG});
  }
  check_against_model(listings);
}

TEST_CASE("index memory per name is measured and small", "[dir_index]") {
  std::vector<LayerListing> listings(1);
  for (size_t k = 0; k < 10000; ++k) {
    std::string n = std::to_string(k);
    n.insert(0, "file");
    listings[0].entries.push_back(sys::DirEnt{n, k + 1, DT_REG});
  }
  auto index = DirIndex::from_listings(DirParts(1), listings);
  const double per_name = static_cast<double>(index->memory_bytes()) / 10000;
  INFO("bytes per name " << per_name);
  CHECK(per_name > 40);   // a 40-byte slot and the name, at least
  CHECK(per_name < 100);  // at most 3/4 full: under 2 slots of 40 bytes per name, and the name
}

}  // namespace
}  // namespace unionfs
