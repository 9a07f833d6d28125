// UnionFs on temporary layer directories, without a mount: merged listings, whiteouts,
// namespace changes, identity (st_ino) and errors. Every mutating test ends by checking that
// the lower layers are unchanged (DESIGN.md invariant 1).
#include "core/union_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/union_fixture.h"

namespace unionfs {
namespace {

using namespace unionfs::test;  // NOLINT: the fixture's helpers

TEST_CASE("list merges the layers and hides whiteouts, markers and internal names",
          "[union][readdir]") {
  Union u(3);
  u.b.file(0, "a", "a0");
  u.b.file(0, "b", "b0");
  u.b.file(0, "wk", "k0");
  u.b.file(0, "wo", "o0");
  u.b.dir(0, "d");
  u.b.file(0, "d/x", "x0");
  u.b.file(0, "d/gone", "g0");
  u.b.file(1, "c", "c1");
  u.b.kernel_whiteout(1, "wk");
  u.b.oci_whiteout(1, "wo");
  u.b.dir(1, "d");
  u.b.file(1, "d/y", "y1");
  u.b.opaque_xattr(1, "d", "trusted.overlay.opaque", "x");
  u.b.xattr_whiteout(1, "d/gone");
  u.b.file(2, "e", "e2");
  u.b.kernel_whiteout(2, "b");
  u.b.file(2, std::string(kTempPrefix) + "99.1", "tmp");
  u.b.dir(2, std::string(kTempPrefix) + "99.2");
  u.b.kernel_whiteout(0, "bottom_wh");  // a whiteout with nothing below: still not shown
  SECTION("kAuto") {
    u.start(kPriv);
    CHECK(u.names("") == Names{"a", "c", "d", "e"});
    CHECK(u.names("d") == Names{"x", "y"});
    CHECK(u.entry("", "d").type == DT_DIR);
    CHECK(u.entry("", "a").type == DT_REG);
    CHECK(u.lookup_error("b") == ENOENT);
    CHECK(u.lookup_error("wk") == ENOENT);
    CHECK(u.lookup_error("wo") == ENOENT);
    CHECK(u.lookup_error(".wh.wo") == ENOENT);
    CHECK(u.lookup_error("d/gone") == ENOENT);
    CHECK(u.lookup_error("bottom_wh") == ENOENT);
    CHECK(u.lookup_error(std::string(kTempPrefix) + "99.1") == ENOENT);
    CHECK(u.lookup_error(std::string(kTempPrefix) + "99.2") == ENOENT);
    CHECK(u.read("a") == "a0");
    CHECK(u.read("d/y") == "y1");
  }
  SECTION("kOverlay shows OCI names as plain files") {
    u.start(kOverlayOpts);
    CHECK(u.names("") == Names{".wh.wo", "a", "c", "d", "e", "wo"});
    CHECK(u.read("wo") == "o0");
    CHECK(u.read(".wh.wo") == "");
    CHECK(u.lookup_error(std::string(kTempPrefix) + "99.1") == ENOENT);
  }
}

TEST_CASE("list hides the OCI opaque marker and honours it", "[union][readdir]") {
  Union u(3);
  u.b.dir(0, "d");
  u.b.file(0, "d/low", "l");
  u.b.dir(1, "d");
  u.b.oci_opaque(1, "d");
  u.b.file(1, "d/mid", "m");
  u.start(kPriv);
  CHECK(u.names("d") == Names{"mid"});
  CHECK(u.lookup_error("d/.wh..wh..opq") == ENOENT);
  CHECK(u.lookup_error("d/low") == ENOENT);
}

TEST_CASE("lookup errors: ENOENT, ENOTDIR, ENAMETOOLONG", "[union]") {
  Union u(2);
  u.b.file(0, "f", "f");
  u.start();
  CHECK(u.lookup_error("missing") == ENOENT);
  CHECK(u.fs->lookup(u.at("f"), "x").error() == ENOTDIR);
  CHECK(u.fs->list(u.at("f")).error() == ENOTDIR);
  CHECK(u.lookup_error(std::string(NAME_MAX + 1, 'n')) == ENAMETOOLONG);
  CHECK(u.lookup_error(std::string(NAME_MAX, 'n')) == ENOENT);
}

TEST_CASE("overlay xattrs are neither shown nor settable", "[union][xattr]") {
  Union u(2);
  u.b.dir(0, "d");
  u.b.opaque_xattr(0, "d", "trusted.overlay.opaque", "y");
  u.b.xattr(0, "d", "user.visible", "1");
  u.b.xattr(0, "d", "user.overlay.opaque", "y");
  u.start();
  Inode& d = u.at("d");
  auto names = u.fs->listxattr(d);
  REQUIRE(names.ok());
  CHECK(*names == std::vector<std::string>{"user.visible"});
  CHECK(u.fs->getxattr(d, "trusted.overlay.opaque").error() == EOPNOTSUPP);
  CHECK(u.fs->setxattr(d, "trusted.overlay.opaque", "n", 0).error() == EOPNOTSUPP);
  CHECK(u.fs->setxattr(d, "user.overlay.foo", "n", 0).error() == EOPNOTSUPP);
  CHECK(u.fs->removexattr(d, "user.overlay.opaque").error() == EOPNOTSUPP);
  CHECK_FALSE(u.b.exists(1, "d"));  // refused before any copy-up
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("create writes a new file in the upper, parents copied up", "[union][create]") {
  Union u(2);
  u.b.dir(0, "d", 0751);
  u.b.file(0, "d/old", "o");
  u.start();
  u.create("d", "new", "fresh", 0640);
  CHECK(u.b.read(1, "d/new") == "fresh");
  CHECK((u.b.stat(1, "d/new").st_mode & 07777) == 0640);
  CHECK((u.b.stat(1, "d").st_mode & 07777) == 0751);
  CHECK(u.names("d") == Names{"new", "old"});
  CHECK(u.read("d/new") == "fresh");
  auto again = u.fs->create(u.at("d"), "new", 0644, O_WRONLY | O_CREAT | O_EXCL, kRoot);
  CHECK(again.error() == EEXIST);
  auto old = u.fs->create(u.at("d"), "old", 0644, O_WRONLY | O_CREAT | O_EXCL, kRoot);
  CHECK(old.error() == EEXIST);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("create over a whiteout replaces it and does not resurrect the lower file",
          "[union][create]") {
  for (Options o : {kPriv, kOciOpts}) {
    INFO("write_oci " << (o.whiteout == WhiteoutMode::kOci));
    Union u(2);
    u.b.file(0, "f", "lower");
    u.start(o);
    REQUIRE(u.fs->unlink(u.fs->root(), "f").ok());
    CHECK(u.lookup_error("f") == ENOENT);
    u.create("", "f", "new");
    CHECK(u.read("f") == "new");
    CHECK(u.names("") == Names{"f"});
    CHECK(u.b.read(1, "f") == "new");
    CHECK_LOWERS_UNCHANGED(u);
  }
}

TEST_CASE("mkdir, symlink and mknod create in the upper", "[union][create]") {
  Union u(2);
  u.b.dir(0, "d");
  u.start();
  auto m = u.fs->mkdir(u.at("d"), "sub", 0710, kRoot);
  REQUIRE(m.ok());
  CHECK(S_ISDIR(m->attr.st_mode));
  CHECK((u.b.stat(1, "d/sub").st_mode & 07777) == 0710);
  auto s = u.fs->symlink("t/a/r", u.at("d"), "ln", kRoot);
  REQUIRE(s.ok());
  CHECK(S_ISLNK(s->attr.st_mode));
  CHECK(*u.fs->readlink(*s->inode) == "t/a/r");
  auto n = u.fs->mknod(u.at("d"), "p", S_IFIFO | 0600, 0, kRoot);
  REQUIRE(n.ok());
  CHECK(S_ISFIFO(u.b.stat(1, "d/p").st_mode));
  CHECK(u.names("d") == Names{"ln", "p", "sub"});
  CHECK(u.fs->mkdir(u.at("d"), "sub", 0755, kRoot).error() == EEXIST);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("new objects belong to the caller when privileged", "[union][create]") {
  Union u(2);
  u.start(kPriv);
  Caller who{3000, 4000};
  auto c = u.fs->create(u.fs->root(), "f", 0644, O_WRONLY | O_CREAT, who);
  REQUIRE(c.ok());
  CHECK(u.b.stat(1, "f").st_uid == 3000u);
  CHECK(u.b.stat(1, "f").st_gid == 4000u);
  REQUIRE(u.fs->mkdir(u.fs->root(), "d", 0755, who).ok());
  CHECK(u.b.stat(1, "d").st_uid == 3000u);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("name length limits: ENAMETOOLONG", "[union][create]") {
  Union u(2);
  SECTION("kernel format: NAME_MAX") {
    u.start(kPriv);
    std::string n256(NAME_MAX + 1, 'n'), n255(NAME_MAX, 'n');
    CHECK(u.fs->create(u.fs->root(), n256, 0644, O_WRONLY | O_CREAT, kRoot).error() ==
          ENAMETOOLONG);
    CHECK(u.fs->mkdir(u.fs->root(), n256, 0755, kRoot).error() == ENAMETOOLONG);
    CHECK(u.fs->symlink("t", u.fs->root(), n256, kRoot).error() == ENAMETOOLONG);
    CHECK(u.fs->unlink(u.fs->root(), n256).error() == ENAMETOOLONG);
    CHECK(u.fs->create(u.fs->root(), n255, 0644, O_WRONLY | O_CREAT, kRoot).ok());
    CHECK(u.b.exists(1, n255));
    CHECK(u.fs->statfs()->f_namemax == NAME_MAX);
  }
  SECTION("OCI format leaves room for .wh.") {
    u.start(kOciOpts);
    CHECK(u.fs->create(u.fs->root(), std::string(252, 'n'), 0644, O_WRONLY | O_CREAT, kRoot)
              .error() == ENAMETOOLONG);
    CHECK(u.fs->create(u.fs->root(), std::string(251, 'n'), 0644, O_WRONLY | O_CREAT, kRoot).ok());
    CHECK(u.fs->statfs()->f_namemax == NAME_MAX - 4);
  }
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("marker and internal names cannot be created, except .wh. in kOverlay",
          "[union][create]") {
  Union u(2);
  const std::string tmp = std::string(kTempPrefix) + "1.1";
  SECTION("kAuto and kOci refuse .wh. names") {
    for (Options o : {kPriv, kUnpriv, kOciOpts}) {
      Union v(2);
      v.start(o);
      Inode& root = v.fs->root();
      CHECK(v.fs->create(root, ".wh.x", 0644, O_WRONLY | O_CREAT, kRoot).error() == EINVAL);
      CHECK(v.fs->create(root, ".wh..wh..opq", 0644, O_WRONLY | O_CREAT, kRoot).error() == EINVAL);
      CHECK(v.fs->mkdir(root, ".wh.x", 0755, kRoot).error() == EINVAL);
      CHECK(v.fs->symlink("t", root, ".wh.x", kRoot).error() == EINVAL);
      CHECK(v.fs->mknod(root, ".wh.x", S_IFIFO | 0600, 0, kRoot).error() == EINVAL);
      CHECK(v.fs->create(root, tmp, 0644, O_WRONLY | O_CREAT, kRoot).error() == EINVAL);
      CHECK_FALSE(v.b.exists(1, ".wh.x"));
    }
  }
  SECTION("kOverlay allows .wh. names but not internal ones") {
    u.start(kOverlayOpts);
    Inode& root = u.fs->root();
    auto c = u.fs->create(root, ".wh.x", 0644, O_WRONLY | O_CREAT, kRoot);
    REQUIRE(c.ok());
    CHECK(u.b.exists(1, ".wh.x"));
    CHECK(u.names("") == Names{".wh.x"});
    CHECK(u.fs->create(root, tmp, 0644, O_WRONLY | O_CREAT, kRoot).error() == EINVAL);
    u.b.file(1, tmp + "x", "internal");
    CHECK(u.lookup_error(tmp + "x") == ENOENT);
    CHECK(u.names("") == Names{".wh.x"});
  }
}

TEST_CASE("temporary names in any layer are never listed", "[union][readdir]") {
  Union u(2);
  u.b.file(0, std::string(kTempPrefix) + "5.5", "low");
  u.b.file(1, std::string(kTempPrefix) + "6.6", "up");
  u.b.file(1, "visible", "v");
  for (Options o : {kPriv, kOverlayOpts, kOciOpts}) {
    u.start(o);
    CHECK(u.names("") == Names{"visible"});
    CHECK(u.lookup_error(std::string(kTempPrefix) + "5.5") == ENOENT);
  }
}

TEST_CASE("unlink of a lower file leaves a whiteout in the write format", "[union][whiteout]") {
  struct Case {
    Options opts;
    bool kernel;
  };
  for (Case c :
       {Case{kPriv, true}, Case{kOverlayOpts, true}, Case{{WhiteoutMode::kOverlay, false}, true},
        Case{kOciOpts, false}, Case{kUnpriv, false}}) {
    INFO("mode " << static_cast<int>(c.opts.whiteout) << " privileged " << c.opts.privileged);
    Union u(2);
    u.b.file(0, "f", "lower");
    u.b.file(0, "keep", "k");
    u.start(c.opts);
    REQUIRE(u.fs->unlink(u.fs->root(), "f").ok());
    CHECK(u.lookup_error("f") == ENOENT);
    CHECK(u.names("") == Names{"keep"});
    if (c.kernel) {
      CHECK(is_kernel_wh(u.b, 1, "f"));
      CHECK_FALSE(u.b.exists(1, ".wh.f"));
    } else {
      CHECK_FALSE(u.b.exists(1, "f"));
      REQUIRE(u.b.exists(1, ".wh.f"));
      CHECK(S_ISREG(u.b.stat(1, ".wh.f").st_mode));
      CHECK(u.b.stat(1, ".wh.f").st_size == 0);
    }
    CHECK(u.fs->unlink(u.fs->root(), "f").error() == ENOENT);
    CHECK_LOWERS_UNCHANGED(u);
  }
}

TEST_CASE("unlink of an upper-only file leaves no whiteout, of a copied-up one it does",
          "[union][whiteout]") {
  Union u(2);
  u.b.file(0, "low", "l");
  u.b.file(1, "up", "u");
  u.start(kPriv);
  REQUIRE(u.fs->unlink(u.fs->root(), "up").ok());
  CHECK_FALSE(u.b.exists(1, "up"));
  u.write("low", "L");
  REQUIRE(u.b.exists(1, "low"));
  REQUIRE(u.fs->unlink(u.fs->root(), "low").ok());
  CHECK(is_kernel_wh(u.b, 1, "low"));
  CHECK(u.names("").empty());
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("unlink and rmdir check the type", "[union][whiteout]") {
  Union u(2);
  u.b.file(0, "f", "f");
  u.b.dir(0, "d");
  u.start();
  CHECK(u.fs->unlink(u.fs->root(), "d").error() == EISDIR);
  CHECK(u.fs->rmdir(u.fs->root(), "f").error() == ENOTDIR);
  CHECK(u.fs->rmdir(u.fs->root(), "missing").error() == ENOENT);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("rmdir of a non-empty merged directory is ENOTEMPTY", "[union][whiteout]") {
  Union u(3);
  u.b.file(0, "d/low", "l");
  u.b.dir(1, "d");
  u.b.dir(2, "d");
  u.b.dir(0, "e");
  u.b.file(1, "e/mid", "m");
  u.start();
  CHECK(u.fs->rmdir(u.fs->root(), "d").error() == ENOTEMPTY);
  CHECK(u.fs->rmdir(u.fs->root(), "e").error() == ENOTEMPTY);
  CHECK(u.names("d") == Names{"low"});
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("rmdir of a merged directory emptied by whiteouts, then mkdir: opaque",
          "[union][whiteout]") {
  struct Case {
    Options opts;
    bool kernel;
  };
  for (Case c : {Case{kPriv, true}, Case{kOciOpts, false}, Case{kUnpriv, false}}) {
    INFO("mode " << static_cast<int>(c.opts.whiteout) << " privileged " << c.opts.privileged);
    Union u(3);
    u.b.file(0, "d/x", "x");
    u.b.file(1, "d/y", "y");
    u.b.file(0, "d/sub/z", "z");
    u.start(c.opts);
    REQUIRE(u.fs->unlink(u.at("d"), "x").ok());
    REQUIRE(u.fs->unlink(u.at("d"), "y").ok());
    CHECK(u.fs->rmdir(u.fs->root(), "d").error() == ENOTEMPTY);
    REQUIRE(u.fs->unlink(u.at("d/sub"), "z").ok());
    REQUIRE(u.fs->rmdir(u.at("d"), "sub").ok());
    CHECK(u.names("d").empty());
    REQUIRE(u.fs->rmdir(u.fs->root(), "d").ok());
    CHECK(u.lookup_error("d") == ENOENT);
    CHECK(u.names("").empty());
    if (c.kernel) {
      CHECK(is_kernel_wh(u.b, 2, "d"));
    } else {
      CHECK(u.b.exists(2, ".wh.d"));
      CHECK_FALSE(u.b.exists(2, "d"));
    }

    auto m = u.fs->mkdir(u.fs->root(), "d", 0755, kRoot);
    REQUIRE(m.ok());
    CHECK(u.names("d").empty());
    CHECK(u.lookup_error("d/x") == ENOENT);
    CHECK(u.lookup_error("d/sub") == ENOENT);
    REQUIRE(S_ISDIR(u.b.stat(2, "d").st_mode));
    if (c.kernel) {
      CHECK(test::get_xattr(u.b.path(2, "d"), "trusted.overlay.opaque") == "y");
    } else {
      CHECK(u.b.exists(2, "d/.wh..wh..opq"));
    }
    u.create("d", "new", "n");
    CHECK(u.names("d") == Names{"new"});
    // And the opacity holds for a fresh union over the same layers.
    u.start(c.opts);
    CHECK(u.names("d") == Names{"new"});
    CHECK(u.names("").size() == 1);
    CHECK_LOWERS_UNCHANGED(u);
  }
}

TEST_CASE("link of a lower file copies it up, both names are one inode", "[union][link]") {
  Union u(2);
  u.b.file(0, "f", "data");
  u.start();
  Inode& f = u.at("f");
  uint64_t ino = u.fs->getattr(f)->st_ino;
  auto l = u.fs->link(f, u.fs->root(), "hl");
  REQUIRE(l.ok());
  CHECK(l->inode == &f);
  CHECK(l->attr.st_nlink == 2u);
  CHECK(l->attr.st_ino == ino);
  CHECK(u.fs->getattr(f)->st_nlink == 2u);
  CHECK(u.attr("hl").st_ino == ino);
  CHECK(u.b.stat(1, "f").st_ino == u.b.stat(1, "hl").st_ino);
  CHECK(u.b.stat(0, "f").st_nlink == 1u);
  CHECK(u.entry("", "hl").ino == ino);
  CHECK(u.entry("", "f").ino == ino);
  // Writes through one name show through the other.
  u.write("hl", "D");
  CHECK(u.read("f") == "Data");
  // Unlinking one name keeps the other, and its identity.
  REQUIRE(u.fs->unlink(u.fs->root(), "f").ok());
  CHECK(u.attr("hl").st_ino == ino);
  CHECK(u.attr("hl").st_nlink == 1u);
  CHECK(u.fs->link(u.at("hl"), u.fs->root(), "hl").error() == EEXIST);
  CHECK(u.fs->link(u.at(""), u.fs->root(), "x").error() == EPERM);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("st_ino is stable across copy-up", "[union][ino]") {
  Union u(3);
  u.b.file(0, "d/f", "data");
  u.b.dir(1, "d");
  u.start();
  Inode& f = u.at("d/f");
  Inode& d = u.at("d");
  uint64_t f_ino = u.fs->getattr(f)->st_ino, d_ino = u.fs->getattr(d)->st_ino;
  CHECK(f_ino == u.b.stat(0, "d/f").st_ino);
  CHECK(d_ino == u.b.stat(1, "d").st_ino);  // a merged directory: its topmost lower instance
  u.write("d/f", "D");
  REQUIRE(u.b.exists(2, "d/f"));
  REQUIRE(u.b.stat(2, "d/f").st_ino != f_ino);
  CHECK(u.fs->getattr(f)->st_ino == f_ino);
  CHECK(u.fs->getattr(d)->st_ino == d_ino);
  // After the kernel forgets it, a new lookup still gives the same number.
  u.fs->forget(f, f.nlookup.load());
  CHECK(u.attr("d/f").st_ino == f_ino);
  CHECK(u.entry("d", "f").ino == f_ino);
  // A fresh union over the same layers: st_ino is only promised for one mount's life, but
  // the directory's number comes from its topmost lower instance and so holds.
  u.start();
  CHECK(u.attr("d").st_ino == d_ino);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("st_ino from list() equals getattr's", "[union][ino]") {
  Union u(3);
  u.b.file(0, "lowfile", "l");
  u.b.file(2, "upfile", "u");
  u.b.file(0, "copied", "c");
  u.b.dir(0, "merged");
  u.b.dir(1, "merged");
  u.b.dir(2, "merged");
  u.b.dir(0, "lowdir");
  u.b.dir(1, "middir");
  u.b.dir(2, "updir");
  u.b.symlink(1, "ln", "lowfile");
  u.b.dir(0, "hidden_merge");
  u.b.kernel_whiteout(1, "hidden_merge");
  u.b.dir(2, "hidden_merge");
  u.b.file(0, "shadowed", "0");
  u.b.file(1, "shadowed", "1");
  u.start();
  u.write("copied", "C");
  REQUIRE(u.fs->link(u.at("lowfile"), u.at("updir"), "hardlink").ok());
  auto check_dir = [&](const std::string& dir) {
    for (const DirEntry& e : u.list(dir)) {
      std::string p = dir.empty() ? e.name : dir + "/" + e.name;
      INFO(p);
      struct stat st = u.attr(p);
      CHECK(e.ino == st.st_ino);
      CHECK(e.type == IFTODT(st.st_mode));
    }
  };
  check_dir("");
  check_dir("updir");
  CHECK(u.names("").size() == 10);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("a read-only stack refuses every change with EROFS", "[union][ro]") {
  Union u(2);
  u.b.file(0, "f", "f");
  u.b.file(1, "g", "g");
  u.b.dir(1, "d");
  u.start(kPriv, true);
  Inode& root = u.fs->root();
  CHECK(u.read("f") == "f");
  CHECK(u.names("") == Names{"d", "f", "g"});
  CHECK(u.fs->create(root, "n", 0644, O_WRONLY | O_CREAT, kRoot).error() == EROFS);
  CHECK(u.fs->mkdir(root, "n", 0755, kRoot).error() == EROFS);
  CHECK(u.fs->mknod(root, "n", S_IFIFO | 0600, 0, kRoot).error() == EROFS);
  CHECK(u.fs->symlink("t", root, "n", kRoot).error() == EROFS);
  CHECK(u.fs->link(u.at("g"), root, "n").error() == EROFS);
  CHECK(u.fs->unlink(root, "g").error() == EROFS);
  CHECK(u.fs->rmdir(root, "d").error() == EROFS);
  CHECK(u.rename("", "g", "", "h").error() == EROFS);
  CHECK(u.fs->open(u.at("g"), O_WRONLY).error() == EROFS);
  CHECK(u.fs->open(u.at("g"), O_RDONLY | O_TRUNC).error() == EROFS);
  SetAttr a;
  a.set_mode = true;
  a.mode = 0600;
  CHECK(u.fs->setattr(u.at("g"), a, -1).error() == EROFS);
  CHECK(u.fs->setxattr(u.at("g"), "user.x", "1", 0).error() == EROFS);
  CHECK(u.fs->copy_up(u.at("d")).error() == EROFS);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("mknod of a char device 0/0 is refused (it would read back as a whiteout)",
          "[union][create]") {
  Union u(2);
  u.start();
  CHECK(u.fs->mknod(u.fs->root(), "c", S_IFCHR | 0600, makedev(0, 0), kRoot).error() == EPERM);
  CHECK_FALSE(u.b.exists(1, "c"));
  auto ok = u.fs->mknod(u.fs->root(), "null", S_IFCHR | 0600, makedev(1, 3), kRoot);
  REQUIRE(ok.ok());
  CHECK(u.names("") == Names{"null"});
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("a name made over an OCI whiteout drops the .wh. file and hides the lower",
          "[union][whiteout]") {
  Union u(2);
  u.b.file(0, "f", "lower");
  u.b.file(0, "d/old", "o");
  u.start(kOciOpts);
  REQUIRE(u.fs->unlink(u.fs->root(), "f").ok());
  REQUIRE(u.fs->unlink(u.at("d"), "old").ok());
  REQUIRE(u.fs->rmdir(u.fs->root(), "d").ok());
  REQUIRE(u.b.exists(1, ".wh.f"));
  REQUIRE(u.b.exists(1, ".wh.d"));
  u.create("", "f", "new");
  REQUIRE(u.fs->mkdir(u.fs->root(), "d", 0755, kRoot).ok());
  CHECK_FALSE(u.b.exists(1, ".wh.f"));
  CHECK_FALSE(u.b.exists(1, ".wh.d"));
  CHECK(u.b.exists(1, "d/.wh..wh..opq"));
  CHECK(u.read("f") == "new");
  CHECK(u.names("d").empty());
  // Removing them again brings the whiteouts back.
  REQUIRE(u.fs->unlink(u.fs->root(), "f").ok());
  REQUIRE(u.fs->rmdir(u.fs->root(), "d").ok());
  CHECK(u.b.exists(1, ".wh.f"));
  CHECK(u.b.exists(1, ".wh.d"));
  CHECK_FALSE(u.b.exists(1, "f"));
  CHECK_FALSE(u.b.exists(1, "d"));
  CHECK(u.names("").empty());
  u.start(kOciOpts);
  CHECK(u.names("").empty());
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("lower hard links break on copy-up like overlayfs without index", "[union][link]") {
  Union u(2);
  u.b.file(0, "a", "shared");
  REQUIRE(::link(u.b.path(0, "a").c_str(), u.b.path(0, "b").c_str()) == 0);
  u.start();
  uint64_t ino_a = u.attr("a").st_ino, ino_b = u.attr("b").st_ino;
  CHECK(ino_a == u.b.stat(0, "a").st_ino);
  CHECK(ino_b == ino_a);
  CHECK(u.at("a").st_ino == u.at("b").st_ino);
  CHECK(&u.at("a") != &u.at("b"));  // one inode per name
  u.write("a", "S");
  CHECK(u.read("a") == "Shared");
  CHECK(u.read("b") == "shared");
  CHECK(u.b.read(0, "a") == "shared");
  // Identity after the copy-up: as overlayfs, the copy reports its own number; in any case
  // list() and getattr agree, and the other name keeps the lower number.
  CHECK(u.attr("b").st_ino == ino_b);
  CHECK(u.entry("", "a").ino == u.attr("a").st_ino);
  CHECK(u.entry("", "b").ino == u.attr("b").st_ino);
  CHECK(u.attr("a").st_ino != u.attr("b").st_ino);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("link, symlink and mknod over a kernel whiteout replace it", "[union][create]") {
  Union u(2);
  u.b.file(0, "a", "A");
  u.b.file(0, "b", "B");
  u.b.file(0, "c", "C");
  u.b.file(0, "p", "P");
  u.start(kPriv);
  for (const char* n : {"b", "c", "p"}) REQUIRE(u.fs->unlink(u.fs->root(), n).ok());
  REQUIRE(is_kernel_wh(u.b, 1, "b"));
  auto l = u.fs->link(u.at("a"), u.fs->root(), "b");
  REQUIRE(l.ok());
  CHECK(u.read("b") == "A");
  CHECK(l->attr.st_nlink == 2u);
  auto sl = u.fs->symlink("target", u.fs->root(), "c", kRoot);
  REQUIRE(sl.ok());
  CHECK(*u.fs->readlink(u.at("c")) == "target");
  REQUIRE(u.fs->mknod(u.fs->root(), "p", S_IFIFO | 0600, 0, kRoot).ok());
  CHECK(S_ISFIFO(u.attr("p").st_mode));
  CHECK(u.names("") == Names{"a", "b", "c", "p"});
  CHECK(S_ISREG(u.b.stat(1, "b").st_mode));
  CHECK(S_ISLNK(u.b.stat(1, "c").st_mode));
  CHECK(S_ISFIFO(u.b.stat(1, "p").st_mode));
  CHECK_LOWERS_UNCHANGED(u);
}

// Open descriptors of this process.
size_t open_fds() {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n += !e.path().empty();
  return n;
}

TEST_CASE("a lookup of a deep merged directory opens only its top instances; its first use the rest",
          "[union][index]") {
  constexpr size_t kLower = 12;
  Union u(kLower + 1);
  for (size_t i = 0; i < kLower; ++i) u.b.file(i, "d/f" + std::to_string(i), "x");
  u.b.file(kLower, "d/up", "u");  // the upper holds an instance too
  u.b.file(0, "other", "o");
  u.start(kPriv);
  CHECK(u.fs->root().index() != nullptr);  // built at mount
  const size_t before = open_fds();
  Inode& d = u.at("d");
  // The upper instance and the topmost lower one, whatever the depth.
  CHECK(open_fds() - before <= 2);
  CHECK(u.attr("d").st_nlink == 1u);  // merged, as overlayfs reports it
  // Its first lookups ask the deeper instances by path, without opening them; a missing name
  // is answered the same way.
  CHECK(u.lookup_error("d/none") == ENOENT);
  for (size_t i = 0; i + 1 < UnionFs::kProbeLookups; ++i) {
    CHECK(u.read("d/f" + std::to_string(i)) == "x");
  }
  CHECK(open_fds() - before <= 2 + (UnionFs::kProbeLookups - 1));  // the files read keep theirs
  CHECK(d.state().pending != nullptr);
  CHECK(d.index() == nullptr);
  // Then the directory is used enough: the next lookup opens the others, once, and indexes
  // them: every name resolves.
  for (size_t i = 0; i < kLower; ++i) CHECK(u.read("d/f" + std::to_string(i)) == "x");
  CHECK(open_fds() - before >= kLower + 1);
  CHECK(d.state().pending == nullptr);
  CHECK(d.index() != nullptr);
  CHECK(u.names("d").size() == kLower + 1);
  // A new lookup of the same directory (the kernel forgot and asked again) reuses them.
  const size_t resolved = open_fds();
  REQUIRE(u.fs->lookup(u.fs->root(), "d").ok());
  CHECK(u.lookup_error("d/none") == ENOENT);
  CHECK(open_fds() == resolved);
  CHECK_LOWERS_UNCHANGED(u);
}


TEST_CASE("a directory with one lower instance is indexed once its lookups would pay for it",
          "[union][index]") {
  Union u(2);
  for (int i = 0; i < 40; ++i) u.b.file(0, "small/f" + std::to_string(i), "s");
  for (int i = 0; i < 2000; ++i) u.b.file(0, "big/f" + std::to_string(i), "");
  u.start(kPriv);
  Inode& small = u.at("small");
  // Probed directly at first: a lookup of a huge directory never reads all of it.
  for (uint32_t i = 1; i < UnionFs::kSingleIndexAfterLookups; ++i) {
    CHECK(u.lookup_error("small/none" + std::to_string(i)) == ENOENT);
  }
  CHECK(small.index() == nullptr);
  // The next lookup reads its 40 entries: less than kEntriesPerLookup per lookup made.
  CHECK(u.read("small/f7") == "s");
  REQUIRE(small.index() != nullptr);
  CHECK(small.index()->size() == 40u);
  // The upper is still asked first: names made and removed through the union after the
  // index was built are seen.
  u.create("small", "new", "n");
  REQUIRE(u.fs->unlink(small, "f3").ok());
  CHECK(u.read("small/new") == "n");
  CHECK(u.lookup_error("small/f3") == ENOENT);
  CHECK(u.read("small/f4") == "s");
  CHECK(u.lookup_error("small/none") == ENOENT);

  // 2,000 entries are worth reading from 2000 / kEntriesPerLookup = 125 lookups on. A read
  // that stops early (at lookups 4, 8, ..., 64: at most 16 entries per lookup made, and past
  // what the directory's size shows) goes on from there after twice the lookups, so that the
  // 128th lookup completes it and no entry is read twice.
  static_assert(UnionFs::kSingleIndexAfterLookups == 4 && UnionFs::kEntriesPerLookup == 16);
  Inode& big = u.at("big");
  auto miss = [&](uint32_t i) { CHECK(u.lookup_error("big/none" + std::to_string(i)) == ENOENT); };
  const uint64_t read_before = sys::dir_entries_read();
  for (uint32_t i = 1; i <= 127; ++i) miss(i);
  CHECK(big.index() == nullptr);
  const uint64_t read_early = sys::dir_entries_read() - read_before;
  CHECK(read_early > 64 * UnionFs::kEntriesPerLookup);  // the 64th lookup read that many
  CHECK(read_early < 2000);
  miss(128);
  REQUIRE(big.index() != nullptr);
  CHECK(big.index()->size() == 2000u);
  CHECK(sys::dir_entries_read() - read_before == 2000);
  CHECK(u.attr("big/f1999").st_size == 0);
  CHECK(u.attr("big/f0").st_size == 0);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("a lookup whose index build fails answers by probing", "[union][index]") {
#if defined(__SANITIZE_ADDRESS__)
  // The sanitizers' runtime needs descriptors of its own (UBSan checks with a pipe that the
  // memory it reports on is readable): with none left it reports errors that are not there.
  // The build without sanitizers runs this test.
  WARN("skipped under the sanitizers: the test uses up every file descriptor");
  return;
#endif
  Union u(2);
  for (int i = 0; i < 40; ++i) u.b.file(0, "small/f" + std::to_string(i), "s");
  u.start(kPriv);
  Inode& small = u.at("small");
  for (uint32_t i = 1; i < UnionFs::kSingleIndexAfterLookups; ++i) {
    CHECK(u.lookup_error("small/none" + std::to_string(i)) == ENOENT);
  }
  // The next lookup would read the directory, which needs a descriptor: with none left
  // (EMFILE), the lookup still answers, by probing, and the index is built later.
  struct rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  int highest = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    highest = std::max(highest, std::stoi(e.path().filename().string()));
  }
  struct Restore {
    rlimit r;
    ~Restore() { ::setrlimit(RLIMIT_NOFILE, &r); }
  } restore{saved};
  struct rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(highest) + 1;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<UniqueFd> filler;  // takes the free numbers below the limit
  for (int fd; (fd = ::dup(0)) >= 0;) filler.emplace_back(fd);
  REQUIRE(errno == EMFILE);
  auto hit = u.fs->lookup(small, "f7");
  auto miss = u.fs->lookup(small, "none");
  filler.clear();
  ::setrlimit(RLIMIT_NOFILE, &saved);
  REQUIRE(hit.ok());
  CHECK(hit->attr.st_size == 1);
  u.fs->forget(*hit->inode, 1);
  CHECK_FALSE(miss.ok());
  CHECK(miss.error() == ENOENT);
  CHECK(small.index() == nullptr);
  // Tried again after twice the lookups (the 8th), as after a read given up on.
  for (int i = 10; i < 13; ++i) CHECK(u.read("small/f" + std::to_string(i)) == "s");
  CHECK(small.index() != nullptr);
}

TEST_CASE("a file found by probing a deep directory opens by its path from the grandparent",
          "[union][lookup]") {
  constexpr size_t kLower = 6;
  Union u(kLower + 1);
  for (size_t i = 0; i < kLower; ++i) u.b.file(i, "d/f" + std::to_string(i), "v" + std::to_string(i));
  u.start(kPriv);
  Inode& d = u.at("d");
  const size_t before = open_fds();
  // The first lookup in d probes its pending instances by path ("d/f0" from layer 0's root)
  // and finds f0 in the bottom one; the open goes the same way, and opens nothing else.
  Inode& f0 = u.at("d/f0");
  REQUIRE(f0.state().at);
  CHECK(f0.state().at->rel == "d/f0");
  bool in_lower = false;
  auto fd = u.fs->open(f0, O_RDONLY, &in_lower);
  REQUIRE(fd.ok());
  CHECK(d.state().pending != nullptr);
  CHECK(in_lower);
  CHECK(read_fd(fd->get()) == "v0");
  CHECK(open_fds() == before + 1);  // the caller's descriptor only
  fd->reset();
  // It follows its copy-up as any lower file does.
  u.write("d/f0", "W");
  CHECK(u.read("d/f0") == "W0");
  CHECK(u.b.read(0, "d/f0") == "v0");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("a lower file holds no descriptor until an operation needs one", "[union][lookup]") {
  Union u(3);
  for (int i = 0; i < 40; ++i) u.b.file(0, "d/f" + std::to_string(i), "data" + std::to_string(i));
  u.b.file(1, "d/f1", "mid");  // a shadowed name: the middle layer's
  u.b.symlink(0, "d/link", "f0");
  u.b.xattr(0, "d/f2", "user.note", "kept");
  u.start(kPriv);
  // Enough lookups in d for its instances to be opened and indexed, then count.
  for (int i = 30; i < 40; ++i) (void)u.at("d/f" + std::to_string(i));
  const size_t before = open_fds();
  for (int i = 0; i < 30; ++i) {
    struct stat st = u.attr("d/f" + std::to_string(i));  // lookup + getattr by path
    CHECK(st.st_size == static_cast<off_t>(std::string(i == 1 ? "mid" : "data" + std::to_string(i)).size()));
  }
  CHECK(open_fds() == before);
  // Opening one for reading opens it by name in its layer: the descriptor is the caller's, and
  // the inode keeps none (no O_PATH open and reopen through /proc/self/fd).
  CHECK(u.read("d/f1") == "mid");
  CHECK(u.read("d/f3") == "data3");
  CHECK(open_fds() == before);
  bool in_lower = false;
  auto rd = u.fs->open(u.at("d/f4"), O_RDONLY, &in_lower);
  REQUIRE(rd.ok());
  CHECK(in_lower);
  CHECK(read_fd(rd->get()) == "data4");
  rd->reset();
  // Other operations that need the object open it then, and keep it with the inode.
  auto target = u.fs->readlink(u.at("d/link"));
  REQUIRE(target.ok());
  CHECK(*target == "f0");
  auto note = u.fs->getxattr(u.at("d/f2"), "user.note");
  REQUIRE(note.ok());
  CHECK(*note == "kept");
  CHECK(open_fds() == before + 2);
  // A copy-up starts from a file not opened yet, and the inode follows the copy.
  Inode& f5 = u.at("d/f5");
  const ino_t ino = u.attr("d/f5").st_ino;
  u.write("d/f5", "DATA");
  CHECK(u.read("d/f5") == "DATA5");
  CHECK(u.attr("d/f5").st_ino == ino);
  CHECK(&u.at("d/f5") == &f5);
  CHECK(u.b.exists(2, "d/f5"));
  CHECK_LOWERS_UNCHANGED(u);
}

}  // namespace
}  // namespace unionfs
