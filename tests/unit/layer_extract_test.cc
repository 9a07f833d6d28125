// Layer extraction: every entry type with its metadata, holes, hard links, whiteouts and opaque
// markers in both formats; and bad archives, each refused with a clear message and nothing
// written outside the target directory.
#include "core/layer_extract.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tar_fixture.h"

namespace unionfs {
namespace {

using test::Ent;

struct Extracted {
  int error = 0;
  std::string why;
  ExtractStats stats;
};

// Writes `ents` as a tar and extracts it into the new directory `dir`.
Extracted extract(const std::string& dir, const std::vector<Ent>& ents,
                  WhiteoutMode mode = WhiteoutMode::kAuto, bool privileged = test::is_root()) {
  test::write_tar(dir + ".tar", ents);
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  UniqueFd tarfd(::open((dir + ".tar").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  struct stat st {};
  REQUIRE(::fstat(tarfd.get(), &st) == 0);
  FileRange range(tarfd.get(), 0, static_cast<uint64_t>(st.st_size));
  TarReader tar(range);
  Extracted out;
  auto r = extract_layer(tar, root.get(), WhiteoutFormat(mode, privileged), privileged, &out.why);
  if (r) out.stats = *r;
  out.error = r.error();
  return out;
}

TEST_CASE("extract: names are cleaned, '..' and absolute names refused", "[extract]") {
  CHECK(*clean_archive_path("./a//b/") == "a/b");
  CHECK(*clean_archive_path("./") == "");
  CHECK(*clean_archive_path("a/./b") == "a/b");
  CHECK(clean_archive_path("../x").error() == EINVAL);
  CHECK(clean_archive_path("a/../../x").error() == EINVAL);
  CHECK(clean_archive_path("a/..").error() == EINVAL);
  CHECK(clean_archive_path("/etc/x").error() == EINVAL);
}

TEST_CASE("extract: types, modes, owners, times, xattrs, hard links, holes", "[extract]") {
  test::LayerBuilder b(0);
  std::vector<Ent> ents;
  Ent root = test::dir_ent("./", 0751);
  root.e.mtime = {1500000000, 5};
  ents.push_back(root);
  Ent etc = test::dir_ent("etc/", 0700);
  etc.e.mtime = {1400000000, 123};
  etc.e.uid = 7;
  ents.push_back(etc);
  Ent f = test::file_ent("etc/f", "hello", 04750);
  f.e.uid = 1000;
  f.e.gid = 1001;
  f.e.mtime = {1600000000, 987654321};
  f.e.xattrs = {{"user.k", "v"}, {"trusted.overlay.opaque", "y"}};
  ents.push_back(f);
  ents.push_back(test::link_ent(TarType::kHardLink, "etc/f2", "./etc/f"));
  ents.push_back(test::link_ent(TarType::kSymlink, "lnk", "/etc/f"));
  std::string sparse(1 << 20, '\0');
  sparse.replace(0, 3, "abc");
  sparse.replace(sparse.size() - 3, 3, "xyz");
  ents.push_back(test::file_ent("implicit/parent/sparse", sparse));
  Ent fifo = test::link_ent(TarType::kFifo, "fifo", "");
  fifo.e.mode = 0640;
  ents.push_back(fifo);
  const std::string out = b.root() + "/out";
  Extracted x = extract(out, ents);
  INFO(x.why);
  REQUIRE(x.error == 0);
  CHECK(x.stats.hard_links == 1);
  CHECK(x.stats.bytes == 5 + sparse.size());

  struct stat st = test::lstat_of(out);
  CHECK((st.st_mode & 07777) == 0751);
  CHECK(st.st_mtim.tv_sec == 1500000000);
  st = test::lstat_of(out + "/etc");
  CHECK((st.st_mode & 07777) == 0700);
  CHECK(st.st_mtim.tv_nsec == 123);
  st = test::lstat_of(out + "/etc/f");
  CHECK(test::read_file(out + "/etc/f") == "hello");
  CHECK((st.st_mode & 0777) == 0750);
  CHECK(st.st_mtim.tv_nsec == 987654321);
  CHECK(st.st_nlink == 2);
  CHECK(test::lstat_of(out + "/etc/f2").st_ino == st.st_ino);
  if (test::is_root()) {
    CHECK(st.st_uid == 1000);
    CHECK(st.st_gid == 1001);
    CHECK(test::lstat_of(out + "/etc").st_uid == 7);
  }
  CHECK(test::get_xattr(out + "/etc/f", "user.k") == "v");
  // An archive cannot forge our markers.
  CHECK(test::get_xattr(out + "/etc/f", "trusted.overlay.opaque").starts_with("<errno"));
  char target[64] = {};
  CHECK(::readlink((out + "/lnk").c_str(), target, sizeof(target)) == 6);
  CHECK(std::string(target) == "/etc/f");
  CHECK(test::read_file(out + "/implicit/parent/sparse") == sparse);
  CHECK(test::lstat_of(out + "/implicit/parent/sparse").st_blocks * 512 < (1 << 19));
  CHECK(S_ISFIFO(test::lstat_of(out + "/fifo").st_mode));
  CHECK((test::lstat_of(out + "/fifo").st_mode & 0777) == 0640);
}

TEST_CASE("extract: security.capability survives the chown", "[extract]") {
  if (!test::is_root()) {
    WARN("needs root; skipped");
    return;
  }
  test::LayerBuilder b(0);
  Ent f = test::file_ent("ping", "binary", 0755);
  f.e.uid = 0;
  const std::string cap(
      "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  f.e.xattrs = {{"security.capability", cap}};
  Extracted x = extract(b.root() + "/out", {f});
  INFO(x.why);
  REQUIRE(x.error == 0);
  CHECK(test::get_xattr(b.root() + "/out/ping", "security.capability") == cap);
}

TEST_CASE("extract: device nodes as root", "[extract]") {
  if (!test::is_root()) {
    WARN("needs root; skipped");
    return;
  }
  test::LayerBuilder b(0);
  Ent c = test::link_ent(TarType::kChar, "dev/null", "");
  c.e.mode = 0666;
  c.e.dev_major = 1;
  c.e.dev_minor = 3;
  Ent blk = c;
  blk.e.path = "dev/loop9";
  blk.e.type = TarType::kBlock;
  blk.e.dev_major = 7;
  blk.e.dev_minor = 9;
  Extracted x = extract(b.root() + "/out", {c, blk});
  REQUIRE(x.error == 0);
  struct stat st = test::lstat_of(b.root() + "/out/dev/null");
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(1, 3));
  CHECK(S_ISBLK(test::lstat_of(b.root() + "/out/dev/loop9").st_mode));
}

std::vector<Ent> whiteout_layer() {
  return {test::dir_ent("a/"),
          test::file_ent("a/.wh.gone", ""),
          test::file_ent("a/keep", "k"),
          test::dir_ent("o/"),
          test::file_ent("o/.wh..wh..opq", ""),
          test::file_ent("o/new", "n"),
          test::file_ent(".wh.topgone", "")};
}

TEST_CASE("extract: whiteouts in the kernel's format as root", "[extract][whiteout]") {
  if (!test::is_root()) {
    WARN("needs root; skipped");
    return;
  }
  test::LayerBuilder b(0);
  const std::string out = b.root() + "/out";
  Extracted x = extract(out, whiteout_layer(), WhiteoutMode::kAuto, true);
  INFO(x.why);
  REQUIRE(x.error == 0);
  CHECK(x.stats.whiteouts == 2);
  CHECK(x.stats.opaque_dirs == 1);
  struct stat st = test::lstat_of(out + "/a/gone");
  CHECK(is_kernel_whiteout(st));
  CHECK(is_kernel_whiteout(test::lstat_of(out + "/topgone")));
  CHECK_FALSE(test::exists_no_follow(out + "/a/.wh.gone"));
  CHECK(test::get_xattr(out + "/o", "trusted.overlay.opaque") == "y");
  CHECK_FALSE(test::exists_no_follow(out + "/o/.wh..wh..opq"));
  CHECK(test::read_file(out + "/o/new") == "n");
}

TEST_CASE("extract: whiteouts kept in OCI's format", "[extract][whiteout]") {
  test::LayerBuilder b(0);
  const std::string out = b.root() + "/out";
  Extracted x = extract(out, whiteout_layer(), WhiteoutMode::kOci, test::is_root());
  INFO(x.why);
  REQUIRE(x.error == 0);
  CHECK(test::exists_no_follow(out + "/a/.wh.gone"));
  CHECK_FALSE(test::exists_no_follow(out + "/a/gone"));
  CHECK(test::exists_no_follow(out + "/.wh.topgone"));
  CHECK(test::exists_no_follow(out + "/o/.wh..wh..opq"));
  CHECK(test::get_xattr(out + "/o", "trusted.overlay.opaque").starts_with("<errno"));
}

// A bad archive: the error names the problem, and the victim directory beside the target
// (where an escape would write) stays empty.
void expect_refused(const std::vector<Ent>& ents, int err, const std::string& words) {
  test::LayerBuilder b(0);
  const std::string victim = b.root() + "/victim";
  REQUIRE(::mkdir(victim.c_str(), 0755) == 0);
  Extracted x = extract(b.root() + "/out", ents);
  INFO(x.why);
  CHECK(x.error == err);
  CHECK(x.why.find(words) != std::string::npos);
  CHECK(test::manifest(victim).size() == 1);
  CHECK_FALSE(test::exists_no_follow(b.root() + "/x"));
}

TEST_CASE("extract: names escaping the target are refused", "[extract][bad]") {
  expect_refused({test::file_ent("../x", "evil")}, EINVAL, "'..'");
  expect_refused({test::file_ent("a/../../victim/x", "evil")}, EINVAL, "'..'");
  expect_refused({test::file_ent("/victim/x", "evil")}, EINVAL, "absolute");
}

TEST_CASE("extract: nothing is written through a symlink of the archive", "[extract][bad]") {
  // The symlink's target is absolute and outside; then an entry below it.
  const std::string name = "unionfs-escape-test-" + std::to_string(::getpid());
  expect_refused(
      {test::link_ent(TarType::kSymlink, "a", "/tmp"), test::file_ent("a/" + name, "evil")}, ELOOP,
      "symlink");
  // Relative, pointing up to the victim, and deeper.
  expect_refused(
      {test::link_ent(TarType::kSymlink, "up", "../victim"), test::file_ent("up/x", "evil")}, ELOOP,
      "symlink");
  expect_refused({test::dir_ent("d/"), test::link_ent(TarType::kSymlink, "d/s", "../../victim"),
                  test::dir_ent("d/s/sub/"), test::file_ent("d/s/sub/x", "evil")},
                 ELOOP, "symlink");
  CHECK_FALSE(test::exists_no_follow("/tmp/" + name));
}

TEST_CASE("extract: hard links outside the layer or to missing names are refused",
          "[extract][bad]") {
  expect_refused({test::link_ent(TarType::kHardLink, "h", "../x")}, EINVAL, "outside the layer");
  expect_refused({test::link_ent(TarType::kHardLink, "h", "/etc/passwd")}, EINVAL,
                 "outside the layer");
  expect_refused({test::link_ent(TarType::kHardLink, "h", "missing")}, EINVAL,
                 "not a file extracted before it");
  expect_refused({test::link_ent(TarType::kSymlink, "s", "../victim"),
                  test::link_ent(TarType::kHardLink, "h", "s/../x")},
                 EINVAL, "outside the layer");
  expect_refused({test::link_ent(TarType::kSymlink, "s", "/etc"),
                  test::link_ent(TarType::kHardLink, "h", "s/passwd")},
                 EINVAL, "not a file extracted before it");
}

TEST_CASE("extract: a whiteout for a name the layer also creates is refused", "[extract][bad]") {
  expect_refused({test::file_ent("a", "x"), test::file_ent(".wh.a", "")}, EINVAL,
                 "both whites out");
  expect_refused({test::file_ent(".wh.a", ""), test::file_ent("a", "x")}, EINVAL,
                 "both whites out");
  expect_refused({test::file_ent("d/.wh.x", ""), test::dir_ent("d/x/")}, EINVAL, "both whites out");
  expect_refused({test::file_ent(".wh.d", ""), test::file_ent("d/y", "")}, EINVAL,
                 "both whites out");
}

TEST_CASE("extract: a truncated layer is an error", "[extract][bad]") {
  test::LayerBuilder b(0);
  const std::string full =
      test::write_tar(b.root() + "/full.tar", {test::file_ent("a", std::string(3000, 'a'))});
  test::put_file(b.root() + "/out.tar", full.substr(0, 1500));
  REQUIRE(::mkdir((b.root() + "/out").c_str(), 0755) == 0);
  UniqueFd tarfd(::open((b.root() + "/out.tar").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd root(::open((b.root() + "/out").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  FileRange range(tarfd.get(), 0, 1500);
  TarReader tar(range);
  std::string why;
  auto r = extract_layer(tar, root.get(), WhiteoutFormat(WhiteoutMode::kOci, false), false, &why);
  CHECK(r.error() == EBADMSG);
  CHECK(why.find("truncated") != std::string::npos);
}

TEST_CASE("extract: a later entry replaces an earlier one of the same name", "[extract]") {
  test::LayerBuilder b(0);
  const std::string out = b.root() + "/out";
  Extracted x =
      extract(out, {test::file_ent("a", "1"), test::dir_ent("d/"), test::file_ent("d/x", "x"),
                    test::file_ent("a", "2"), test::dir_ent("d/", 0700),
                    test::link_ent(TarType::kSymlink, "s", "a"), test::file_ent("s", "3")});
  INFO(x.why);
  REQUIRE(x.error == 0);
  CHECK(test::read_file(out + "/a") == "2");
  CHECK(test::read_file(out + "/d/x") == "x");
  CHECK((test::lstat_of(out + "/d").st_mode & 0777) == 0700);
  CHECK(S_ISREG(test::lstat_of(out + "/s").st_mode));
  CHECK(test::read_file(out + "/a") == "2");
}

}  // namespace
}  // namespace unionfs
