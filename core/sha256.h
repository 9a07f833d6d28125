// SHA-256 (FIPS 180-4): the digests of OCI and docker image archives ("sha256:<hex>"), for
// verifying blobs and layer diff_ids on import and printing the diff_id of an exported layer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace unionfs {

class Sha256 {
 public:
  Sha256();
  /// Adds `len` bytes to the message.
  void update(const void* data, size_t len);
  void update(std::string_view s) { update(s.data(), s.size()); }
  /// The 32-byte digest; the object must not be updated afterwards.
  std::array<uint8_t, 32> finish();
  /// finish() as 64 lowercase hex digits.
  std::string hex();

  /// The hex digest of a whole string.
  static std::string of(std::string_view s);

 private:
  void block(const uint8_t* p);

  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t used_ = 0;
  uint64_t total_ = 0;
};

/// Whether `s` is 64 lowercase hex digits (a SHA-256 in the form digests use).
bool is_sha256_hex(std::string_view s);

}  // namespace unionfs
