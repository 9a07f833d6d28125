// WhiteoutFormat: reserved names, opacity of a directory in both formats, writing whiteouts
// and opaque markers in the kernel's format (char 0/0, *.overlay.opaque) and OCI's (.wh.*).
#include "core/whiteout.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "core/unique_fd.h"
#include "tests/unit/layer_builder.h"

namespace unionfs {
namespace {

using test::LayerBuilder;

UniqueFd open_dir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(fd.valid());
  return fd;
}

TEST_CASE("write format follows mode and privilege", "[whiteout]") {
  CHECK_FALSE(WhiteoutFormat(WhiteoutMode::kAuto, true).write_oci());
  CHECK(WhiteoutFormat(WhiteoutMode::kAuto, false).write_oci());
  CHECK(WhiteoutFormat(WhiteoutMode::kOci, true).write_oci());
  CHECK(WhiteoutFormat(WhiteoutMode::kOci, false).write_oci());
  CHECK_FALSE(WhiteoutFormat(WhiteoutMode::kOverlay, true).write_oci());
  CHECK_FALSE(WhiteoutFormat(WhiteoutMode::kOverlay, false).write_oci());

  CHECK(WhiteoutFormat(WhiteoutMode::kAuto, true).read_oci());
  CHECK(WhiteoutFormat(WhiteoutMode::kOci, true).read_oci());
  CHECK_FALSE(WhiteoutFormat(WhiteoutMode::kOverlay, true).read_oci());

  CHECK(std::string(WhiteoutFormat(WhiteoutMode::kOverlay, true).opaque_xattr()) ==
        "trusted.overlay.opaque");
  CHECK(std::string(WhiteoutFormat(WhiteoutMode::kOverlay, false).opaque_xattr()) ==
        "user.overlay.opaque");
}

TEST_CASE("reserved names per mode", "[whiteout]") {
  const std::string tmp = std::string(kTempPrefix) + "123.4";
  for (WhiteoutMode mode : {WhiteoutMode::kAuto, WhiteoutMode::kOci}) {
    WhiteoutFormat f(mode, true);
    INFO("mode " << static_cast<int>(mode));
    CHECK(f.is_reserved_name(".wh.x"));
    CHECK(f.is_reserved_name(".wh..wh..opq"));
    CHECK(f.is_reserved_name(".wh."));
    CHECK(f.is_reserved_name(tmp));
    CHECK_FALSE(f.is_reserved_name("x"));
    CHECK_FALSE(f.is_reserved_name(".wh"));
    CHECK_FALSE(f.is_reserved_name(".whx"));
    CHECK_FALSE(f.is_reserved_name("a.wh.x"));
    CHECK_FALSE(f.is_reserved_name(".unionfs-cpp.tm"));
  }
  WhiteoutFormat overlay(WhiteoutMode::kOverlay, true);
  CHECK_FALSE(overlay.is_reserved_name(".wh.x"));
  CHECK_FALSE(overlay.is_reserved_name(".wh..wh..opq"));
  CHECK(overlay.is_reserved_name(tmp));
  CHECK_FALSE(overlay.is_reserved_name("x"));
}

TEST_CASE("temp_name is reserved and unique", "[whiteout]") {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string n = temp_name();
    CHECK(n.starts_with(kTempPrefix));
    CHECK(n.size() <= NAME_MAX);
    seen.insert(n);
  }
  CHECK(seen.size() == 100);
}

TEST_CASE("is_kernel_whiteout is a char device 0/0 only", "[whiteout]") {
  struct stat st {};
  st.st_mode = S_IFCHR | 0;
  st.st_rdev = makedev(0, 0);
  CHECK(is_kernel_whiteout(st));
  st.st_rdev = makedev(1, 3);
  CHECK_FALSE(is_kernel_whiteout(st));
  st.st_mode = S_IFBLK;
  st.st_rdev = makedev(0, 0);
  CHECK_FALSE(is_kernel_whiteout(st));
  st.st_mode = S_IFREG | 0644;
  CHECK_FALSE(is_kernel_whiteout(st));
}

TEST_CASE("dir_opacity reads both xattr forms and the OCI marker", "[whiteout]") {
  LayerBuilder b(1);
  WhiteoutFormat autof(WhiteoutMode::kAuto, true);
  WhiteoutFormat oci(WhiteoutMode::kOci, false);
  WhiteoutFormat overlay(WhiteoutMode::kOverlay, true);
  b.dir(0, "plain");
  b.file(0, "plain/child", "c");
  b.dir(0, "ty");
  b.opaque_xattr(0, "ty", "trusted.overlay.opaque", "y");
  b.dir(0, "uy");
  b.opaque_xattr(0, "uy", "user.overlay.opaque", "y");
  b.dir(0, "tx");
  b.opaque_xattr(0, "tx", "trusted.overlay.opaque", "x");
  b.dir(0, "ux");
  b.opaque_xattr(0, "ux", "user.overlay.opaque", "x");
  b.dir(0, "tn");
  b.opaque_xattr(0, "tn", "trusted.overlay.opaque", "n");
  b.dir(0, "other");
  b.opaque_xattr(0, "other", "user.other", "y");
  b.dir(0, "oci");
  b.oci_opaque(0, "oci");

  WhiteoutFormat overlay_user(WhiteoutMode::kOverlay, false);
  auto opacity = [&](const WhiteoutFormat& f, const char* dir) {
    return f.dir_opacity(open_dir(b.path(0, dir)).get());
  };
  for (const WhiteoutFormat* f : {&autof, &oci, &overlay, &overlay_user}) {
    INFO("read_oci " << f->read_oci() << " privileged " << f->privileged());
    CHECK(opacity(*f, "plain") == Opacity::kNone);
    CHECK(opacity(*f, "tn") == Opacity::kNone);
    CHECK(opacity(*f, "other") == Opacity::kNone);
  }
  // kAuto and kOci read both xattr namespaces.
  for (const WhiteoutFormat* f : {&autof, &oci}) {
    CHECK(opacity(*f, "ty") == Opacity::kOpaque);
    CHECK(opacity(*f, "uy") == Opacity::kOpaque);
    CHECK(opacity(*f, "tx") == Opacity::kXWhiteouts);
    CHECK(opacity(*f, "ux") == Opacity::kXWhiteouts);
  }
  // kOverlay reads what the kernel reads: trusted.* as root, user.* (userxattr) otherwise.
  CHECK(opacity(overlay, "ty") == Opacity::kOpaque);
  CHECK(opacity(overlay, "uy") == Opacity::kNone);
  CHECK(opacity(overlay, "tx") == Opacity::kXWhiteouts);
  CHECK(opacity(overlay, "ux") == Opacity::kNone);
  CHECK(opacity(overlay_user, "ty") == Opacity::kNone);
  CHECK(opacity(overlay_user, "uy") == Opacity::kOpaque);
  CHECK(opacity(overlay_user, "tx") == Opacity::kNone);
  CHECK(opacity(overlay_user, "ux") == Opacity::kXWhiteouts);
  CHECK(autof.dir_opacity(open_dir(b.path(0, "oci")).get()) == Opacity::kOpaque);
  CHECK(oci.dir_opacity(open_dir(b.path(0, "oci")).get()) == Opacity::kOpaque);
  // The kernel format alone treats ".wh..wh..opq" as an ordinary file.
  CHECK(overlay.dir_opacity(open_dir(b.path(0, "oci")).get()) == Opacity::kNone);
}

TEST_CASE("is_xattr_whiteout and has_oci_whiteout", "[whiteout]") {
  LayerBuilder b(1);
  b.dir(0, "d");
  b.xattr_whiteout(0, "d/tw", "trusted.overlay.whiteout");
  b.xattr_whiteout(0, "d/uw", "user.overlay.whiteout");
  b.file(0, "d/plain", "");
  b.oci_whiteout(0, "d/gone");
  UniqueFd d = open_dir(b.path(0, "d"));
  WhiteoutFormat autof(WhiteoutMode::kAuto, true);
  WhiteoutFormat overlay(WhiteoutMode::kOverlay, true);
  CHECK(autof.is_xattr_whiteout(d.get(), "tw"));
  CHECK(autof.is_xattr_whiteout(d.get(), "uw"));
  CHECK_FALSE(autof.is_xattr_whiteout(d.get(), "plain"));
  CHECK_FALSE(autof.is_xattr_whiteout(d.get(), "missing"));
  CHECK(autof.has_oci_whiteout(d.get(), "gone"));
  CHECK_FALSE(autof.has_oci_whiteout(d.get(), "plain"));
  CHECK_FALSE(overlay.has_oci_whiteout(d.get(), "gone"));
  // kOverlay as root reads only trusted.*, unprivileged only user.*.
  CHECK(overlay.is_xattr_whiteout(d.get(), "tw"));
  CHECK_FALSE(overlay.is_xattr_whiteout(d.get(), "uw"));
  WhiteoutFormat overlay_user(WhiteoutMode::kOverlay, false);
  CHECK_FALSE(overlay_user.is_xattr_whiteout(d.get(), "tw"));
  CHECK(overlay_user.is_xattr_whiteout(d.get(), "uw"));
}

TEST_CASE("is_internal_xattr: the overlay's own xattrs", "[whiteout]") {
  for (auto [mode, priv] : {std::pair{WhiteoutMode::kAuto, true},
                            {WhiteoutMode::kAuto, false},
                            {WhiteoutMode::kOci, true},
                            {WhiteoutMode::kOverlay, false}}) {
    WhiteoutFormat f(mode, priv);
    INFO("mode " << static_cast<int>(mode) << " privileged " << priv);
    CHECK(f.is_internal_xattr("trusted.overlay.opaque"));
    CHECK(f.is_internal_xattr("trusted.overlay.whiteout"));
    CHECK(f.is_internal_xattr("user.overlay.opaque"));
    CHECK_FALSE(f.is_internal_xattr("user.overlay"));
    CHECK_FALSE(f.is_internal_xattr("user.color"));
    CHECK_FALSE(f.is_internal_xattr("trusted.other"));
    CHECK_FALSE(f.is_internal_xattr("security.capability"));
  }
  // A privileged kernel-format stack reads user.overlay.* as plain data, as the kernel does.
  WhiteoutFormat overlay(WhiteoutMode::kOverlay, true);
  CHECK(overlay.is_internal_xattr("trusted.overlay.opaque"));
  CHECK_FALSE(overlay.is_internal_xattr("user.overlay.opaque"));
}

TEST_CASE("make_whiteout in the kernel format is a char device 0/0", "[whiteout]") {
  LayerBuilder b(1);
  UniqueFd d = open_dir(b.layer(0));
  for (WhiteoutMode mode : {WhiteoutMode::kAuto, WhiteoutMode::kOverlay}) {
    WhiteoutFormat f(mode, true);
    std::string name = "k";  // (not "k" + ...: GCC 12 -Wrestrict false positive, PR105329)
    name += std::to_string(static_cast<int>(mode));
    REQUIRE(f.make_whiteout(d.get(), name).ok());
    struct stat st = b.stat(0, name);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(major(st.st_rdev) == 0);
    CHECK(minor(st.st_rdev) == 0);
    CHECK(is_kernel_whiteout(st));
    CHECK_FALSE(b.exists(0, ".wh." + name));
    // Something already there.
    CHECK(f.make_whiteout(d.get(), name).error() == EEXIST);
  }
  WhiteoutFormat overlay(WhiteoutMode::kOverlay, false);
  REQUIRE(overlay.make_kernel_whiteout(d.get(), "tmpwh").ok());
  CHECK(is_kernel_whiteout(b.stat(0, "tmpwh")));
}

TEST_CASE("make_whiteout in the OCI format is an empty .wh. file", "[whiteout]") {
  LayerBuilder b(1);
  UniqueFd d = open_dir(b.layer(0));
  for (auto [mode, priv] : {std::pair{WhiteoutMode::kOci, true}, {WhiteoutMode::kAuto, false}}) {
    WhiteoutFormat f(mode, priv);
    std::string name = "o";
    name += std::to_string(static_cast<int>(mode));
    REQUIRE(f.make_whiteout(d.get(), name).ok());
    CHECK_FALSE(b.exists(0, name));
    struct stat st = b.stat(0, ".wh." + name);
    CHECK(S_ISREG(st.st_mode));
    CHECK(st.st_size == 0);
    CHECK(f.has_oci_whiteout(d.get(), name));
  }
  WhiteoutFormat oci(WhiteoutMode::kOci, false);
  // ".wh." + 252 bytes is 256: too long.
  CHECK(oci.make_whiteout(d.get(), std::string(252, 'n')).error() == ENAMETOOLONG);
  CHECK(oci.make_whiteout(d.get(), std::string(251, 'n')).ok());
}

TEST_CASE("set_opaque writes the marker the format reads back", "[whiteout]") {
  LayerBuilder b(1);
  b.dir(0, "priv");
  b.dir(0, "user");
  b.dir(0, "oci");
  b.dir(0, "auto_user");
  WhiteoutFormat priv(WhiteoutMode::kAuto, true);
  WhiteoutFormat user(WhiteoutMode::kOverlay, false);
  WhiteoutFormat oci(WhiteoutMode::kOci, true);
  WhiteoutFormat auto_user(WhiteoutMode::kAuto, false);

  REQUIRE(priv.set_opaque(open_dir(b.path(0, "priv")).get()).ok());
  CHECK(test::get_xattr(b.path(0, "priv"), "trusted.overlay.opaque") == "y");
  CHECK_FALSE(b.exists(0, "priv/.wh..wh..opq"));
  CHECK(priv.dir_opacity(open_dir(b.path(0, "priv")).get()) == Opacity::kOpaque);

  REQUIRE(user.set_opaque(open_dir(b.path(0, "user")).get()).ok());
  CHECK(test::get_xattr(b.path(0, "user"), "user.overlay.opaque") == "y");
  CHECK(test::get_xattr(b.path(0, "user"), "trusted.overlay.opaque") ==
        "<errno " + std::to_string(ENODATA) + ">");
  CHECK(user.dir_opacity(open_dir(b.path(0, "user")).get()) == Opacity::kOpaque);

  for (auto [f, dir] : {std::pair{&oci, "oci"}, {&auto_user, "auto_user"}}) {
    INFO(dir);
    REQUIRE(f->set_opaque(open_dir(b.path(0, dir)).get()).ok());
    struct stat st = b.stat(0, std::string(dir) + "/.wh..wh..opq");
    CHECK(S_ISREG(st.st_mode));
    CHECK(st.st_size == 0);
    CHECK(test::get_xattr(b.path(0, dir), "trusted.overlay.opaque") ==
          "<errno " + std::to_string(ENODATA) + ">");
    CHECK(f->dir_opacity(open_dir(b.path(0, dir)).get()) == Opacity::kOpaque);
  }
}

}  // namespace
}  // namespace unionfs
