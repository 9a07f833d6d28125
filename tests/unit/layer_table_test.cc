// layer_table: content IDs, counts, hidden bytes; and the progress bar's drawing.
#include <catch2/catch.hpp>

#include <string>

#include "core/layer_table.h"
#include "core/progress.h"
#include "layer_builder.h"

namespace unionfs {
namespace {

using test::LayerBuilder;

LayerTable table_of(const LayerBuilder& b) {
  LayerStack stack = LayerStack::open(b.spec(), true);
  WhiteoutFormat fmt(WhiteoutMode::kAuto, true);
  int steps = 0;
  auto r = layer_table(stack, fmt, [&] { ++steps; });
  REQUIRE(r.ok());
  CHECK(steps == static_cast<int>(b.size()) + 1);
  return std::move(*r);
}

void small_tree(LayerBuilder& b, size_t i, bool reversed) {
  if (reversed) {
    b.symlink(i, "d/link", "../f");
    b.file(i, "d/g", "gg", 0600);
    b.file(i, "f", "ffff");
  } else {
    b.file(i, "f", "ffff");
    b.file(i, "d/g", "gg", 0600);
    b.symlink(i, "d/link", "../f");
  }
  b.dir(i, "d", 0750);
}

TEST_CASE("layers: the content ID depends on the tree, not on order or times", "[layers]") {
  LayerBuilder b(4);
  small_tree(b, 0, false);
  small_tree(b, 1, true);
  b.times(1, "f", 12345, 0);
  small_tree(b, 2, false);
  b.file(2, "d/g", "gG", 0600);  // other contents
  small_tree(b, 3, false);
  b.dir(3, "d", 0755);  // other mode
  LayerTable t = table_of(b);
  REQUIRE(t.layers.size() == 4);
  CHECK(t.layers[0].id.size() == 32);
  CHECK(t.layers[0].id == t.layers[1].id);
  CHECK(t.layers[0].id != t.layers[2].id);
  CHECK(t.layers[0].id != t.layers[3].id);
  CHECK(t.layers[2].id != t.layers[3].id);
  CHECK(t.layers[0].files == 3);
  CHECK(t.layers[0].size == 6);
}

TEST_CASE("layers: the ID of an empty layer is fixed", "[layers]") {
  LayerBuilder a(1), c(1);
  ::chmod(a.layer(0).c_str(), 0755);
  ::chmod(c.layer(0).c_str(), 0755);
  CHECK(table_of(a).layers[0].id == table_of(c).layers[0].id);
}

TEST_CASE("layers: whiteouts, opaque dirs and hidden bytes", "[layers]") {
  LayerBuilder b(3);
  b.file(0, "f", "0123456789");    // 10, replaced above
  b.file(0, "g", "01234");         // 5, whited out above
  b.file(0, "d/x", "abc");         // 3, under a dir made opaque above
  b.file(0, "keep", "kk");         // 2, visible
  b.file(1, "f", "1234");          // 4, replaced again in layer 2
  b.kernel_whiteout(1, "g");
  b.oci_opaque(1, "d");
  b.file(1, "d/y", "y");           // 1, visible
  b.file(2, "f", "22");            // 2, visible
  b.oci_whiteout(2, "nothing");
  LayerTable t = table_of(b);
  CHECK(t.layers[0].size == 20);
  CHECK(t.layers[0].hidden == 18);
  CHECK(t.layers[0].files == 4);
  CHECK(t.layers[1].size == 5);
  CHECK(t.layers[1].hidden == 4);
  CHECK(t.layers[1].whiteouts == 1);
  CHECK(t.layers[1].opaque_dirs == 1);
  CHECK(t.layers[1].files == 2);  // f and d/y; the markers are not files
  CHECK(t.layers[2].whiteouts == 1);
  CHECK(t.layers[2].hidden == 0);
  CHECK(t.on_disk == 27);
  CHECK(t.visible == 5);
  CHECK(t.wasted == 22);
}

TEST_CASE("layers: an unreadable directory names the path", "[layers]") {
  if (::geteuid() == 0) SUCCEED("root reads everything");
  LayerBuilder b(1);
  b.dir(0, "closed", 0);
  LayerStack stack = LayerStack::open(b.spec(), true);
  WhiteoutFormat fmt(WhiteoutMode::kAuto, false);
  std::string where;
  auto r = layer_table(stack, fmt, {}, &where);
  if (::geteuid() != 0) {
    CHECK(r.error() == EACCES);
    CHECK(where.ends_with("/closed"));
  }
}

TEST_CASE("progress: the bar fills with the steps and stays quiet when disabled", "[progress]") {
  CHECK(Progress::render("x", 0, 4, 8) == "x [>       ] 0/4");
  CHECK(Progress::render("x", 2, 4, 8) == "x [====>   ] 2/4");
  CHECK(Progress::render("x", 4, 4, 8) == "x [========] 4/4");
  Progress p("quiet", 3, false);
  p.advance();
  p.advance(2);
  CHECK(p.done() == 3);
  CHECK_FALSE(p.enabled());
}

}  // namespace
}  // namespace unionfs
