// lookup_name / lower_positive / root_parts: which layer decides a name (namei.c's rules):
// the topmost holder wins, a whiteout ends the search, a non-directory hides everything
// below, a directory merges with the directories below until one is opaque.
#include "core/lookup.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dir_index.h"
#include "core/sys.h"
#include "tests/unit/layer_builder.h"

namespace unionfs {
namespace {

using test::LayerBuilder;

struct Stack {
  LayerStack stack;
  WhiteoutFormat fmt;
  Stack(const LayerBuilder& b, WhiteoutMode mode = WhiteoutMode::kAuto, bool ro = false)
      : stack(LayerStack::open(b.spec(), ro)), fmt(mode, true) {}

  // Looks up a '/'-separated path from the root; every component before the last must be a
  // directory.
  Found find(const std::string& path) const {
    DirParts parts = root_parts(stack, fmt);
    Found f;
    size_t start = 0;
    for (;;) {
      size_t slash = path.find('/', start);
      std::string name = path.substr(start, slash == std::string::npos ? slash : slash - start);
      auto r = lookup_name(stack, fmt, parts, name);
      REQUIRE(r.ok());
      f = std::move(*r);
      if (slash == std::string::npos) return f;
      REQUIRE(f.is_dir());
      parts = f.parts;
      start = slash + 1;
    }
  }
  DirParts parts_of(const std::string& dir) const {
    if (dir.empty()) return root_parts(stack, fmt);
    Found f = find(dir);
    REQUIRE(f.is_dir());
    return f.parts;
  }
  std::vector<size_t> layers_of(const std::string& dir) const {
    std::vector<size_t> out;
    for (const LayerDir& d : parts_of(dir)) out.push_back(d.layer);
    return out;
  }
  std::string content(const Found& f) const {
    auto opened = open_found(f);  // a lower file is opened only now
    REQUIRE(opened.ok());
    auto fd = sys::reopen((*opened)->get(), O_RDONLY);
    REQUIRE(fd.ok());
    return test::read_fd(fd->get());
  }
};

using Layers = std::vector<size_t>;

TEST_CASE("the topmost layer holding a name wins", "[lookup]") {
  LayerBuilder b(3);
  b.file(0, "a", "bottom");
  b.file(1, "a", "middle");
  b.file(0, "b", "bottom-b");
  b.file(1, "c", "middle-c");
  b.file(2, "c", "top-c");
  Stack s(b);
  Found a = s.find("a");
  CHECK(a.exists);
  CHECK(a.layer == 1);
  CHECK(s.content(a) == "middle");
  CHECK(a.parts.empty());
  CHECK(a.origin_ino == b.stat(1, "a").st_ino);
  CHECK_FALSE(a.upper_whiteout);
  Found bb = s.find("b");
  CHECK(bb.layer == 0);
  CHECK(s.content(bb) == "bottom-b");
  Found c = s.find("c");
  CHECK(c.layer == 2);
  CHECK(s.content(c) == "top-c");
  CHECK(c.st.st_ino == b.stat(2, "c").st_ino);
  CHECK(c.st.st_size == 5);
  Found none = s.find("none");
  CHECK_FALSE(none.exists);
  CHECK_FALSE(none.upper_whiteout);
}

TEST_CASE("a kernel whiteout (char 0/0) hides the name below", "[lookup]") {
  LayerBuilder b(3);
  b.file(0, "a", "bottom");
  b.kernel_whiteout(1, "a");
  b.file(0, "u", "bottom");
  b.kernel_whiteout(2, "u");
  b.dir(0, "d");
  b.file(0, "d/x", "x");
  b.kernel_whiteout(1, "d");
  Stack s(b);
  Found a = s.find("a");
  CHECK_FALSE(a.exists);
  CHECK_FALSE(a.upper_whiteout);  // the whiteout is in a lower layer
  Found u = s.find("u");
  CHECK_FALSE(u.exists);
  CHECK(u.upper_whiteout);
  CHECK_FALSE(s.find("d").exists);
  // A character device other than 0/0 is an ordinary object.
  LayerBuilder b2(2);
  b2.file(0, "n", "bottom");
  REQUIRE(::mknod(b2.path(1, "n").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0);
  Stack s2(b2);
  Found n = s2.find("n");
  CHECK(n.exists);
  CHECK(n.layer == 1);
  CHECK(S_ISCHR(n.st.st_mode));
}

TEST_CASE("an OCI .wh.NAME hides the name below unless the format is kernel-only", "[lookup]") {
  LayerBuilder b(3);
  b.file(0, "a", "bottom");
  b.oci_whiteout(1, "a");
  b.file(0, "u", "bottom");
  b.oci_whiteout(2, "u");
  b.dir(0, "d");
  b.file(0, "d/x", "x");
  b.oci_whiteout(1, "d");
  for (WhiteoutMode mode : {WhiteoutMode::kAuto, WhiteoutMode::kOci}) {
    Stack s(b, mode);
    CHECK_FALSE(s.find("a").exists);
    Found u = s.find("u");
    CHECK_FALSE(u.exists);
    CHECK(u.upper_whiteout);
    CHECK_FALSE(s.find("d").exists);
  }
  Stack k(b, WhiteoutMode::kOverlay);
  Found a = k.find("a");
  CHECK(a.exists);
  CHECK(a.layer == 0);
  Found wh = k.find(".wh.a");
  CHECK(wh.exists);
  CHECK(wh.layer == 1);
  CHECK(S_ISREG(wh.st.st_mode));
  CHECK(k.find("d").is_dir());
}

TEST_CASE("an OCI whiteout does not hide a sibling in its own layer", "[lookup]") {
  LayerBuilder b(3);
  b.file(0, "f", "bottom");
  b.file(1, "f", "middle");
  b.oci_whiteout(1, "f");
  b.dir(0, "d");
  b.file(0, "d/low", "l");
  b.dir(1, "d");
  b.file(1, "d/mid", "m");
  b.oci_whiteout(1, "d");
  Stack s(b);
  Found f = s.find("f");
  CHECK(f.exists);
  CHECK(f.layer == 1);
  // The directory in the whiteout's own layer stays, the ones below are hidden.
  Found d = s.find("d");
  REQUIRE(d.is_dir());
  CHECK(d.top_opaque);
  CHECK(s.layers_of("d") == Layers{1});
  CHECK(s.find("d/mid").exists);
  CHECK_FALSE(s.find("d/low").exists);
}

TEST_CASE("an opaque directory hides the lower children", "[lookup]") {
  const char* kinds[] = {"trusted", "user", "oci"};
  for (const char* kind : kinds) {
    INFO(kind);
    LayerBuilder b(3);
    b.dir(0, "d");
    b.file(0, "d/low", "l");
    b.dir(1, "d");
    b.file(1, "d/mid", "m");
    b.dir(2, "d");
    b.file(2, "d/top", "t");
    if (std::string(kind) == "oci") {
      b.oci_opaque(1, "d");
    } else {
      b.opaque_xattr(
          1, "d",
          std::string(kind) == "trusted" ? "trusted.overlay.opaque" : "user.overlay.opaque");
    }
    Stack s(b);
    Found d = s.find("d");
    REQUIRE(d.is_dir());
    CHECK_FALSE(d.top_opaque);
    CHECK(s.layers_of("d") == Layers{2, 1});
    // A directory is identified by its topmost lower instance.
    CHECK(d.origin_ino == b.stat(1, "d").st_ino);
    CHECK(d.layer == 2);
    CHECK(s.find("d/top").exists);
    CHECK(s.find("d/mid").exists);
    CHECK_FALSE(s.find("d/low").exists);
  }
}

TEST_CASE("an opaque top directory sets top_opaque", "[lookup]") {
  LayerBuilder b(2);
  b.dir(0, "d");
  b.file(0, "d/low", "l");
  b.dir(1, "d");
  b.opaque_xattr(1, "d");
  Stack s(b);
  Found d = s.find("d");
  CHECK(d.top_opaque);
  CHECK(d.parts.size() == 1);
  CHECK(d.origin_ino == b.stat(1, "d").st_ino);
  CHECK_FALSE(s.find("d/low").exists);
}

TEST_CASE("a non-directory hides a lower directory", "[lookup]") {
  LayerBuilder b(3);
  b.dir(0, "d");
  b.file(0, "d/x", "x");
  b.file(1, "d", "file");
  Stack s(b);
  Found d = s.find("d");
  CHECK(d.exists);
  CHECK_FALSE(d.is_dir());
  CHECK(d.layer == 1);
  CHECK(d.parts.empty());
  CHECK(s.content(d) == "file");
  // A symlink to a directory is a non-directory too.
  b.symlink(2, "e", "d");
  b.dir(0, "e");
  Stack s2(b);
  Found e = s2.find("e");
  CHECK(S_ISLNK(e.st.st_mode));
  CHECK(e.layer == 2);
}

TEST_CASE("a directory merges with the directories below", "[lookup]") {
  LayerBuilder b(4);
  b.dir(0, "d");
  b.file(0, "d/a", "0");
  b.file(0, "d/shared", "0");
  b.dir(2, "d");
  b.file(2, "d/c", "2");
  b.file(2, "d/shared", "2");
  b.dir(3, "d");
  b.file(3, "d/e", "3");
  Stack s(b);
  Found d = s.find("d");
  REQUIRE(d.is_dir());
  CHECK(s.layers_of("d") == Layers{3, 2, 0});
  CHECK(d.layer == 3);
  CHECK(d.st.st_ino == b.stat(3, "d").st_ino);  // attributes of the topmost instance
  // Identity of a merged directory: its topmost lower instance, stable across copy-up.
  CHECK(d.origin_ino == b.stat(2, "d").st_ino);
  CHECK(d.origin_dev == b.stat(2, "d").st_dev);
  CHECK_FALSE(d.top_opaque);
  CHECK(s.find("d/a").layer == 0);
  CHECK(s.find("d/c").layer == 2);
  CHECK(s.find("d/e").layer == 3);
  Found shared = s.find("d/shared");
  CHECK(shared.layer == 2);
  CHECK(s.content(shared) == "2");
}

TEST_CASE("a file below a directory is ignored, and so is all beneath it", "[lookup]") {
  LayerBuilder b(4);
  b.dir(0, "d");
  b.file(0, "d/deep", "0");
  b.file(1, "d", "file");
  b.dir(2, "d");
  b.file(2, "d/x", "2");
  b.dir(3, "d");
  Stack s(b);
  Found d = s.find("d");
  REQUIRE(d.is_dir());
  CHECK(s.layers_of("d") == Layers{3, 2});
  CHECK(d.origin_ino == b.stat(2, "d").st_ino);
  CHECK(s.find("d/x").exists);
  CHECK_FALSE(s.find("d/deep").exists);
}

TEST_CASE("a whiteout below a directory ends the merge", "[lookup]") {
  LayerBuilder b(4);
  b.dir(0, "d");
  b.file(0, "d/deep", "0");
  b.kernel_whiteout(1, "d");
  b.dir(2, "d");
  b.dir(3, "d");
  Stack s(b);
  CHECK(s.layers_of("d") == Layers{3, 2});
  CHECK_FALSE(s.find("d/deep").exists);
  CHECK_FALSE(s.find("d").upper_whiteout);
}

TEST_CASE("xattr-form whiteouts count only in a directory whose opaque xattr is x", "[lookup]") {
  for (const char* prefix : {"trusted", "user"}) {
    INFO(prefix);
    std::string opaque = std::string(prefix) + ".overlay.opaque";
    std::string whiteout = std::string(prefix) + ".overlay.whiteout";
    LayerBuilder b(3);
    b.dir(0, "d");
    b.file(0, "d/gone", "low");
    b.file(0, "d/kept", "low");
    b.file(0, "d/other", "low");
    b.dir(1, "d");
    b.opaque_xattr(1, "d", opaque.c_str(), "x");
    b.xattr_whiteout(1, "d/gone", whiteout.c_str());
    b.file(1, "d/empty", "");  // empty, no whiteout xattr: a plain file
    // Same xattr-form whiteout in a directory not marked "x": a plain empty file.
    b.dir(0, "e");
    b.file(0, "e/gone", "low");
    b.dir(1, "e");
    b.xattr_whiteout(1, "e/gone", whiteout.c_str());
    b.dir(2, "top");
    Stack s(b);
    Found d = s.find("d");
    REQUIRE(d.is_dir());
    CHECK(s.layers_of("d") == Layers{1, 0});  // "x" is not opaque
    CHECK_FALSE(d.top_opaque);
    CHECK(d.parts[0].xwhiteouts);
    CHECK_FALSE(d.parts[1].xwhiteouts);
    CHECK_FALSE(s.find("d/gone").exists);
    CHECK(s.find("d/kept").layer == 0);
    CHECK(s.find("d/empty").layer == 1);
    Found eg = s.find("e/gone");
    CHECK(eg.exists);
    CHECK(eg.layer == 1);
    CHECK(eg.st.st_size == 0);
  }
}

TEST_CASE("root_parts lists every layer's root, topmost first, until an opaque one", "[lookup]") {
  LayerBuilder b(4);
  b.file(0, "low", "0");
  b.file(2, "mid", "2");
  {
    Stack s(b);
    CHECK(s.layers_of("") == Layers{3, 2, 1, 0});
    CHECK(s.find("low").exists);
  }
  b.opaque_xattr(2, "");
  Stack s(b);
  CHECK(s.layers_of("") == Layers{3, 2});
  CHECK_FALSE(s.find("low").exists);
  CHECK(s.find("mid").exists);
}

TEST_CASE("lower_positive: does a layer below the upper hold the name", "[lookup]") {
  LayerBuilder b(3);
  b.file(0, "low", "0");
  b.file(2, "up_only", "2");
  b.file(0, "both", "0");
  b.file(2, "both", "2");
  b.file(0, "hidden", "0");
  b.kernel_whiteout(1, "hidden");
  b.file(0, "oci_hidden", "0");
  b.oci_whiteout(1, "oci_hidden");
  b.kernel_whiteout(0, "wh_only");
  Stack s(b);
  DirParts root = root_parts(s.stack, s.fmt);
  auto pos = [&](const char* n) {
    auto r = lower_positive(s.stack, s.fmt, root, n);
    REQUIRE(r.ok());
    return *r;
  };
  CHECK(pos("low"));
  CHECK_FALSE(pos("up_only"));
  CHECK(pos("both"));
  CHECK_FALSE(pos("hidden"));
  CHECK_FALSE(pos("oci_hidden"));
  CHECK_FALSE(pos("wh_only"));
  CHECK_FALSE(pos("nothing"));
}

TEST_CASE("probe reports errors other than ENOENT", "[lookup]") {
  LayerBuilder b(2);
  Stack s(b);
  DirParts root = root_parts(s.stack, s.fmt);
  auto r = lookup_name(s.stack, s.fmt, root, std::string(NAME_MAX + 1, 'n'));
  CHECK(r.error() == ENAMETOOLONG);
  auto p = probe(s.fmt, root[0], "missing");
  REQUIRE(p.ok());
  CHECK(p->kind == Probe::kAbsent);
}

TEST_CASE("lookup in a read-only stack never reports an upper whiteout", "[lookup]") {
  LayerBuilder b(2);
  b.file(0, "a", "0");
  b.kernel_whiteout(1, "a");
  Stack s(b, WhiteoutMode::kAuto, true);
  Found a = s.find("a");
  CHECK_FALSE(a.exists);
  CHECK_FALSE(a.upper_whiteout);
}

TEST_CASE("a lookup asks a directory's bottom instance for NAME only", "[lookup]") {
  LayerBuilder b(2);
  b.file(0, "d/a", "0");
  b.oci_whiteout(0, "d/b");  // in the bottom instance: there is no b below for it to hide
  b.file(0, "m/x", "0");
  b.file(1, "m/y", "1");
  b.oci_whiteout(1, "m/x");  // hides the bottom's x
  Stack s(b, WhiteoutMode::kAuto, true);
  auto stats = [&](const DirParts& parts, const std::string& name, bool exists) {
    const uint64_t before = sys::stat_at_calls();
    auto r = lookup_name(s.stack, s.fmt, parts, name);
    REQUIRE(r.ok());
    CHECK(r->exists == exists);
    return sys::stat_at_calls() - before;
  };
  const DirParts d = s.parts_of("d");
  REQUIRE(d.size() == 1);
  // One fstatat each: ".wh.NAME" is not asked, and "b" is missing with or without its marker.
  CHECK(stats(d, "none", false) == 1);
  CHECK(stats(d, "b", false) == 1);
  CHECK(stats(d, "a", true) == 1);
  // Above the bottom, the markers are still asked: NAME and .wh.NAME in the top instance.
  const DirParts m = s.parts_of("m");
  REQUIRE(m.size() == 2);
  CHECK(stats(m, "x", false) == 2);
  CHECK(stats(m, "none", false) == 3);
  CHECK(stats(m, "y", true) == 1);
}

TEST_CASE("a name no pending instance holds costs one fstatat per instance", "[lookup][index]") {
  LayerBuilder b(4);
  for (size_t l = 0; l < 4; ++l) b.file(l, "m/f" + std::to_string(l), "x");
  b.file(0, "m/deep", "0");
  for (WhiteoutMode mode : {WhiteoutMode::kAuto, WhiteoutMode::kOverlay}) {
    INFO("mode " << static_cast<int>(mode));
    Stack s(b, mode, true);
    const DirParts root = root_parts(s.stack, s.fmt);
    auto index = DirIndex::build(s.fmt, root);
    REQUIRE(index.ok());
    // Each probe on a fresh lookup of m: no instance's opacity is known yet.
    auto stats = [&](const std::string& name, bool exists) {
      auto m = lookup_name_deferred(s.stack, s.fmt, root, "m", *index);
      REQUIRE(m.ok());
      REQUIRE(m->parts.size() == 1);  // the topmost instance is open, the other three pending
      REQUIRE(m->pending);
      REQUIRE(m->pending->hits.size() == 3);
      const uint64_t before = sys::stat_at_calls();
      auto r = lookup_name_probing(s.stack, s.fmt, m->parts, *m->pending, name);
      REQUIRE(r.ok());
      REQUIRE(r->has_value());
      CHECK((*r)->exists == exists);
      return static_cast<int>(sys::stat_at_calls() - before);
    };
    const bool oci = mode == WhiteoutMode::kAuto;
    // The open instance is asked for NAME (and .wh.NAME), then each pending one for NAME only:
    // what hides what above a name that is nowhere does not matter.
    CHECK(stats("none", false) == (oci ? 2 : 1) + 3);
    // A name in the bottom instance: NAME down to it, then the markers of the two above it
    // (.wh.NAME and .wh..wh..opq with OCI markers read; the opaque xattr is not an fstatat).
    CHECK(stats("deep", true) == (oci ? 2 : 1) + 3 + (oci ? 2 * 2 : 0));
    // In the middle one: the markers of the one instance above it.
    CHECK(stats("f1", true) == (oci ? 2 : 1) + 2 + (oci ? 2 : 0));
  }
}

// The layers and "x" flags of a directory's instances, topmost first.
std::vector<std::pair<size_t, bool>> shape(const DirParts& parts) {
  std::vector<std::pair<size_t, bool>> out;
  for (const LayerDir& d : parts) out.emplace_back(d.layer, d.xwhiteouts);
  return out;
}

// A lookup that defers a directory's lower instances, once they are resolved, finds the same
// instances as probing every layer (`want`), and the index built while resolving them answers
// every name in the directory as probing does.
void check_deferred_agrees(const Stack& s, const DirParts& parts,
                           const std::shared_ptr<const DirIndex>& index, const std::string& name,
                           const Found& want) {
  auto r = lookup_name_deferred(s.stack, s.fmt, parts, name, index);
  REQUIRE(r.ok());
  Found f = std::move(*r);
  if (!want.is_dir()) {
    CHECK_FALSE(f.pending);
    return;
  }
  DirParts all = f.parts;
  std::shared_ptr<const DirIndex> built;
  const DirParts top_parts = f.parts;  // before resolving: the upper and topmost lower only
  if (f.pending) {
    // Only the upper instance and the topmost lower one are open before the first use.
    REQUIRE(!f.parts.empty());
    CHECK(!s.stack.is_upper(f.parts.back().layer));
    CHECK(f.parts.size() <= 2);
    auto res = resolve_lower(s.fmt, f.parts.back(), *f.pending);
    REQUIRE(res.ok());
    all.insert(all.end(), res->rest.begin(), res->rest.end());
    built = res->index;
    REQUIRE(built);
  }
  CHECK(shape(all) == shape(want.parts));
  std::vector<std::string> children = {"none"};
  auto add_children = [&](int dir_fd) {
    auto ents = sys::read_dir(dir_fd);
    REQUIRE(ents.ok());
    // Markers never reach a lookup (UnionFs::find answers them as missing).
    for (const sys::DirEnt& e : *ents) {
      if (!s.fmt.is_reserved_name(e.name)) children.push_back(e.name);
    }
  };
  for (const LayerDir& d : all) add_children(d.get());
  // And the names in instances below the end of the merge (an opaque instance), which a probe
  // of the pending instances meets and must find hidden.
  if (f.pending) {
    const DirParts& above = f.pending->parent_index->parts();
    for (const IndexHit& h : f.pending->hits) {
      if (h.type != DT_DIR) break;
      auto fd = sys::open_at(above[h.part].get(), f.pending->name.c_str(), O_RDONLY | O_DIRECTORY);
      REQUIRE(fd.ok());
      add_children(fd->get());
    }
  }
  if (f.pending) {
    // The same once probes have cached the pending instances' opacity, as when a directory's
    // second lookup resolves what its first probed: resolve_lower takes the cached answers.
    auto again = lookup_name_deferred(s.stack, s.fmt, parts, name, index);
    REQUIRE(again.ok());
    REQUIRE(again->pending);
    // A name that no instance holds is missing whatever hides what: no opacity is read.
    REQUIRE(lookup_name_probing(s.stack, s.fmt, again->parts, *again->pending, "none").ok());
    for (size_t i = 0; i < again->pending->hits.size(); ++i) {
      CHECK_FALSE(again->pending->known_opacity(i).has_value());
    }
    // A file found below the first pending instance had that instance asked whether it hides it.
    const PendingLower& pending = *again->pending;
    const size_t first = pending.parent_index->parts()[pending.hits[0].part].layer;
    for (const std::string& c : children) {
      auto p = lookup_name_probing(s.stack, s.fmt, again->parts, pending, c);
      REQUIRE(p.ok());
      if (*p && (*p)->exists && (*p)->layer < first) CHECK(pending.known_opacity(0).has_value());
    }
    auto res = resolve_lower(s.fmt, again->parts.back(), *again->pending);
    REQUIRE(res.ok());
    DirParts probed_first = again->parts;
    probed_first.insert(probed_first.end(), res->rest.begin(), res->rest.end());
    CHECK(shape(probed_first) == shape(want.parts));
  }
  if (!built) return;
  DirParts lower(all.begin() + (s.stack.is_upper(all.front().layer) ? 1 : 0), all.end());
  CHECK(shape(built->parts()) == shape(lower));
  for (const std::string& c : children) {
    INFO("child " << name << "/" << c);
    auto direct = lookup_name(s.stack, s.fmt, all, c);
    auto indexed = lookup_name(s.stack, s.fmt, all, c, built.get());
    REQUIRE(direct.ok());
    REQUIRE(indexed.ok());
    CHECK(direct->exists == indexed->exists);
    CHECK(direct->layer == indexed->layer);
    CHECK(direct->upper_whiteout == indexed->upper_whiteout);
    if (!f.pending) continue;
    // Probing the pending instances by path (twice: the second time with their opacity
    // cached) answers as probing every opened instance does, or leaves a directory to them.
    for (int pass = 0; pass < 2; ++pass) {
      INFO("probing pass " << pass);
      auto probed = lookup_name_probing(s.stack, s.fmt, top_parts, *f.pending, c);
      REQUIRE(probed.ok());
      if (!probed->has_value()) {
        CHECK(direct->is_dir());
        continue;
      }
      const Found& p = **probed;
      CHECK_FALSE(p.is_dir());
      CHECK(p.exists == direct->exists);
      CHECK(p.upper_whiteout == direct->upper_whiteout);
      if (!p.exists || !direct->exists) continue;
      CHECK(p.layer == direct->layer);
      CHECK(p.st.st_ino == direct->st.st_ino);
      CHECK(p.origin_ino == direct->origin_ino);
      // A lower file is left where it is (opened on use), an upper one opened.
      CHECK(static_cast<bool>(p.fd) == s.stack.is_upper(p.layer));
      CHECK(static_cast<bool>(p.at) == !s.stack.is_upper(p.layer));
    }
  }
}

// The directory index answers exactly as probing every layer does.
void check_index_agrees(const Stack& s, const DirParts& parts,
                        const std::vector<std::string>& names) {
  DirParts lower;
  for (const LayerDir& d : parts) {
    if (!s.stack.is_upper(d.layer)) lower.push_back(d);
  }
  auto index = DirIndex::build(s.fmt, lower);
  REQUIRE(index.ok());
  REQUIRE(*index);
  for (const std::string& name : names) {
    INFO("name " << name);
    auto direct = lookup_name(s.stack, s.fmt, parts, name);
    auto indexed = lookup_name(s.stack, s.fmt, parts, name, index->get());
    REQUIRE(direct.ok());
    REQUIRE(indexed.ok());
    const Found& a = *direct;
    const Found& b = *indexed;
    CHECK(a.exists == b.exists);
    CHECK(a.upper_whiteout == b.upper_whiteout);
    if (!a.exists || !b.exists) continue;
    CHECK(a.layer == b.layer);
    CHECK(a.st.st_ino == b.st.st_ino);
    CHECK(a.st.st_mode == b.st.st_mode);
    CHECK(a.top_opaque == b.top_opaque);
    CHECK(a.origin_dev == b.origin_dev);
    CHECK(a.origin_ino == b.origin_ino);
    std::vector<size_t> la, lb;
    std::vector<bool> xa, xb;
    for (const LayerDir& d : a.parts) la.push_back(d.layer), xa.push_back(d.xwhiteouts);
    for (const LayerDir& d : b.parts) lb.push_back(d.layer), xb.push_back(d.xwhiteouts);
    CHECK(la == lb);
    CHECK(xa == xb);
    CHECK(static_cast<bool>(a.fd) == static_cast<bool>(b.fd));
    CHECK(static_cast<bool>(a.at) == static_cast<bool>(b.at));
    if (!a.is_dir()) CHECK(static_cast<bool>(a.fd) == s.stack.is_upper(a.layer));
    check_deferred_agrees(s, parts, *index, name, a);
  }
}

TEST_CASE("lookup through the directory index agrees with probing every layer", "[lookup][index]") {
  LayerBuilder b(4);  // l3 is the upper
  b.file(0, "a", "0");
  b.file(1, "a", "1");
  b.file(0, "b", "0");
  b.kernel_whiteout(1, "b");
  b.file(0, "c", "0");
  b.oci_whiteout(1, "c");
  b.file(0, "d/x0", "0");
  b.file(1, "d/x1", "1");
  b.file(2, "d/x2", "2");
  b.file(2, "d/x0", "2");
  b.kernel_whiteout(2, "d/x1");
  b.file(1, "e/under", "1");
  b.dir(2, "e");
  b.opaque_xattr(2, "e");
  b.file(0, "f/under", "0");
  b.dir(1, "f");
  b.oci_whiteout(1, "f");
  b.dir(0, "g");
  b.file(1, "g", "file");
  b.dir(2, "g");
  b.file(0, "h", "0");
  b.kernel_whiteout(3, "h");
  b.dir(0, "i");
  b.dir(2, "i");
  b.dir(3, "i");
  b.dir(0, "j");
  b.file(3, "j", "3");
  b.dir(1, "k");
  b.file(1, "k/under", "1");
  b.dir(2, "k");
  b.oci_opaque(2, "k");
  b.symlink(0, "m", "a");
  b.kernel_whiteout(0, "n");
  b.dir(1, "o");
  b.opaque_xattr(1, "o", "trusted.overlay.opaque", "x");
  b.xattr_whiteout(1, "o/gone");
  b.file(0, "o/gone", "0");
  b.file(0, "o/kept", "0");
  b.dir(0, "o");
  b.oci_whiteout(2, "p");
  b.oci_whiteout(3, "q");
  b.file(0, "q", "0");
  b.dir(0, "r");
  b.oci_whiteout(0, "r");  // a lone OCI whiteout beside its own name in the bottom layer
  // Merged directories whose merge ends below their topmost lower instance, so that a
  // deferred lookup resolves the end itself: an opaque xattr, an OCI opaque marker, an OCI
  // whiteout beside the name, a non-directory, a whiteout, each in the middle layer.
  b.file(0, "s/under", "0");
  b.file(1, "s/mid", "1");
  b.opaque_xattr(1, "s");
  b.file(2, "s/top", "2");
  b.file(0, "t/under", "0");
  b.file(1, "t/mid", "1");
  b.oci_opaque(1, "t");
  b.file(2, "t/top", "2");
  b.file(0, "u/under", "0");
  b.file(1, "u/mid", "1");
  b.oci_whiteout(1, "u");
  b.file(2, "u/top", "2");
  b.file(0, "v", "0");
  b.file(1, "v/mid", "1");
  b.file(2, "v/top", "2");
  b.file(0, "w/under", "0");
  b.kernel_whiteout(1, "w");
  b.file(2, "w/top", "2");
  b.file(0, "y/under", "0");
  b.file(1, "y/mid", "1");
  b.file(2, "y/top", "2");
  b.file(3, "y/up", "3");
  // Children of a directory merged over every layer, decided in its deeper (pending) instances:
  // hidden by a kernel or an OCI whiteout, found, a directory, shadowed; and one whose middle
  // instance is an "x" directory (an xattr whiteout, and an empty file that is not one).
  b.file(0, "z/a0", "0");
  b.kernel_whiteout(1, "z/a0");
  b.file(0, "z/b0", "0");
  b.oci_whiteout(1, "z/b0");
  b.file(1, "z/c1", "1");
  b.file(1, "z/d1/in", "1");
  b.file(0, "z/e0", "0");
  b.file(1, "z/e0", "1");
  b.file(0, "z/f0", "0");
  b.file(2, "z/top", "2");
  b.file(3, "z/up", "3");
  b.kernel_whiteout(3, "z/f0");
  b.dir(0, "z/g0");  // a directory below an OCI whiteout in a pending instance
  b.oci_whiteout(1, "z/g0");
  b.dir(0, "s/gone");  // and below an opaque one
  b.file(0, "t/gone/in", "0");
  b.file(0, "zx/gone", "0");
  b.file(0, "zx/kept", "0");
  b.dir(1, "zx");
  b.opaque_xattr(1, "zx", "trusted.overlay.opaque", "x");
  b.xattr_whiteout(1, "zx/gone");
  b.file(1, "zx/empty", "");
  b.file(2, "zx/top", "2");
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k",
                                          "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w",
                                          "y", "z", "zx", "missing"};
  for (WhiteoutMode mode : {WhiteoutMode::kAuto, WhiteoutMode::kOverlay}) {
    INFO("mode " << static_cast<int>(mode));
    Stack s(b, mode);
    check_index_agrees(s, root_parts(s.stack, s.fmt), names);
    check_index_agrees(s, s.parts_of("d"), {"x0", "x1", "x2", "none"});
    check_index_agrees(s, s.parts_of("o"), {"gone", "kept", "none"});
    check_index_agrees(s, s.parts_of("e"), {"under"});
  }
  // And in a read-only stack, where every layer is indexed.
  Stack ro(b, WhiteoutMode::kAuto, true);
  check_index_agrees(ro, root_parts(ro.stack, ro.fmt), names);
}

}  // namespace
}  // namespace unionfs
