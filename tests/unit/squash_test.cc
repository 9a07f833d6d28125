// squash: the output layer, put in place of the range, shows the same tree as the stack did
// (checked through a read-only UnionFs over both stacks); markers only where still needed;
// hard links, holes, xattrs, owners, modes and times kept; bad input writes nothing.
#include "core/squash.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/union_fs.h"
#include "layer_builder.h"

namespace unionfs {
namespace {

using test::LayerBuilder;
namespace fs = std::filesystem;

// One line per object of the merged view (what a mount shows and a squash must keep), then one
// line per group of names that share an inode.
class ViewWalk {
 public:
  explicit ViewWalk(const std::string& spec)
      : fs_(LayerStack::open(spec, true), Options{WhiteoutMode::kAuto, true}) {}

  std::vector<std::string> lines() {
    auto st = fs_.getattr(fs_.root());
    REQUIRE(st.ok());
    describe(fs_.root(), ".", *st);
    walk(fs_.root(), "");
    std::vector<std::string> out = lines_;
    for (auto& [ino, names] : groups_) {
      if (names.size() < 2) continue;
      std::sort(names.begin(), names.end());
      std::string g = "link:";
      for (const std::string& n : names) g += " " + n;
      out.push_back(g);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  void walk(Inode& dir, const std::string& rel) {
    auto list = fs_.list(dir);
    REQUIRE(list.ok());
    for (const DirEntry& e : *list) {
      auto ent = fs_.lookup(dir, e.name);
      INFO("lookup " << rel << "/" << e.name);
      REQUIRE(ent.ok());
      const std::string path = rel + "/" + e.name;
      describe(*ent->inode, path, ent->attr);
      if (S_ISDIR(ent->attr.st_mode)) {
        walk(*ent->inode, path);
      } else {
        groups_[ent->attr.st_ino].push_back(path);
      }
    }
  }

  void describe(Inode& inode, const std::string& path, const struct stat& st) {
    std::ostringstream o;
    o << path << " mode=" << std::oct << st.st_mode << std::dec << " owner=" << st.st_uid << ":"
      << st.st_gid << " rdev=" << major(st.st_rdev) << ":" << minor(st.st_rdev)
      << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
    if (!S_ISDIR(st.st_mode)) o << " size=" << st.st_size;
    if (S_ISLNK(st.st_mode)) o << " target=" << *fs_.readlink(inode);
    if (S_ISREG(st.st_mode)) {
      auto fd = fs_.open(inode, O_RDONLY);
      REQUIRE(fd.ok());
      std::string data = test::read_fd(fd->get());
      o << " data=" << std::hex << hash_bytes(data.data(), data.size()) << std::dec;
    }
    if (!S_ISLNK(st.st_mode)) {
      auto names = fs_.listxattr(inode);
      std::vector<std::string> xs = names.ok() ? *names : std::vector<std::string>{};
      std::sort(xs.begin(), xs.end());
      for (const std::string& n : xs) o << " xattr:" << n << "=" << *fs_.getxattr(inode, n);
    }
    lines_.push_back(o.str());
  }

  UnionFs fs_;
  std::vector<std::string> lines_;
  std::map<uint64_t, std::vector<std::string>> groups_;
};

std::vector<std::string> view_of(const std::string& spec) { return ViewWalk(spec).lines(); }

void whiteout(LayerBuilder& b, size_t i, const std::string& rel, bool oci) {
  if (oci) {
    b.oci_whiteout(i, rel);
  } else {
    b.kernel_whiteout(i, rel);
  }
}

void opaque(LayerBuilder& b, size_t i, const std::string& rel, bool oci) {
  b.dir(i, rel);
  if (oci) {
    b.oci_opaque(i, rel);
  } else {
    b.opaque_xattr(i, rel);
  }
}

// Every entry of every layer gets its own times, directories included (set after their
// contents, so that writing the contents does not move them again).
void stamp_times(LayerBuilder& b) {
  time_t t = 1600000000;
  for (size_t i = 0; i < b.size(); ++i) {
    for (auto it = fs::recursive_directory_iterator(b.layer(i));
         it != fs::recursive_directory_iterator(); ++it) {
      struct timespec ts[2] = {{t, 1}, {t + 7, 123456789}};
      REQUIRE(::utimensat(AT_FDCWD, it->path().c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
      t += 11;
    }
  }
  for (size_t i = 0; i < b.size(); ++i) {
    for (const std::string rel : {"d", "opq", "gone", "hl", ""}) {
      if (b.exists(i, rel)) b.times(i, rel, t++, 42);
    }
  }
}

// Four layers with deletions, opaque directories, recreations and the attributes to keep.
void rich_stack(LayerBuilder& b, bool oci) {
  b.file(0, "d/a", "a0");
  b.file(0, "d/b", "b0");
  b.file(0, "d/sub/k", "k0", 0600);
  b.file(0, "gone/x", "x0");
  b.file(0, "opq/old", "old");
  b.file(0, "opq/sub/deep", "deep");
  b.file(0, "hl/x", "linked");
  REQUIRE(::link(b.path(0, "hl/x").c_str(), b.path(0, "hl/y").c_str()) == 0);
  b.sparse_file(0, "sparse", "head", 8 << 20, "tail");
  b.symlink(0, "ln", "d/a");
  b.file(0, "owned", "o", 04755);
  b.owner(0, "owned", 1234, 5678);
  REQUIRE(::chmod(b.path(0, "owned").c_str(), 04755) == 0);  // chown cleared set-user-ID
  b.file(0, "noted", "n");
  b.xattr(0, "noted", "user.note", "hello");
  b.dir(0, "xd", 0710);
  b.xattr(0, "xd", "user.dirnote", "dir");
  REQUIRE(::mkfifo(b.path(0, "fifo").c_str(), 0640) == 0);
  REQUIRE(::mknod(b.path(0, "null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);

  whiteout(b, 1, "d/a", oci);
  whiteout(b, 1, "gone", oci);
  opaque(b, 1, "opq", oci);
  b.file(1, "opq/new", "new");
  b.file(1, "d/c", "c1");
  b.file(1, "h1", "h");
  REQUIRE(::link(b.path(1, "h1").c_str(), b.path(1, "h2").c_str()) == 0);
  b.dir(1, "d/sub", 0750);

  b.file(2, "d/a", "a2");  // recreated over the whiteout below
  b.dir(2, "gone");        // a directory over a whiteout: nothing from l0 shows in it
  b.file(2, "gone/y", "y2");
  whiteout(b, 2, "never_there", oci);
  whiteout(b, 2, "hl/y", oci);

  b.file(3, "top", "t3");
  whiteout(b, 3, "d/b", oci);
  whiteout(b, 3, "ln", oci);
  stamp_times(b);
}

// The stack's spec with layers [r.bottom, r.top] replaced by `out`.
std::string replaced(const LayerBuilder& b, SquashRange r, const std::string& out) {
  std::string s;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i > r.bottom && i <= r.top) continue;
    s += (s.empty() ? "" : ":") + (i == r.bottom ? out : b.layer(i));
  }
  return s;
}

SquashStats run_squash(const LayerBuilder& b, SquashRange r, WhiteoutMode out_fmt,
                       const std::string& out) {
  LayerStack stack = LayerStack::open(b.spec(), true);
  WhiteoutFormat fmt(WhiteoutMode::kAuto, true);
  SquashOptions opts;
  opts.range = r;
  opts.output = out_fmt;
  opts.privileged = true;
  check_squash_target(stack, out);
  auto steps = squash_steps(stack, fmt, opts);
  REQUIRE(steps.ok());
  uint64_t calls = 0;
  std::string where;
  auto stats = squash(
      stack, fmt, opts, out, [&] { ++calls; }, &where);
  INFO("squash failed at " << where << ": " << std::strerror(stats.error()));
  REQUIRE(stats.ok());
  CHECK(calls == *steps);
  return *stats;
}

// Markers in a layer directory tree, both formats: "path kind" lines.
std::vector<std::string> markers(const std::string& root) {
  std::vector<std::string> out;
  auto check = [&](const fs::path& p) {
    const std::string rel = fs::relative(p, root).string();
    struct stat st = test::lstat_of(p.string());
    if (is_kernel_whiteout(st)) out.push_back(rel + " whiteout");
    if (p.filename().string().starts_with(".wh.")) out.push_back(rel + " oci");
    if (S_ISDIR(st.st_mode) && test::get_xattr(p.string(), "trusted.overlay.opaque") == "y") {
      out.push_back(rel + " opaque");
    }
  };
  check(root);
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    check(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST_CASE("squash: every range, put in place of its layers, shows the same tree", "[squash]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root (owners, trusted.* markers, device nodes)");
    return;
  }
  const bool oci_in = GENERATE(false, true);
  const WhiteoutMode out_fmt = GENERATE(WhiteoutMode::kAuto, WhiteoutMode::kOci);
  LayerBuilder b(4);
  rich_stack(b, oci_in);
  const std::vector<std::string> want = view_of(b.spec());
  int n = 0;
  for (size_t bottom = 0; bottom < 4; ++bottom) {
    for (size_t top = bottom; top < 4; ++top) {
      const SquashRange r{bottom, top};
      const std::string out = b.root() + "/out" + std::to_string(n++);
      run_squash(b, r, out_fmt, out);
      INFO("range " << bottom << ":" << top << " input " << (oci_in ? "oci" : "kernel")
                    << " output " << (out_fmt == WhiteoutMode::kOci ? "oci" : "kernel"));
      CHECK(test::manifest_diff(want, view_of(replaced(b, r, out))) == "");
    }
  }
}

TEST_CASE("squash: a full squash writes no markers, a partial one only those still needed",
          "[squash]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root");
    return;
  }
  LayerBuilder b(4);
  rich_stack(b, false);
  const std::string full = b.root() + "/full";
  SquashStats fs_stats = run_squash(b, {0, 3}, WhiteoutMode::kAuto, full);
  CHECK(markers(full).empty());
  CHECK(fs_stats.whiteouts == 0);
  CHECK(fs_stats.opaque_dirs == 0);
  CHECK(test::read_file(full + "/d/a") == "a2");
  CHECK_FALSE(test::exists_no_follow(full + "/d/b"));
  CHECK_FALSE(test::exists_no_follow(full + "/gone/x"));

  // Layers 1..3 over l0: "never_there" hides nothing in l0, the others do.
  const std::string part = b.root() + "/part";
  SquashStats ps = run_squash(b, {1, 3}, WhiteoutMode::kAuto, part);
  CHECK(markers(part) == std::vector<std::string>{"d/b whiteout", "gone opaque", "hl/y whiteout",
                                                  "ln whiteout", "opq opaque"});
  CHECK(ps.whiteouts == 3);
  CHECK(ps.opaque_dirs == 2);

  const std::string oci = b.root() + "/oci";
  run_squash(b, {1, 3}, WhiteoutMode::kOci, oci);
  std::vector<std::string> want = {"d/.wh.b oci", "gone/.wh..wh..opq oci", "hl/.wh.y oci",
                                   ".wh.ln oci", "opq/.wh..wh..opq oci"};
  std::sort(want.begin(), want.end());
  CHECK(markers(oci) == want);
}

TEST_CASE("squash: hard links, holes, owners, modes, xattrs and times survive", "[squash]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root");
    return;
  }
  LayerBuilder b(4);
  rich_stack(b, false);
  const std::string out = b.root() + "/out";
  SquashStats st = run_squash(b, {0, 3}, WhiteoutMode::kAuto, out);
  CHECK(st.hard_links == 1);  // h2 (hl/y is whited out above)
  struct stat h1 = test::lstat_of(out + "/h1"), h2 = test::lstat_of(out + "/h2");
  CHECK(h1.st_ino == h2.st_ino);
  CHECK(h1.st_nlink == 2);
  CHECK(test::lstat_of(out + "/hl/x").st_nlink == 1);

  struct stat sp = test::lstat_of(out + "/sparse");
  CHECK(sp.st_size == (8 << 20) + 4);
  CHECK(sp.st_blocks * 512 < (1 << 20));  // the hole stayed a hole
  CHECK(test::read_file(out + "/sparse").substr(8 << 20) == "tail");

  struct stat own = test::lstat_of(out + "/owned");
  CHECK(own.st_uid == 1234);
  CHECK(own.st_gid == 5678);
  CHECK((own.st_mode & 07777) == 04755);  // set-user-ID survives the chown
  CHECK((test::lstat_of(out + "/d/sub/k").st_mode & 07777) == 0600);
  CHECK((test::lstat_of(out + "/d/sub").st_mode & 07777) == 0750);  // from l1, the topmost
  CHECK(test::get_xattr(out + "/noted", "user.note") == "hello");
  CHECK(test::get_xattr(out + "/xd", "user.dirnote") == "dir");
  CHECK((test::lstat_of(out + "/xd").st_mode & 07777) == 0710);
  CHECK(S_ISFIFO(test::lstat_of(out + "/fifo").st_mode));
  CHECK(test::lstat_of(out + "/null").st_rdev == makedev(1, 3));

  // Times of files and of directories (those set after their entries were written).
  const std::vector<std::pair<size_t, std::string>> topmost = {
      {3, "top"}, {2, "d/a"}, {1, "d/sub"}, {2, "gone"}, {1, "opq"}, {0, "d/sub/k"}, {0, "xd"}};
  for (const auto& [layer, rel] : topmost) {
    INFO(rel);
    struct stat src = b.stat(layer, rel), dst = test::lstat_of(out + "/" + rel);
    CHECK(src.st_mtim.tv_sec == dst.st_mtim.tv_sec);
    CHECK(src.st_mtim.tv_nsec == dst.st_mtim.tv_nsec);
  }
  CHECK(test::lstat_of(out).st_mtim.tv_sec == b.stat(3, "").st_mtim.tv_sec);
  CHECK(test::get_xattr(out, "trusted.overlay.opaque").starts_with("<errno"));
}

TEST_CASE("squash: --range parsing", "[squash]") {
  CHECK(parse_squash_range("", 3).bottom == 0);
  CHECK(parse_squash_range("", 3).top == 2);
  SquashRange r = parse_squash_range("1:2", 3);
  CHECK(r.bottom == 1);
  CHECK(r.top == 2);
  CHECK(parse_squash_range("0:0", 1).top == 0);
  for (const char* bad : {"1", "2:1", "0:3", "a:b", "1:", ":1", "-1:2", "1:2:3", " 1:2"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_squash_range(bad, 3), SetupError);
  }
}

TEST_CASE("squash: a bad target is refused before anything is written", "[squash]") {
  LayerBuilder b(2);
  b.file(0, "f", "f");
  LayerStack stack = LayerStack::open(b.spec(), true);
  b.file(1, "keep", "k");  // l1 is not empty
  const std::string file = b.root() + "/file";
  test::LayerBuilder other(1);
  other.file(0, "x", "x");
  CHECK_THROWS_AS(check_squash_target(stack, b.layer(1)), SetupError);           // not empty
  CHECK_THROWS_AS(check_squash_target(stack, b.layer(0) + "/new"), SetupError);  // inside a layer
  CHECK_THROWS_AS(check_squash_target(stack, b.layer(0) + "/x/../y"), SetupError);
  CHECK_THROWS_AS(check_squash_target(stack, b.root() + "/no/such/dir"), SetupError);
  CHECK_THROWS_AS(check_squash_target(stack, b.layer(0) + "/f"), SetupError);  // a file
  CHECK_THROWS_AS(check_squash_target(stack, "."), SetupError);
  CHECK_THROWS_AS(check_squash_target(stack, other.layer(0)), SetupError);  // not empty
  ::mkdir((b.root() + "/empty").c_str(), 0755);
  CHECK_NOTHROW(check_squash_target(stack, b.root() + "/empty"));
  CHECK_NOTHROW(check_squash_target(stack, b.root() + "/new/"));
  LayerBuilder e(2);  // an empty layer is empty, but still a layer
  LayerStack es = LayerStack::open(e.spec(), true);
  CHECK_THROWS_AS(check_squash_target(es, e.layer(1)), SetupError);
}

TEST_CASE("squash: a failure leaves neither the target nor a temporary directory", "[squash]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root (kernel whiteouts)");
    return;
  }
  LayerBuilder b(2);
  const std::string long_name(252, 'n');  // ".wh." + 252 chars is too long for a name
  b.file(0, "a/" + long_name, "x");
  b.file(1, "a/first", "1");
  b.kernel_whiteout(1, "a/" + long_name);
  LayerStack stack = LayerStack::open(b.spec(), true);
  WhiteoutFormat fmt(WhiteoutMode::kAuto, true);
  SquashOptions opts;
  opts.range = {1, 1};
  opts.output = WhiteoutMode::kOci;
  opts.privileged = true;
  const std::string out = b.root() + "/out";
  std::string where;
  auto r = squash(stack, fmt, opts, out, {}, &where);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == ENAMETOOLONG);
  CHECK(where == "/a/" + long_name);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(b.root())) left.push_back(e.path().filename());
  std::sort(left.begin(), left.end());
  CHECK(left == std::vector<std::string>{"l0", "l1"});
  // The same range in the kernel format succeeds.
  opts.output = WhiteoutMode::kAuto;
  REQUIRE(squash(stack, fmt, opts, out).ok());
  CHECK(is_kernel_whiteout(test::lstat_of(out + "/a/" + long_name)));
}

}  // namespace
}  // namespace unionfs
