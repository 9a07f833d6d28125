// Hashing for names and inode keys: XXH3 everywhere, so that all tables share one fast hash.
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <string_view>

namespace unionfs {

inline uint64_t hash_bytes(const void* data, size_t len, uint64_t seed = 0) {
  return XXH3_64bits_withSeed(data, len, seed);
}
inline uint64_t hash_name(std::string_view s) { return hash_bytes(s.data(), s.size()); }

}  // namespace unionfs
