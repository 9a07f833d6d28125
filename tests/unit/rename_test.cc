// rename through UnionFs with overlayfs's rules (ovl_rename): files move with a whiteout left
// behind, lower and merged directories give EXDEV, NOREPLACE and EXCHANGE.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "core/union_fs.h"
#include "tests/unit/union_fixture.h"

namespace unionfs {
namespace {

using namespace unionfs::test;  // NOLINT: the fixture's helpers

TEST_CASE("rename of a lower file moves it and leaves a whiteout at the source",
          "[union][rename]") {
  struct Case {
    Options opts;
    bool kernel;
  };
  for (Case c : {Case{kPriv, true}, Case{kOciOpts, false}}) {
    INFO("mode " << static_cast<int>(c.opts.whiteout));
    Union u(2);
    u.b.file(0, "a", "content of a");
    u.b.dir(0, "dir");
    u.start(c.opts);
    REQUIRE(u.rename("", "a", "dir", "b").ok());
    CHECK(u.lookup_error("a") == ENOENT);
    CHECK(u.read("dir/b") == "content of a");
    CHECK(u.names("") == Names{"dir"});
    CHECK(u.names("dir") == Names{"b"});
    CHECK(u.b.read(1, "dir/b") == "content of a");
    if (c.kernel) {
      CHECK(is_kernel_wh(u.b, 1, "a"));
    } else {
      CHECK(u.b.exists(1, ".wh.a"));
      CHECK_FALSE(u.b.exists(1, "a"));
    }
    CHECK_LOWERS_UNCHANGED(u);
  }
}

TEST_CASE("rename over an existing lower file replaces it", "[union][rename]") {
  Union u(2);
  u.b.file(0, "a", "A");
  u.b.file(0, "b", "B");
  u.start();
  REQUIRE(u.rename("", "a", "", "b").ok());
  CHECK(u.read("b") == "A");
  CHECK(u.names("") == Names{"b"});
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("rename of a lower or merged directory is EXDEV", "[union][rename]") {
  Union u(2);
  u.b.file(0, "low/f", "f");
  u.b.file(0, "merged/f", "f");
  u.b.file(1, "merged/g", "g");
  u.start();
  CHECK(u.rename("", "low", "", "low2").error() == EXDEV);
  CHECK(u.rename("", "merged", "", "merged2").error() == EXDEV);
  // A lower directory copied up is merged too.
  REQUIRE(u.fs->copy_up(u.at("low")).ok());
  CHECK(u.rename("", "low", "", "low2").error() == EXDEV);
  CHECK(u.names("") == Names{"low", "merged"});
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("rename of an upper-only directory moves its children", "[union][rename]") {
  Union u(2);
  u.b.dir(0, "lowdir");
  u.b.file(0, "lowdir/l", "l");
  u.start();
  REQUIRE(u.fs->mkdir(u.fs->root(), "up", 0755, kRoot).ok());
  u.create("up", "child", "c");
  REQUIRE(u.rename("", "up", "lowdir", "moved").ok());
  CHECK(u.lookup_error("up") == ENOENT);
  CHECK(u.names("lowdir") == Names{"l", "moved"});
  CHECK(u.names("lowdir/moved") == Names{"child"});
  CHECK(u.read("lowdir/moved/child") == "c");
  CHECK(u.b.read(1, "lowdir/moved/child") == "c");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("an upper directory renamed over a deleted lower directory hides its children",
          "[union][rename]") {
  Union u(2);
  u.b.file(0, "old/secret", "s");
  u.start(kPriv);
  REQUIRE(u.fs->unlink(u.at("old"), "secret").ok());
  REQUIRE(u.fs->rmdir(u.fs->root(), "old").ok());
  REQUIRE(u.fs->mkdir(u.fs->root(), "new", 0755, kRoot).ok());
  REQUIRE(u.rename("", "new", "", "old").ok());
  CHECK(u.names("old").empty());
  CHECK(u.lookup_error("old/secret") == ENOENT);
  CHECK(u.names("") == Names{"old"});
  u.start(kPriv);
  CHECK(u.names("old").empty());
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("RENAME_NOREPLACE onto an existing name is EEXIST", "[union][rename]") {
  Union u(2);
  u.b.file(0, "a", "A");
  u.b.file(0, "b", "B");
  u.b.file(1, "c", "C");
  u.start();
  CHECK(u.rename("", "a", "", "b", RENAME_NOREPLACE).error() == EEXIST);
  CHECK(u.rename("", "c", "", "b", RENAME_NOREPLACE).error() == EEXIST);
  CHECK(u.rename("", "b", "", "c", RENAME_NOREPLACE).error() == EEXIST);
  CHECK(u.read("b") == "B");
  CHECK(u.read("c") == "C");
  REQUIRE(u.rename("", "a", "", "new", RENAME_NOREPLACE).ok());
  CHECK(u.read("new") == "A");
  CHECK(u.names("") == Names{"b", "c", "new"});
  CHECK(u.rename("", "missing", "", "x").error() == ENOENT);
  CHECK(u.rename("", "b", "", "c", RENAME_NOREPLACE | RENAME_EXCHANGE).error() == EINVAL);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("RENAME_EXCHANGE swaps a lower and an upper file", "[union][rename]") {
  Union u(2);
  u.b.file(0, "a", "lower A");
  u.b.file(1, "b", "upper B");
  u.b.file(0, "lonely", "l");
  u.start();
  uint64_t ino_a = u.attr("a").st_ino, ino_b = u.attr("b").st_ino;
  REQUIRE(u.rename("", "a", "", "b", RENAME_EXCHANGE).ok());
  CHECK(u.read("a") == "upper B");
  CHECK(u.read("b") == "lower A");
  // Identity follows the object.
  CHECK(u.attr("a").st_ino == ino_b);
  CHECK(u.attr("b").st_ino == ino_a);
  CHECK(u.names("") == Names{"a", "b", "lonely"});
  CHECK(u.rename("", "a", "", "nothing", RENAME_EXCHANGE).error() == ENOENT);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("rename of a lower file away and back restores it", "[union][rename]") {
  for (Options o : {kPriv, kOciOpts}) {
    INFO("mode " << static_cast<int>(o.whiteout));
    Union u(2);
    u.b.file(0, "a", "A");
    u.start(o);
    REQUIRE(u.rename("", "a", "", "b").ok());
    REQUIRE(u.rename("", "b", "", "a").ok());
    CHECK(u.read("a") == "A");
    CHECK(u.names("") == Names{"a"});
    CHECK(u.lookup_error("b") == ENOENT);
    CHECK_FALSE(u.b.exists(1, "b"));
    CHECK_FALSE(u.b.exists(1, ".wh.b"));
    CHECK_FALSE(u.b.exists(1, ".wh.a"));
    u.start(o);
    CHECK(u.names("") == Names{"a"});
    CHECK_LOWERS_UNCHANGED(u);
  }
}

TEST_CASE("an opaque upper directory can be renamed, both names keep the lower hidden",
          "[union][rename]") {
  for (Options o : {kPriv, kOciOpts}) {
    INFO("mode " << static_cast<int>(o.whiteout));
    Union u(2);
    u.b.file(0, "d/old", "o");
    u.start(o);
    REQUIRE(u.fs->unlink(u.at("d"), "old").ok());
    REQUIRE(u.fs->rmdir(u.fs->root(), "d").ok());
    REQUIRE(u.fs->mkdir(u.fs->root(), "d", 0755, kRoot).ok());
    u.create("d", "new", "n");
    REQUIRE(u.rename("", "d", "", "e").ok());
    CHECK(u.names("") == Names{"e"});
    CHECK(u.names("e") == Names{"new"});
    CHECK(u.lookup_error("d") == ENOENT);
    u.start(o);
    CHECK(u.names("") == Names{"e"});
    CHECK(u.names("e") == Names{"new"});
    CHECK_LOWERS_UNCHANGED(u);
  }
}

TEST_CASE("rename of an upper file over a lower directory is EISDIR, the reverse ENOTDIR",
          "[union][rename]") {
  Union u(2);
  u.b.dir(0, "dir");
  u.b.file(1, "file", "f");
  u.b.file(0, "full/x", "x");
  u.start();
  CHECK(u.rename("", "file", "", "dir").error() == EISDIR);
  REQUIRE(u.fs->mkdir(u.fs->root(), "updir", 0755, kRoot).ok());
  CHECK(u.rename("", "updir", "", "file").error() == ENOTDIR);
  CHECK(u.rename("", "updir", "", "full").error() == ENOTEMPTY);
  // Onto an empty lower directory it works, and the directory stays empty.
  REQUIRE(u.rename("", "updir", "", "dir").ok());
  CHECK(u.names("dir").empty());
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("RENAME_EXCHANGE of an upper directory and a lower file", "[union][rename]") {
  Union u(2);
  u.b.file(0, "f", "lower f");
  u.b.dir(0, "ld");
  u.start();
  REQUIRE(u.fs->mkdir(u.fs->root(), "d", 0755, kRoot).ok());
  u.create("d", "child", "c");
  REQUIRE(u.rename("", "d", "", "f", RENAME_EXCHANGE).ok());
  CHECK(u.read("d") == "lower f");
  CHECK(u.names("f") == Names{"child"});
  CHECK(u.names("") == Names{"d", "f", "ld"});
  // A lower directory cannot be exchanged.
  CHECK(u.rename("", "ld", "", "d", RENAME_EXCHANGE).error() == EXDEV);
  CHECK_LOWERS_UNCHANGED(u);
}

}  // namespace
}  // namespace unionfs
