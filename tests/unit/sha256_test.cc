// SHA-256: the FIPS 180-4 example vectors, every split of the input, and agreement with the
// system's sha256sum on data of many lengths.
#include "core/sha256.h"

#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "tar_fixture.h"

namespace unionfs {
namespace {

TEST_CASE("sha256: known vectors", "[sha256]") {
  CHECK(Sha256::of("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(Sha256::of("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(Sha256::of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 million;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) million.update(chunk);
  CHECK(million.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: any split of the input gives the same digest", "[sha256]") {
  std::string data;
  for (int i = 0; i < 300; ++i) data += static_cast<char>(i * 7 + 3);
  const std::string whole = Sha256::of(data);
  for (size_t a = 0; a <= data.size(); a += 13) {
    for (size_t b = a; b <= data.size(); b += 29) {
      Sha256 h;
      h.update(data.substr(0, a));
      h.update(data.substr(a, b - a));
      h.update(data.substr(b));
      REQUIRE(h.hex() == whole);
    }
  }
}

TEST_CASE("sha256: agrees with sha256sum around the block and padding boundaries", "[sha256]") {
  test::LayerBuilder b(0);
  std::mt19937 rng(42);
  for (size_t len : {1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 65537}) {
    std::string data(len, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    const std::string path = b.root() + "/data";
    test::put_file(path, data);
    const std::string sum = test::shell("sha256sum " + path).substr(0, 64);
    CHECK(Sha256::of(data) == sum);
  }
}

TEST_CASE("sha256: digest form", "[sha256]") {
  CHECK(is_sha256_hex(std::string(64, 'a')));
  CHECK_FALSE(is_sha256_hex(std::string(64, 'A')));
  CHECK_FALSE(is_sha256_hex(std::string(63, 'a')));
  CHECK_FALSE(is_sha256_hex(std::string(63, 'a') + "g"));
}

}  // namespace
}  // namespace unionfs
