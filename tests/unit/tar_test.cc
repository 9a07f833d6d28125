// The tar reader and writer: round trips of every entry type, pax long names (> 100 and > 255
// bytes), long link targets, xattrs, sub-second times and big ids; archives of GNU tar read
// back (GNU 'L'/'K' and pax); our archives listed by GNU tar; truncated and corrupt input.
#include "core/tar.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tar_fixture.h"

namespace unionfs {
namespace {

using test::Ent;

struct ReadResult {
  std::vector<Ent> ents;
  int error = 0;
  std::string why;
};

ReadResult read_tar(const std::string& path) {
  ReadResult r;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd.valid());
  struct stat st {};
  REQUIRE(::fstat(fd.get(), &st) == 0);
  FileRange range(fd.get(), 0, static_cast<uint64_t>(st.st_size));
  TarReader tar(range);
  for (;;) {
    Ent x;
    auto more = tar.next(x.e);
    if (!more) {
      r.error = more.error();
      r.why = tar.why();
      return r;
    }
    if (!*more) return r;
    char buf[1000];
    for (;;) {
      auto got = tar.read(buf, sizeof(buf));
      if (!got) {
        r.error = got.error();
        r.why = tar.why();
        return r;
      }
      if (*got == 0) break;
      x.data.append(buf, *got);
    }
    r.ents.push_back(x);
  }
}

std::vector<Ent> sample() {
  std::vector<Ent> v;
  v.push_back(test::dir_ent("./"));
  v.push_back(test::dir_ent("etc/", 0700));
  Ent f = test::file_ent("etc/passwd", "root:x:0:0\n", 04755);
  f.e.uid = 1000;
  f.e.gid = 2000;
  f.e.mtime = {1700000000, 123456789};
  f.e.xattrs = {{"security.capability", std::string("\x01\x00\x00\x02\0\0", 6)},
                {"user.note", "a=b\nc"}};
  v.push_back(f);
  v.push_back(test::link_ent(TarType::kHardLink, "etc/passwd.hard", "etc/passwd"));
  v.push_back(test::link_ent(TarType::kSymlink, "etc/link", "../target"));
  const std::string long150 = std::string(60, 'd') + "/" + std::string(89, 'f');
  v.push_back(test::file_ent(long150, "prefix split"));
  const std::string long300 =
      std::string(120, 'a') + "/" + std::string(120, 'b') + "/" + std::string(58, 'c');
  v.push_back(test::file_ent(long300, std::string(5000, 'x')));
  v.push_back(test::link_ent(TarType::kSymlink, "longlink", std::string(180, 't')));
  Ent big = test::file_ent("bigids", "");
  big.e.uid = 1u << 30;
  big.e.gid = 3000000000u;
  v.push_back(big);
  Ent chr;
  chr.e.path = "dev/null";
  chr.e.type = TarType::kChar;
  chr.e.mode = 0666;
  chr.e.dev_major = 1;
  chr.e.dev_minor = 3;
  v.push_back(chr);
  Ent fifo = chr;
  fifo.e.path = "dev/fifo";
  fifo.e.type = TarType::kFifo;
  fifo.e.dev_major = fifo.e.dev_minor = 0;
  v.push_back(fifo);
  return v;
}

TEST_CASE("tar: what the writer writes the reader reads back", "[tar]") {
  test::LayerBuilder b(0);
  const std::vector<Ent> in = sample();
  const std::string bytes = test::write_tar(b.root() + "/a.tar", in);
  CHECK(bytes.size() % 512 == 0);
  ReadResult r = read_tar(b.root() + "/a.tar");
  INFO(r.why);
  REQUIRE(r.error == 0);
  REQUIRE(r.ents.size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const TarEntry& w = in[i].e;
    const TarEntry& g = r.ents[i].e;
    INFO(w.path);
    CHECK(g.path == w.path);
    CHECK(g.type == w.type);
    CHECK(g.link == w.link);
    CHECK(g.mode == w.mode);
    CHECK(g.uid == w.uid);
    CHECK(g.gid == w.gid);
    CHECK(g.mtime.tv_sec == w.mtime.tv_sec);
    CHECK(g.mtime.tv_nsec == w.mtime.tv_nsec);
    CHECK(g.dev_major == w.dev_major);
    CHECK(g.dev_minor == w.dev_minor);
    CHECK(g.xattrs == w.xattrs);
    CHECK(r.ents[i].data == in[i].data);
  }
}

TEST_CASE("tar: the same entries give the same bytes", "[tar]") {
  test::LayerBuilder b(0);
  CHECK(test::write_tar(b.root() + "/a.tar", sample()) ==
        test::write_tar(b.root() + "/b.tar", sample()));
}

TEST_CASE("tar: GNU tar lists and extracts what we write", "[tar]") {
  test::LayerBuilder b(0);
  std::vector<Ent> in = sample();
  in.pop_back();  // no device nodes: an unprivileged extraction would fail on them
  in.pop_back();
  test::write_tar(b.root() + "/a.tar", in);
  const std::string listing = test::shell("tar -tf " + b.root() + "/a.tar");
  std::string want;
  for (const Ent& x : in) want += x.e.path + "\n";
  CHECK(listing == want);
  test::shell("mkdir " + b.root() + "/x && tar -C " + b.root() + "/x -xf " + b.root() +
              "/a.tar 2>/dev/null");
  CHECK(test::read_file(b.root() + "/x/" + in[6].e.path) == std::string(5000, 'x'));
  CHECK(test::read_file(b.root() + "/x/" + in[5].e.path) == "prefix split");
}

TEST_CASE("tar: archives of GNU tar, gnu and pax formats, read back", "[tar]") {
  test::LayerBuilder b(1);
  const std::string deep = std::string(110, 'p') + "/" + std::string(150, 'q');
  b.file(0, deep + "/file", "deep");
  b.symlink(0, "sym", std::string(120, 'L'));
  const bool user_xattr =
      ::lsetxattr(b.path(0, deep + "/file").c_str(), "user.k", "val", 3, 0) == 0;
  for (const char* format : {"gnu", "pax"}) {
    INFO(format);
    const std::string tarfile = b.root() + "/" + format + ".tar";
    test::shell(std::string("tar --format=") + format + " --xattrs --xattrs-include='user.*' -C " +
                b.layer(0) + " -cf " + tarfile + " .");
    ReadResult r = read_tar(tarfile);
    INFO(r.why);
    REQUIRE(r.error == 0);
    bool saw_file = false, saw_sym = false;
    for (const Ent& x : r.ents) {
      if (x.e.path == "./" + deep + "/file") {
        saw_file = true;
        CHECK(x.data == "deep");
        if (user_xattr && std::string(format) == "pax") {
          CHECK(x.e.xattrs == std::vector<std::pair<std::string, std::string>>{{"user.k", "val"}});
        }
      }
      if (x.e.path == "./sym") {
        saw_sym = true;
        CHECK(x.e.type == TarType::kSymlink);
        CHECK(x.e.link == std::string(120, 'L'));
      }
    }
    CHECK(saw_file);
    CHECK(saw_sym);
  }
}

TEST_CASE("tar: a truncated archive is an error wherever it is cut", "[tar]") {
  test::LayerBuilder b(0);
  const std::string bytes = test::write_tar(b.root() + "/a.tar", sample());
  // Everything but the end-of-archive marker must be there: cut anywhere before it.
  for (size_t cut = 1; cut + 1024 <= bytes.size(); cut += 173) {
    test::put_file(b.root() + "/cut.tar", bytes.substr(0, cut));
    ReadResult r = read_tar(b.root() + "/cut.tar");
    INFO("cut at " << cut);
    CHECK(r.error == EBADMSG);
    CHECK(r.why.find("truncated") != std::string::npos);
  }
  test::put_file(b.root() + "/cut.tar", bytes.substr(0, bytes.size() - 1024));
  CHECK(read_tar(b.root() + "/cut.tar").why.find("no end-of-archive marker") != std::string::npos);
}

TEST_CASE("tar: a corrupt header or an unsupported type is refused", "[tar]") {
  test::LayerBuilder b(0);
  std::string bytes = test::write_tar(b.root() + "/a.tar", {test::file_ent("a", "x")});
  std::string bad = bytes;
  bad[3] = 'Z';  // the name changes, the checksum does not
  test::put_file(b.root() + "/bad.tar", bad);
  ReadResult r = read_tar(b.root() + "/bad.tar");
  CHECK(r.error == EBADMSG);
  CHECK(r.why.find("checksum") != std::string::npos);
  test::put_file(b.root() + "/junk.tar", std::string(2048, 'j'));
  CHECK(read_tar(b.root() + "/junk.tar").error == EBADMSG);
  // A GNU sparse entry ('S'), checksum fixed up.
  std::string sparse = bytes;
  sparse[156] = 'S';
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i)
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(sparse[i]);
  std::snprintf(sparse.data() + 148, 8, "%06o", sum);
  test::put_file(b.root() + "/sparse.tar", sparse);
  r = read_tar(b.root() + "/sparse.tar");
  CHECK(r.error == EPROTONOSUPPORT);
  CHECK(r.why.find("type 'S'") != std::string::npos);
}

TEST_CASE("tar: pax records", "[tar]") {
  CHECK(pax_record("path", "abc") == "12 path=abc\n");
  // "a=" + 95 bytes + " \n" is 99 bytes; with 2 digits 101 needs 3: the length counts itself.
  CHECK(pax_record("a", std::string(95, 'v')).starts_with("102 "));
  const std::string r = pax_record("k", std::string(93, 'v'));
  CHECK(std::stoul(r.substr(0, r.find(' '))) == r.size());
  for (size_t n = 0; n < 1200; ++n) {
    const std::string rec = pax_record("key", std::string(n, 'v'));
    REQUIRE(std::stoul(rec.substr(0, rec.find(' '))) == rec.size());
  }
}

// A ustar header block of `type` for `name` with `size`, checksum filled in.
std::string raw_header(const std::string& name, char type, uint64_t size) {
  std::string b(512, '\0');
  std::memcpy(b.data(), name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(b.data() + 100, 8, "%07o", 0644);
  std::snprintf(b.data() + 108, 8, "%07o", 0);
  std::snprintf(b.data() + 116, 8, "%07o", 0);
  std::snprintf(b.data() + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(b.data() + 136, 12, "%011o", 0);
  b[156] = type;
  std::memcpy(b.data() + 257, "ustar\0" "00", 8);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(b[i]);
  std::snprintf(b.data() + 148, 8, "%06o", sum);
  return b;
}
// An entry of `type` with `data`, padded to whole blocks.
std::string raw_entry(const std::string& name, char type, std::string data) {
  std::string out = raw_header(name, type, data.size());
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return out + data;
}
const std::string kEnd(1024, '\0');

TEST_CASE("tar: a pax record length past its header is refused, not looped on", "[tar]") {
  test::LayerBuilder b(0);
  // The third record's length wraps the position back to the second record.
  test::put_file(b.root() + "/loop.tar",
                 raw_entry("pax", 'x', "5 b=\n5 a=\n18446744073709551611 path=xx\n") +
                     raw_entry("f", '0', "data") + kEnd);
  ReadResult r = read_tar(b.root() + "/loop.tar");
  CHECK(r.error == EBADMSG);
  CHECK(r.why.find("malformed pax") != std::string::npos);
}

TEST_CASE("tar: a size near 2^64 is refused, so no data is read as headers", "[tar]") {
  test::LayerBuilder b(0);
  // A pax size of 2^64-1 would wrap "data plus padding" to 0 and let "hidden" through.
  test::put_file(b.root() + "/smuggle.tar",
                 raw_entry("visible", '0', "v") +
                     raw_entry("pax", 'x', pax_record("size", "18446744073709551615")) +
                     raw_header(".wh.gone", '0', 0) + raw_entry("hidden", '0', "smuggled") + kEnd);
  ReadResult r = read_tar(b.root() + "/smuggle.tar");
  CHECK(r.error == EBADMSG);
  CHECK(r.why.find("bad pax value for 'size'") != std::string::npos);
  // The same in a base-256 size field.
  std::string h = raw_header(".wh.gone", '0', 0);
  h[124] = static_cast<char>(0x80);
  for (size_t i = 125; i < 136; ++i) h[i] = static_cast<char>(i < 128 ? 0 : 0xff);  // 2^64-1
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += static_cast<unsigned char>(h[i]);
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  test::put_file(b.root() + "/b256.tar", h + raw_entry("hidden", '0', "smuggled") + kEnd);
  r = read_tar(b.root() + "/b256.tar");
  CHECK(r.error == EBADMSG);
  CHECK(r.why.find("out of range") != std::string::npos);
}

TEST_CASE("tar: extended headers are bounded; a global one may not name entries", "[tar]") {
  test::LayerBuilder b(0);
  test::put_file(b.root() + "/gpath.tar", raw_entry("g", 'g', pax_record("path", "x")) +
                                              raw_entry("f", '0', "data") + kEnd);
  ReadResult r = read_tar(b.root() + "/gpath.tar");
  CHECK(r.error == EBADMSG);
  CHECK(r.why.find("global header sets a name") != std::string::npos);
  // Five 900 KB extended headers before one entry: each is allowed, together they are not.
  std::string many;
  for (int i = 0; i < 5; ++i) many += raw_entry("x", 'x', pax_record("comment", std::string(900000, 'c')));
  test::put_file(b.root() + "/many.tar", many + raw_entry("f", '0', "data") + kEnd);
  r = read_tar(b.root() + "/many.tar");
  CHECK(r.error == EBADMSG);
  CHECK(r.why.find("larger than 4 MiB") != std::string::npos);
  // A repeated xattr record replaces the earlier value instead of adding one.
  test::put_file(b.root() + "/xattr.tar",
                 raw_entry("x", 'x', pax_record("SCHILY.xattr.user.a", "1") +
                                         pax_record("SCHILY.xattr.user.a", "2")) +
                     raw_entry("f", '0', "data") + kEnd);
  r = read_tar(b.root() + "/xattr.tar");
  REQUIRE(r.error == 0);
  REQUIRE(r.ents.size() == 1);
  REQUIRE(r.ents[0].e.xattrs.size() == 1);
  CHECK(r.ents[0].e.xattrs[0].second == "2");
}

}  // namespace
}  // namespace unionfs
