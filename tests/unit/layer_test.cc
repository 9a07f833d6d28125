// LayerStack: parsing of "lower:...:upper" and the set-up checks (super.c's layer checks).
// Every SetupError must name the offending path and say why.
#include "core/layer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/unit/layer_builder.h"

namespace unionfs {
namespace {

using Catch::Matchers::Contains;
using test::LayerBuilder;
using test::TmpfsMount;

// The message of the SetupError that opening `spec` throws, or "<no error>".
std::string setup_error(const std::string& spec, bool read_only = false) {
  try {
    (void)LayerStack::open(spec, read_only);
  } catch (const SetupError& e) {
    return e.what();
  }
  return "<no error>";
}

std::string canonical(const std::string& p) {
  char* r = ::realpath(p.c_str(), nullptr);
  std::string s = r ? r : p;
  ::free(r);
  return s;
}

TEST_CASE("split_layer_spec splits on ':' bottom first", "[layer]") {
  CHECK(split_layer_spec("a") == std::vector<std::string>{"a"});
  CHECK(split_layer_spec("a:b:c") == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("an empty spec is a setup error", "[layer]") {
  CHECK_THROWS_WITH(split_layer_spec(""), "empty layer list");
  CHECK(setup_error("") == "empty layer list");
}

TEST_CASE("an empty component is a setup error naming its position", "[layer]") {
  CHECK_THROWS_WITH(split_layer_spec("a::b"), "empty layer at position 2 in 'a::b'");
  CHECK_THROWS_WITH(split_layer_spec(":a"), "empty layer at position 1 in ':a'");
  CHECK_THROWS_WITH(split_layer_spec("a:"), "empty layer at position 2 in 'a:'");
  LayerBuilder b(2);
  CHECK(setup_error(b.layer(0) + "::" + b.layer(1)) ==
        "empty layer at position 2 in '" + b.layer(0) + "::" + b.layer(1) + "'");
}

TEST_CASE("a stack opens bottom first with canonical paths and one root fd each", "[layer]") {
  LayerBuilder b(3);
  // A relative, non-canonical spelling of the middle layer.
  std::string rel_mid = b.root() + "/l0/../l1/.";
  LayerStack s = LayerStack::open(b.layer(0) + ":" + rel_mid + ":" + b.layer(2), false);
  REQUIRE(s.size() == 3);
  CHECK(s.has_upper());
  CHECK(s.upper_index() == 2);
  CHECK(s.top() == 2);
  CHECK_FALSE(s.is_upper(0));
  CHECK_FALSE(s.is_upper(1));
  CHECK(s.is_upper(2));
  for (size_t i = 0; i < 3; ++i) {
    INFO("layer " << i);
    CHECK(s.layer(i).path == canonical(b.layer(i)));
    struct stat want = b.stat(i, "");
    CHECK(s.layer(i).dev == want.st_dev);
    CHECK(s.layer(i).ino == want.st_ino);
    struct stat got {};
    REQUIRE(::fstat(s.layer(i).root.get(), &got) == 0);
    CHECK(got.st_ino == want.st_ino);
    CHECK(S_ISDIR(got.st_mode));
  }
  // All on one filesystem: st_ino is the real inode number.
  CHECK(s.st_ino(s.layer(0).dev, 12345) == 12345u);
}

TEST_CASE("a missing layer directory is a setup error naming it", "[layer]") {
  LayerBuilder b(1);
  std::string missing = b.root() + "/nope";
  CHECK(setup_error(b.layer(0) + ":" + missing) ==
        "layer '" + missing + "': No such file or directory");
  CHECK(setup_error(missing + ":" + b.layer(0)) ==
        "layer '" + missing + "': No such file or directory");
}

TEST_CASE("a file given as a layer is a setup error naming it", "[layer]") {
  LayerBuilder b(2);
  b.file(0, "f", "x");
  std::string f = b.path(0, "f");
  CHECK(setup_error(f + ":" + b.layer(1)) == "layer '" + f + "': Not a directory");
  CHECK(setup_error(b.layer(1) + ":" + f) == "layer '" + f + "': Not a directory");
}

TEST_CASE("the same directory twice is a setup error", "[layer]") {
  LayerBuilder b(2);
  SECTION("spelled the same") {
    CHECK(setup_error(b.layer(0) + ":" + b.layer(0)) ==
          "layer '" + b.layer(0) + "' is listed twice");
  }
  SECTION("through a symlink to it") {
    std::string link = b.root() + "/link";
    REQUIRE(::symlink(b.layer(0).c_str(), link.c_str()) == 0);
    CHECK(setup_error(b.layer(0) + ":" + b.layer(1) + ":" + link) ==
          "layer '" + link + "' is listed twice");
  }
  SECTION("upper equal to a lower") {
    CHECK(setup_error(b.layer(0) + ":" + b.layer(1) + ":" + b.layer(1)) ==
          "layer '" + b.layer(1) + "' is listed twice");
  }
}

TEST_CASE("an upper inside a lower, or a lower inside the upper, is a setup error", "[layer]") {
  LayerBuilder b(1);
  std::string low = canonical(b.layer(0));
  b.dir(0, "sub/upper");
  std::string nested = low + "/sub/upper";
  CHECK(setup_error(low + ":" + nested) ==
        "upper layer '" + nested + "' is inside lower layer '" + low + "'");
  CHECK(setup_error(nested + ":" + low) ==
        "lower layer '" + nested + "' is inside upper layer '" + low + "'");
  // Through a symlink to the lower layer the canonical path still shows the nesting.
  std::string link = b.root() + "/link";
  REQUIRE(::symlink(low.c_str(), link.c_str()) == 0);
  CHECK(setup_error(low + ":" + link + "/sub/upper") ==
        "upper layer '" + nested + "' is inside lower layer '" + low + "'");
  // A sibling whose name merely starts with the lower's name is not inside it.
  std::string sibling = low + "x";
  REQUIRE(::mkdir(sibling.c_str(), 0755) == 0);
  CHECK(setup_error(low + ":" + sibling) == "<no error>");
}

TEST_CASE("read-write needs a lower and an upper", "[layer]") {
  LayerBuilder b(1);
  CHECK(setup_error(b.layer(0)) ==
        "need at least one lower layer and an upper layer (LOWER:UPPER), or -o ro");
}

TEST_CASE("read-only mode makes every layer a lower", "[layer]") {
  LayerBuilder b(2);
  SECTION("one layer") {
    LayerStack s = LayerStack::open(b.layer(0), true);
    CHECK(s.size() == 1);
    CHECK_FALSE(s.has_upper());
    CHECK_FALSE(s.is_upper(0));
  }
  SECTION("two layers") {
    LayerStack s = LayerStack::open(b.spec(), true);
    CHECK(s.size() == 2);
    CHECK_FALSE(s.has_upper());
    CHECK_FALSE(s.is_upper(1));
    CHECK(s.top() == 1);
  }
  SECTION("nesting is no error when nothing is written") {
    b.dir(0, "sub");
    CHECK(setup_error(b.layer(0) + ":" + b.path(0, "sub"), true) == "<no error>");
  }
}

TEST_CASE("an upper on a read-only filesystem is a setup error naming it", "[layer][mount]") {
  LayerBuilder b(1);
  std::string up = b.root() + "/ro";
  TmpfsMount m(up, true);
  if (!m.ok()) {
    WARN("cannot mount a tmpfs here; skipped");
    return;
  }
  CHECK(setup_error(b.layer(0) + ":" + up) ==
        "upper layer '" + canonical(up) + "' is on a read-only filesystem");
  // As a lower it is fine, and so is a read-only stack.
  CHECK(setup_error(up + ":" + b.layer(0)) == "<no error>");
  CHECK(setup_error(b.layer(0) + ":" + up, true) == "<no error>");
}

TEST_CASE("layers on two filesystems get distinct st_ino spaces", "[layer][mount]") {
  LayerBuilder b(1);
  std::string up = b.root() + "/tmpfs";
  TmpfsMount m(up, false);
  if (!m.ok()) {
    WARN("cannot mount a tmpfs here; skipped");
    return;
  }
  LayerStack s = LayerStack::open(b.layer(0) + ":" + up, false);
  REQUIRE(s.layer(0).dev != s.layer(1).dev);
  // Like xino: the filesystem's index in the high bits.
  CHECK(s.st_ino(s.layer(0).dev, 42) == 42u);
  CHECK(s.st_ino(s.layer(1).dev, 42) == ((uint64_t{1} << 56) | 42u));
  // A number too large for the high bits, or an unknown device, is hashed with bit 63 set.
  uint64_t big = s.st_ino(s.layer(1).dev, ino_t{1} << 60);
  CHECK((big >> 63) == 1u);
  CHECK(s.st_ino(s.layer(1).dev, ino_t{1} << 60) == big);
  CHECK(s.st_ino(makedev(999, 999), 42) != s.st_ino(s.layer(0).dev, 42));
}

}  // namespace
}  // namespace unionfs
