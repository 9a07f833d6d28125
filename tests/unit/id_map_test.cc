// IdMap: parsing of uidmapping=/gidmapping=/squash_to_* and the translation of owners both ways,
// checked against what fuse-overlayfs 1.10 does with the same options (see
// tests/integration/idmap.sh for the same comparison on live mounts).
#include "core/id_map.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "core/layer.h"

namespace unionfs {
namespace {

struct stat owned(uint32_t uid, uint32_t gid) {
  struct stat st {};
  st.st_uid = uid;
  st.st_gid = gid;
  return st;
}

IdMap options(const std::vector<const char*>& opts) {
  IdMap m;
  for (const char* o : opts) REQUIRE(m.parse_option(o));
  return m;
}

TEST_CASE("an empty or absent mapping is the identity", "[idmap]") {
  CHECK(IdMapping().identity());
  IdMapping m = IdMapping::parse("", "uidmapping");
  CHECK(m.identity());
  CHECK(m.to_host(12345) == 12345u);
  CHECK(m.to_container(12345) == 12345u);
  IdMap none;
  CHECK(none.identity());
  struct stat st = owned(7, 8);
  none.to_host(st);
  CHECK(st.st_uid == 7u);
  CHECK(st.st_gid == 8u);
}

TEST_CASE("a mapping is CONTAINER:HOST:COUNT triples joined by colons", "[idmap]") {
  // The example of fuse-overlayfs(1): a rootless user namespace on a single line.
  IdMapping m = IdMapping::parse("0:1000:1:1:100000:65536", "uidmapping");
  REQUIRE(m.ranges().size() == 2);
  CHECK(m.ranges()[1].container == 1u);
  CHECK(m.ranges()[1].host == 100000u);
  CHECK(m.ranges()[1].count == 65536u);
  // Layer → mount.
  CHECK(m.to_host(0) == 1000u);
  CHECK(m.to_host(1) == 100000u);
  CHECK(m.to_host(1000) == 100999u);
  CHECK(m.to_host(65536) == 165535u);
  CHECK_FALSE(m.to_host(65537).has_value());
  CHECK_FALSE(m.to_host(100005).has_value());
  // Mount → layer.
  CHECK(m.to_container(1000) == 0u);
  CHECK(m.to_container(100004) == 5u);
  CHECK_FALSE(m.to_container(0).has_value());
  CHECK_FALSE(m.to_container(999).has_value());
  CHECK_FALSE(m.to_container(165536).has_value());
}

TEST_CASE("empty fields are skipped, as fuse-overlayfs's strtok does", "[idmap]") {
  // What containers/storage in podman 4.3 passes for --uidmap 0:1:2000.
  IdMapping m = IdMapping::parse(":0:1:2000", "uidmapping");
  REQUIRE(m.ranges().size() == 1);
  CHECK(m.to_host(0) == 1u);
  CHECK(IdMapping::parse("0::1000:1", "uidmapping").to_host(0) == 1000u);
  CHECK(IdMapping::parse("3:5:1:", "uidmapping").to_host(3) == 5u);
  CHECK(IdMapping::parse(":::", "uidmapping").identity());
}

TEST_CASE("where ranges overlap the last one wins", "[idmap]") {
  IdMapping m = IdMapping::parse("3:5:1:3:6:1", "uidmapping");
  CHECK(m.to_host(3) == 6u);
  CHECK(m.to_container(5) == 3u);
  CHECK(m.to_container(6) == 3u);
}

TEST_CASE("ranges reach the top of the id space but do not wrap", "[idmap]") {
  IdMapping all = IdMapping::parse("0:0:4294967295", "uidmapping");
  CHECK(all.to_host(4294967294u) == 4294967294u);
  IdMapping top = IdMapping::parse("4294967295:0:1", "uidmapping");
  CHECK(top.to_host(4294967295u) == 0u);
  CHECK(IdMapping::parse("3:5:0", "uidmapping").to_host(3) == std::nullopt);  // as fuse-overlayfs
  // fuse-overlayfs computes the end of this range in 32 bits, wraps to 0 and never matches.
  CHECK(IdMapping::parse("1:0:4294967295", "uidmapping").to_host(1) == 0u);
  CHECK_THROWS_AS(IdMapping::parse("2:0:4294967295", "uidmapping"), SetupError);
  CHECK_THROWS_AS(IdMapping::parse("0:4294967295:2", "uidmapping"), SetupError);
}

TEST_CASE("malformed mappings are refused with a message naming the option", "[idmap]") {
  for (const char* bad : {"0:1000", "0:1000:1:2", "a:1:1", "-1:5:1", " 3:5:1", "+3:5:1",
                          "4294967296:5:1", "0:0:99999999999", "0x10:5:1"}) {
    INFO(bad);
    try {
      (void)IdMapping::parse(bad, "gidmapping");
      FAIL("accepted");
    } catch (const SetupError& e) {
      CHECK(std::string(e.what()).find("gidmapping='" + std::string(bad) + "'") !=
            std::string::npos);
    }
  }
}

TEST_CASE("ids no range holds become the overflow ids in both directions", "[idmap]") {
  IdMap m = options({"uidmapping=0:1000:1", "gidmapping=0:2000:1"});
  m.overflow_uid = 65534;
  m.overflow_gid = 65533;
  struct stat st = owned(3, 4);
  m.to_host(st);
  CHECK(st.st_uid == 65534u);
  CHECK(st.st_gid == 65533u);
  st = owned(0, 0);
  m.to_host(st);
  CHECK(st.st_uid == 1000u);
  CHECK(st.st_gid == 2000u);
  CHECK(m.container_uid(1000) == 0u);
  CHECK(m.container_gid(2000) == 0u);
  CHECK(m.container_uid(0) == 65534u);
  CHECK(m.container_gid(5) == 65533u);
}

TEST_CASE("squash_to_uid/gid beat squash_to_root, which beats the mappings", "[idmap]") {
  struct Case {
    std::vector<const char*> opts;
    uint32_t uid, gid;
  };
  // Lower file 3:4, as in tests/integration/idmap.sh against fuse-overlayfs 1.10.
  for (const Case& c : std::vector<Case>{
           Case{{"squash_to_root"}, 0, 0}, Case{{"squash_to_uid=7"}, 7, 4},
           Case{{"squash_to_gid=8"}, 3, 8}, Case{{"squash_to_root", "squash_to_gid=8"}, 0, 8},
           Case{{"squash_to_uid=7", "squash_to_gid=8"}, 7, 8},
           Case{{"squash_to_root", "uidmapping=0:1000:1"}, 0, 0},
           Case{{"squash_to_uid=7", "uidmapping=3:50:1", "gidmapping=4:60:1"}, 7, 60}}) {
    IdMap m = options(c.opts);
    CHECK(m.squashes());
    CHECK_FALSE(m.identity());
    struct stat st = owned(3, 4);
    m.to_host(st);
    CHECK(st.st_uid == c.uid);
    CHECK(st.st_gid == c.gid);
  }
  // Squashing changes what is shown, never what is stored.
  IdMap m = options({"squash_to_root", "uidmapping=0:1000:1"});
  CHECK(m.container_uid(1000) == 0u);
  CHECK(m.container_gid(1000) == 1000u);
}

TEST_CASE("parse_option takes only the id options and checks squash ids", "[idmap]") {
  IdMap m;
  CHECK_FALSE(m.parse_option("squash_to_root=1"));
  CHECK_FALSE(m.parse_option("uid=5"));
  CHECK_FALSE(m.parse_option("lowerdir=/x"));
  CHECK(m.identity());
  CHECK(m.parse_option("squash_to_uid=0"));
  CHECK(m.parse_option("squash_to_gid=4294967294"));
  CHECK(*m.squash_uid == 0u);
  CHECK(*m.squash_gid == 4294967294u);
  for (const char* bad :
       {"squash_to_uid=", "squash_to_uid=abc", "squash_to_uid=-1", "squash_to_gid=-5",
        "squash_to_gid=4294967295", "squash_to_uid=99999999999"}) {
    INFO(bad);
    CHECK_THROWS_AS(m.parse_option(bad), SetupError);
  }
  // The last of repeated options wins, as with fuse_opt in fuse-overlayfs.
  CHECK(m.parse_option("uidmapping=0:1:1"));
  CHECK(m.parse_option("uidmapping=0:2:1"));
  CHECK(m.uids.to_host(0) == 2u);
}

}  // namespace
}  // namespace unionfs
