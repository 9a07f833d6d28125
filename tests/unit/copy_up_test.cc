// Copy-up through UnionFs (copy_up.c): data with its holes, xattrs, mode, owner, times,
// symlinks, special files and directories, parents first; the lower instance never changes.
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

TEST_CASE("a read-only open does not copy up, a write open does, lower unchanged",
          "[union][copyup]") {
  Union u(3);
  u.b.file(0, "d/e/f", "hello world");
  u.start();
  CHECK(u.read("d/e/f") == "hello world");
  CHECK_FALSE(u.b.exists(2, "d"));
  u.write("d/e/f", "J", 0);
  CHECK(u.read("d/e/f") == "Jello world");
  CHECK(u.b.read(2, "d/e/f") == "Jello world");
  CHECK(u.b.read(0, "d/e/f") == "hello world");
  // Through a second lookup of the same name too.
  u.fs->forget(u.at("d/e/f"), 2);
  CHECK(u.read("d/e/f") == "Jello world");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("O_TRUNC copies up and truncates only the upper", "[union][copyup]") {
  Union u(2);
  u.b.file(0, "f", "lower data");
  u.start();
  auto fd = u.fs->open(u.at("f"), O_RDONLY | O_TRUNC);
  REQUIRE(fd.ok());
  CHECK(u.b.stat(1, "f").st_size == 0);
  CHECK(u.attr("f").st_size == 0);
  CHECK(u.read("f") == "");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("copy-up keeps data, holes, mode, times, owner and user xattrs", "[union][copyup]") {
  Union u(2);
  const off_t tail_at = 8 << 20;
  u.b.sparse_file(0, "sparse", "head", tail_at, "tail");
  u.b.file(0, "f", std::string(100000, 'q') + "end", 0751);
  u.b.xattr(0, "f", "user.color", "blue");
  u.b.xattr(0, "f", "user.empty", "");
  u.b.owner(0, "f", 1234, 5678);
  u.b.times(0, "f", 1000000000, 123456789);
  u.start();
  u.write("sparse", "H", 0);
  u.write("f", "Q", 0);

  struct stat low = u.b.stat(0, "sparse"), up = u.b.stat(1, "sparse");
  CHECK(up.st_size == tail_at + 4);
  CHECK(up.st_size == low.st_size);
  INFO("upper st_blocks " << up.st_blocks << ", lower " << low.st_blocks);
  CHECK(up.st_blocks <= 64);  // two small extents, not 8 MiB
  std::string data = u.read("sparse");
  REQUIRE(data.size() == static_cast<size_t>(tail_at + 4));
  CHECK(data.substr(0, 4) == "Head");
  CHECK(data.substr(tail_at, 4) == "tail");
  CHECK(data.find_first_not_of('\0', 4) == static_cast<size_t>(tail_at));

  struct stat f = u.b.stat(1, "f");
  CHECK((f.st_mode & 07777) == 0751);
  CHECK(f.st_uid == 1234u);
  CHECK(f.st_gid == 5678u);
  CHECK(f.st_size == 100003);
  CHECK(u.b.read(1, "f") == "Q" + std::string(99999, 'q') + "end");
  CHECK(test::get_xattr(u.b.path(1, "f"), "user.color") == "blue");
  CHECK(test::get_xattr(u.b.path(1, "f"), "user.empty") == "");
  auto through = u.fs->getxattr(u.at("f"), "user.color");
  REQUIRE(through.ok());
  CHECK(*through == "blue");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("copy_up itself keeps the mtime to the nanosecond", "[union][copyup]") {
  Union u(2);
  u.b.file(0, "f", "data", 0640);
  u.b.times(0, "f", 1000000000, 123456789);
  u.start();
  Inode& f = u.at("f");
  REQUIRE(u.fs->copy_up(f).ok());
  struct stat up = u.b.stat(1, "f");
  CHECK(up.st_mtim.tv_sec == 1000000000);
  CHECK(up.st_mtim.tv_nsec == 123456789);
  CHECK((up.st_mode & 07777) == 0640);
  struct stat through = *u.fs->getattr(f);
  CHECK(through.st_mtim.tv_sec == 1000000000);
  CHECK(through.st_mtim.tv_nsec == 123456789);
  // A second copy-up is a no-op.
  REQUIRE(u.fs->copy_up(f).ok());
  CHECK(u.b.stat(1, "f").st_ino == up.st_ino);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("copy-up of a symlink keeps its target, owner and mtime", "[union][copyup]") {
  Union u(2);
  u.b.symlink(0, "link", "../some/where/else");
  u.b.owner(0, "link", 1111, 2222);
  u.b.times(0, "link", 1100000000, 5);
  u.start();
  Inode& l = u.at("link");
  REQUIRE(u.fs->copy_up(l).ok());
  struct stat up = u.b.stat(1, "link");
  REQUIRE(S_ISLNK(up.st_mode));
  char buf[256];
  ssize_t n = ::readlink(u.b.path(1, "link").c_str(), buf, sizeof(buf));
  CHECK(std::string(buf, n < 0 ? 0 : static_cast<size_t>(n)) == "../some/where/else");
  CHECK(up.st_uid == 1111u);
  CHECK(up.st_gid == 2222u);
  CHECK(up.st_mtim.tv_sec == 1100000000);
  CHECK(up.st_mtim.tv_nsec == 5);
  auto target = u.fs->readlink(l);
  REQUIRE(target.ok());
  CHECK(*target == "../some/where/else");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("chown of a lower symlink copies it up and changes only the copy", "[union][copyup]") {
  Union u(2);
  u.b.symlink(0, "link", "target");
  u.start();
  SetAttr a;
  a.set_uid = true;
  a.uid = 4321;
  auto st = u.fs->setattr(u.at("link"), a, -1);
  REQUIRE(st.ok());
  CHECK(st->st_uid == 4321u);
  CHECK(S_ISLNK(st->st_mode));
  CHECK(u.b.stat(1, "link").st_uid == 4321u);
  CHECK(u.b.stat(0, "link").st_uid == 0u);
  CHECK(*u.fs->readlink(u.at("link")) == "target");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("copy-up of a fifo and of a directory keeps mode, owner, times and xattrs",
          "[union][copyup]") {
  Union u(2);
  REQUIRE(::mkfifo(u.b.path(0, "fifo").c_str(), 0640) == 0);
  u.b.dir(0, "d", 0705);
  u.b.file(0, "d/child", "c");
  u.b.xattr(0, "d", "user.tag", "dir");
  u.b.owner(0, "d", 77, 88);
  u.b.times(0, "d", 1200000000, 42);
  u.start();
  REQUIRE(u.fs->copy_up(u.at("fifo")).ok());
  struct stat fifo = u.b.stat(1, "fifo");
  CHECK(S_ISFIFO(fifo.st_mode));
  CHECK((fifo.st_mode & 07777) == 0640);

  REQUIRE(u.fs->copy_up(u.at("d")).ok());
  struct stat d = u.b.stat(1, "d");
  CHECK(S_ISDIR(d.st_mode));
  CHECK((d.st_mode & 07777) == 0705);
  CHECK(d.st_uid == 77u);
  CHECK(d.st_gid == 88u);
  CHECK(d.st_mtim.tv_sec == 1200000000);
  CHECK(d.st_mtim.tv_nsec == 42);
  CHECK(test::get_xattr(u.b.path(1, "d"), "user.tag") == "dir");
  CHECK_FALSE(u.b.exists(1, "d/child"));  // a directory copy-up copies no children
  CHECK(u.names("d") == Names{"child"});
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("copy-up creates the parents and restores their times", "[union][copyup]") {
  Union u(2);
  u.b.file(0, "a/b/f", "x");
  u.b.dir(0, "a/b", 0750);
  u.b.times(0, "a/b", 1300000000, 7);
  u.b.times(0, "a", 1300000001, 8);
  u.start();
  u.write("a/b/f", "y");
  struct stat b = u.b.stat(1, "a/b"), a = u.b.stat(1, "a");
  CHECK((b.st_mode & 07777) == 0750);
  CHECK(b.st_mtim.tv_sec == 1300000000);
  CHECK(b.st_mtim.tv_nsec == 7);
  CHECK(a.st_mtim.tv_sec == 1300000001);
  CHECK(a.st_mtim.tv_nsec == 8);
  CHECK(u.attr("a/b").st_mtim.tv_sec == 1300000000);
  // No temporary names left behind.
  CHECK(test::manifest(u.b.layer(1)).size() == 4);  // ., a, a/b, a/b/f
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("chmod, truncate and setxattr copy up first", "[union][copyup]") {
  Union u(2);
  u.b.file(0, "f", "0123456789", 0644);
  u.b.dir(0, "d", 0755);
  u.start();
  SetAttr a;
  a.set_mode = true;
  a.mode = 0600;
  REQUIRE(u.fs->setattr(u.at("d"), a, -1).ok());
  CHECK((u.b.stat(1, "d").st_mode & 07777) == 0600);
  SetAttr t;
  t.set_size = true;
  t.size = 3;
  auto st = u.fs->setattr(u.at("f"), t, -1);
  REQUIRE(st.ok());
  CHECK(st->st_size == 3);
  CHECK(u.b.read(1, "f") == "012");
  REQUIRE(u.fs->setxattr(u.at("f"), "user.k", "v", 0).ok());
  CHECK(test::get_xattr(u.b.path(1, "f"), "user.k") == "v");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("copy-up keeps set-user-ID and set-group-ID bits with the owner", "[union][copyup]") {
  Union u(2);
  u.b.file(0, "suid", "x", 04755);
  u.b.owner(0, "suid", 1234, 5678);
  REQUIRE(::chmod(u.b.path(0, "suid").c_str(), 06755) == 0);  // lchown cleared the bits
  u.b.dir(0, "sgid");
  u.b.owner(0, "sgid", 10, 20);
  REQUIRE(::chmod(u.b.path(0, "sgid").c_str(), 02775) == 0);
  u.start(kPriv);
  u.write("suid", "y");
  struct stat f = u.b.stat(1, "suid");
  CHECK((f.st_mode & 07777) == 06755);
  CHECK(f.st_uid == 1234u);
  CHECK(f.st_gid == 5678u);
  REQUIRE(u.fs->copy_up(u.at("sgid")).ok());
  struct stat d = u.b.stat(1, "sgid");
  CHECK((d.st_mode & 07777) == 02775);
  CHECK(d.st_gid == 20u);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("create without O_EXCL on a lower file opens it, O_TRUNC empties only the upper",
          "[union][copyup]") {
  Union u(2);
  u.b.file(0, "f", "lower content");
  u.start();
  auto c = u.fs->create(u.fs->root(), "f", 0644, O_WRONLY | O_CREAT | O_TRUNC, kRoot);
  REQUIRE(c.ok());
  REQUIRE(::write(c->fd.get(), "new", 3) == 3);
  CHECK(u.read("f") == "new");
  CHECK(u.b.read(1, "f") == "new");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("truncate to zero of a lower file", "[union][copyup]") {
  Union u(2);
  u.b.file(0, "f", "lower content", 0640);
  u.b.times(0, "f", 1000000000, 0);
  u.start();
  SetAttr t;
  t.set_size = true;
  t.size = 0;
  auto st = u.fs->setattr(u.at("f"), t, -1);
  REQUIRE(st.ok());
  CHECK(st->st_size == 0);
  CHECK(u.read("f") == "");
  CHECK((u.b.stat(1, "f").st_mode & 07777) == 0640);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("copy-up to an upper on another filesystem", "[union][copyup][mount]") {
  Union u(2);
  test::TmpfsMount m(u.b.layer(1), false);
  if (!m.ok()) {
    WARN("cannot mount a tmpfs here; skipped");
    return;
  }
  const off_t tail_at = 8 << 20;
  u.b.sparse_file(0, "sparse", "head", tail_at, "tail");
  u.b.file(0, "d/f", "data", 0604);
  u.b.xattr(0, "d/f", "user.k", "v");
  u.b.times(0, "d/f", 1000000000, 999);
  u.start();
  uint64_t ino = u.attr("d/f").st_ino;
  CHECK(ino == u.b.stat(0, "d/f").st_ino);
  u.write("d/f", "D");
  u.write("sparse", "H");
  CHECK(u.b.read(1, "d/f") == "Data");
  CHECK((u.b.stat(1, "d/f").st_mode & 07777) == 0604);
  CHECK(u.b.stat(1, "d/f").st_mtim.tv_nsec != 999);  // written after the copy-up
  CHECK(test::get_xattr(u.b.path(1, "d/f"), "user.k") == "v");
  CHECK(u.attr("d/f").st_ino == ino);
  CHECK(u.entry("d", "f").ino == ino);
  struct stat up = u.b.stat(1, "sparse");
  CHECK(up.st_size == tail_at + 4);
  std::string data = u.read("sparse");
  REQUIRE(data.size() == static_cast<size_t>(tail_at + 4));
  CHECK(data.substr(0, 4) == "Head");
  CHECK(data.substr(tail_at, 4) == "tail");
  CHECK(data.find_first_not_of('\0', 4) == static_cast<size_t>(tail_at));
  CHECK_LOWERS_UNCHANGED(u);
}

// copy_file_range gives EXDEV across filesystems; the user-space fallback must still copy only
// the data extents (a 4-byte extent + 8 MiB hole + 4-byte extent is 16 sectors, not 136).
TEST_CASE("copy-up to an upper on another filesystem keeps holes",
          "[union][copyup][mount]") {
  Union u(2);
  test::TmpfsMount m(u.b.layer(1), false);
  if (!m.ok()) {
    WARN("cannot mount a tmpfs here; skipped");
    return;
  }
  const off_t tail_at = 8 << 20;
  u.b.sparse_file(0, "sparse", "head", tail_at, "tail");
  u.start();
  u.write("sparse", "H");
  struct stat up = u.b.stat(1, "sparse");
  INFO("upper st_blocks " << up.st_blocks << " (512-byte units)");
  CHECK(up.st_blocks <= 16);  // two 4 KiB pages
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("utimens of a lower symlink and removexattr of a lower file change only copies",
          "[union][copyup]") {
  Union u(2);
  u.b.symlink(0, "ln", "t");
  u.b.file(0, "f", "f");
  u.b.xattr(0, "f", "user.a", "1");
  u.b.xattr(0, "f", "user.b", "2");
  u.start();
  SetAttr a;
  a.set_mtime = true;
  a.mtime = {1234567890, 42};
  auto st = u.fs->setattr(u.at("ln"), a, -1);
  REQUIRE(st.ok());
  CHECK(st->st_mtim.tv_sec == 1234567890);
  CHECK(st->st_mtim.tv_nsec == 42);
  CHECK(u.b.stat(1, "ln").st_mtim.tv_sec == 1234567890);
  REQUIRE(u.fs->removexattr(u.at("f"), "user.a").ok());
  auto names = u.fs->listxattr(u.at("f"));
  REQUIRE(names.ok());
  CHECK(*names == std::vector<std::string>{"user.b"});
  CHECK(u.fs->removexattr(u.at("f"), "user.a").error() == ENODATA);
  CHECK(test::get_xattr(u.b.path(0, "f"), "user.a") == "1");
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("a lower file unlinked while the kernel holds it is not brought back by a copy-up",
          "[union][copyup]") {
  Union u(2);
  u.b.file(0, "f", "lower");
  UnionFs& fs = u.start();
  auto e = fs.lookup(fs.root(), "f");
  REQUIRE(e.ok());
  REQUIRE(fs.unlink(fs.root(), "f").ok());
  SetAttr a;
  a.set_mode = true;
  a.mode = 0600;
  CHECK(fs.setattr(*e->inode, a, -1).error() == ENOENT);  // an open fd's fchmod, say
  CHECK(fs.lookup(fs.root(), "f").error() == ENOENT);
  struct stat st{};
  REQUIRE(::lstat((u.b.layer(1) + "/f").c_str(), &st) == 0);
  CHECK(is_kernel_whiteout(st));
  fs.forget(*e->inode, 1);
  CHECK_LOWERS_UNCHANGED(u);
}

TEST_CASE("with a workdir, copy-up and whiteout swaps build their temporaries there",
          "[union][copyup][mount]") {
  Union u(2);
  u.b.file(0, "d/f", "lower");
  u.b.file(0, "gone/x", "lower");
  const std::string work = u.b.root() + "/work";
  REQUIRE(::mkdir(work.c_str(), 0700) == 0);
  SECTION("a workdir on the upper's filesystem is used and left empty") {
    u.start();
    u.fs = std::make_unique<UnionFs>(LayerStack::open(u.b.spec(), false), kPriv,
                                     UniqueFd(::open(work.c_str(), O_RDONLY | O_DIRECTORY)));
    u.write("d/f", "upper", 0);  // copies up d (a temporary directory) and f
    REQUIRE(u.fs->unlink(u.at("gone"), "x").ok());
    REQUIRE(u.fs->rmdir(u.fs->root(), "gone").ok());
    REQUIRE(u.fs->mkdir(u.fs->root(), "gone", 0755, kRoot).ok());  // over the whiteout
    CHECK(u.b.read(1, "d/f") == "upper");
    CHECK(test::manifest(work).size() == 1);  // only the workdir itself
  }
  SECTION("a workdir elsewhere makes the rename fail: proof that it is the one used") {
    test::TmpfsMount m(work, false);
    if (!m.ok()) {
      WARN("cannot mount a tmpfs here; skipped");
      return;
    }
    u.start();
    u.fs = std::make_unique<UnionFs>(LayerStack::open(u.b.spec(), false), kPriv,
                                     UniqueFd(::open(work.c_str(), O_RDONLY | O_DIRECTORY)));
    auto d = u.fs->lookup(u.fs->root(), "d");
    REQUIRE(d.ok());
    CHECK(u.fs->copy_up(*d->inode).error() == EXDEV);
    CHECK_FALSE(u.b.exists(1, "d"));
  }
  CHECK_LOWERS_UNCHANGED(u);
}

}  // namespace
}  // namespace unionfs
