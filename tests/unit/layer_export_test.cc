// Export: a layer directory to an OCI layer tar and back. The same directory gives the same
// bytes; the digest is the sha256 of the file (as sha256sum sees it); kernel markers become
// ".wh." entries; re-importing the tar gives the same tree (names, types, modes, owners, times,
// xattrs, link targets, hard links, contents, markers).
#include "core/layer_export.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "core/layer_extract.h"
#include "tar_fixture.h"

namespace unionfs {
namespace {

// A layer with every kind of object; kernel markers only as root, an OCI whiteout (which an
// import as root turns into the kernel's) if `oci`.
void build_layer(test::LayerBuilder& b, bool oci = true) {
  b.dir(0, "etc", 0750);
  b.file(0, "etc/passwd", "root:x:0:0\n", 0644);
  b.file(0, "etc/shadow", "secret", 0600);
  b.xattr(0, "etc/shadow", "user.note", "hello\nworld");
  b.file(0, "bin/tool", std::string(70000, 't'), 04755);
  REQUIRE(::link(b.path(0, "bin/tool").c_str(), b.path(0, "bin/tool-link").c_str()) == 0);
  REQUIRE(::link(b.path(0, "bin/tool").c_str(), b.path(0, "aaa-first-name").c_str()) == 0);
  b.symlink(0, "bin/sh", "busybox");
  b.symlink(0, "abs", "/etc/passwd");
  b.sparse_file(0, "var/sparse", "head", 1 << 20, "tail");
  b.file(0, std::string(120, 'n') + "/" + std::string(150, 'm'), "long name");
  if (oci) b.oci_whiteout(0, "etc/oci-gone");
  b.file(0, std::string(kTempPrefix) + "123.0", "internal");
  REQUIRE(::mkfifo(b.path(0, "var/fifo").c_str(), 0620) == 0);
  if (test::is_root()) {
    b.kernel_whiteout(0, "etc/gone");
    b.dir(0, "opaque");
    b.file(0, "opaque/new", "n");
    b.opaque_xattr(0, "opaque");
    b.owner(0, "etc/shadow", 0, 42);
    b.owner(0, "bin/sh", 1000, 1000);
  }
  b.times(0, "etc/passwd", 1234567890, 123456789);
  b.times(0, "bin/sh", 1111111111, 0);
  b.times(0, "var", 1222222222, 5);
  b.times(0, "etc", 1333333333, 0);
}

struct Exported {
  int error = 0;
  std::string why;
  ExportStats stats;
};

Exported run_export(const std::string& dir, const std::string& out) {
  Exported x;
  const WhiteoutFormat fmt(WhiteoutMode::kAuto, test::is_root());
  auto plan = LayerExport::scan(dir, fmt, &x.why);
  if (!plan) {
    x.error = plan.error();
    return x;
  }
  auto s = plan->write(out, {}, &x.why);
  x.error = s.error();
  if (s) x.stats = *s;
  return x;
}

TEST_CASE("export: deterministic bytes and the digest of the file", "[export]") {
  test::LayerBuilder b(1);
  build_layer(b);
  Exported one = run_export(b.layer(0), b.root() + "/one.tar");
  INFO(one.why);
  REQUIRE(one.error == 0);
  Exported two = run_export(b.layer(0), b.root() + "/two.tar");
  REQUIRE(two.error == 0);
  CHECK(test::read_file(b.root() + "/one.tar") == test::read_file(b.root() + "/two.tar"));
  CHECK(one.stats.diff_id == test::shell("sha256sum " + b.root() + "/one.tar").substr(0, 64));
  CHECK(one.stats.hard_links == 2);
  CHECK(test::shell("ls -A " + b.root() + " | grep -c export-tmp || true") == "0\n");
  const std::string list = test::shell("tar -tvf " + b.root() + "/one.tar");
  CHECK(list.find("aaa-first-name\n") != std::string::npos);
  CHECK(list.find("bin/tool link to aaa-first-name") != std::string::npos);
  CHECK(list.find("bin/sh -> busybox") != std::string::npos);
  CHECK(list.find("etc/.wh.oci-gone") != std::string::npos);
  CHECK(list.find(std::string(kTempPrefix)) == std::string::npos);
  if (test::is_root()) {
    CHECK(one.stats.whiteouts == 1);
    CHECK(one.stats.opaque_dirs == 1);
    CHECK(list.find("etc/.wh.gone\n") != std::string::npos);
    CHECK(list.find("opaque/.wh..wh..opq\n") != std::string::npos);
  }
}

TEST_CASE("export then import gives the same tree", "[export][import]") {
  test::LayerBuilder b(1);
  build_layer(b, !test::is_root());
  Exported x = run_export(b.layer(0), b.root() + "/layer.tar");
  INFO(x.why);
  REQUIRE(x.error == 0);
  const std::string back = b.root() + "/back";
  REQUIRE(::mkdir(back.c_str(), 0700) == 0);
  UniqueFd tarfd(::open((b.root() + "/layer.tar").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd root(::open(back.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  FileRange range(tarfd.get(), 0, x.stats.tar_bytes);
  TarReader tar(range);
  std::string why;
  auto r = extract_layer(tar, root.get(), WhiteoutFormat(WhiteoutMode::kAuto, test::is_root()),
                         test::is_root(), &why);
  INFO(why);
  REQUIRE(r.ok());
  REQUIRE(::unlink(b.path(0, std::string(kTempPrefix) + "123.0").c_str()) == 0);
  // The unlink changed the root's time; the export read it before: compare with what it wrote.
  struct stat st = test::lstat_of(back);
  struct timespec ts[2] = {st.st_mtim, st.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, b.layer(0).c_str(), ts, 0) == 0);
  CHECK(test::manifest_diff(test::tree(b.layer(0)), test::tree(back)) == "");
  CHECK(test::lstat_of(back + "/var/sparse").st_blocks * 512 < (1 << 19));
}

TEST_CASE("export: the output may not be inside the layer", "[export]") {
  test::LayerBuilder b(1);
  b.dir(0, "sub");
  CHECK_THROWS_WITH(check_export_target(b.layer(0), b.layer(0) + "/sub/x.tar"),
                    Catch::Contains("inside the layer directory"));
  CHECK_THROWS_WITH(check_export_target(b.layer(0), b.root()), Catch::Contains("is a directory"));
  CHECK_NOTHROW(check_export_target(b.layer(0), b.root() + "/x.tar"));
}

}  // namespace
}  // namespace unionfs
