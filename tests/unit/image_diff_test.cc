// image_diff: the top layer's change list against the merged view below, in podman's rules.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "core/image_diff.h"
#include "layer_builder.h"

namespace unionfs {
namespace {

using test::LayerBuilder;

// "A /x" lines, as `unionfs-cpp diff` prints them.
std::vector<std::string> diff_lines(const LayerBuilder& b, bool privileged = true) {
  LayerStack stack = LayerStack::open(b.spec(), true);
  WhiteoutFormat fmt(WhiteoutMode::kAuto, privileged);
  auto r = image_diff(stack, fmt);
  REQUIRE(r.ok());
  std::vector<std::string> out;
  for (const Change& c : *r) out.push_back(std::string(1, static_cast<char>(c.kind)) + " " + c.path);
  return out;
}

using Lines = std::vector<std::string>;

TEST_CASE("diff: added, changed and kernel-whited-out files; parents of A and D are C", "[diff]") {
  LayerBuilder b(2);
  b.file(0, "a/x", "x");
  b.file(0, "a/y", "y");
  b.file(0, "f", "f");
  b.dir(0, "keep");
  b.file(1, "a/x", "x2");
  b.kernel_whiteout(1, "a/y");
  b.file(1, "new/deep/n", "n");
  CHECK(diff_lines(b) == Lines{"C /a", "C /a/x", "D /a/y", "A /new", "A /new/deep", "A /new/deep/n"});
}

TEST_CASE("diff: OCI markers are never paths; an opaque dir over a dir is D, then its entries", "[diff]") {
  LayerBuilder b(2);
  b.file(0, "d/old", "o");
  b.file(0, "d/same", "s");
  b.file(0, "gone", "g");
  b.oci_opaque(1, "d");
  b.file(1, "d/same", "s2");
  b.file(1, "d/fresh", "f");
  b.oci_whiteout(1, "gone");
  // As podman (containers/storage OverlayChanges): "D /d" says it was replaced; "d/same"
  // existed below, so it is changed, not added; "d/old" is not listed on its own.
  CHECK(diff_lines(b) == Lines{"D /d", "A /d/fresh", "C /d/same", "D /gone"});
}

TEST_CASE("diff: a kernel opaque dir with nothing below is simply added", "[diff]") {
  LayerBuilder b(2);
  b.file(0, "other", "o");
  b.file(1, "d/x", "x");
  b.opaque_xattr(1, "d", "user.overlay.opaque");
  CHECK(diff_lines(b, false) == Lines{"A /d", "A /d/x"});
}

TEST_CASE("diff: a copied-up dir with its lower attributes is listed only for A/D below", "[diff]") {
  LayerBuilder b(2);
  b.file(0, "u/f", "1");
  b.file(0, "v/f", "1");
  b.file(1, "u/f", "2");
  b.file(1, "v/g", "2");
  for (size_t i = 0; i < 2; ++i) {
    b.times(i, "u", 1000, 0);
    b.times(i, "v", 1000, 5);
  }
  // u: only a modified file below it, its own attributes unchanged: not listed.
  // v: unchanged itself, but a file was added in it.
  CHECK(diff_lines(b) == Lines{"C /u/f", "C /v", "A /v/g"});
}

TEST_CASE("diff: a changed mode or a changed type is C", "[diff]") {
  LayerBuilder b(2);
  b.dir(0, "m", 0755);
  b.dir(1, "m", 0700);
  b.file(0, "p", "file");
  b.file(1, "p/c", "c");
  CHECK(diff_lines(b) == Lines{"C /m", "C /p", "A /p/c"});
}

TEST_CASE("diff: compared with the merged view of all layers below", "[diff]") {
  LayerBuilder b(3);
  b.file(0, "w", "0");
  b.kernel_whiteout(1, "w");  // deleted in the middle: re-creating it on top adds it
  b.file(2, "w", "2");
  b.file(0, "o/hidden", "0");
  b.oci_opaque(1, "o");
  b.file(1, "o/mid", "1");
  b.file(2, "o/mid", "2");
  b.file(2, "o/hidden2", "2");
  b.times(1, "o", 1000, 0);
  b.times(2, "o", 1000, 0);
  Lines got = diff_lines(b);
  CHECK(got == Lines{"C /o", "A /o/hidden2", "C /o/mid", "A /w"});
}

TEST_CASE("diff: a single layer is all added; an empty upper changes nothing", "[diff]") {
  LayerBuilder one(1);
  one.file(0, "a/b", "b");
  CHECK(diff_lines(one) == Lines{"A /a", "A /a/b"});
  LayerBuilder two(2);
  two.file(0, "a/b", "b");
  CHECK(diff_lines(two).empty());
}

}  // namespace
}  // namespace unionfs
