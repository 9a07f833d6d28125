// IdMap: parsing of the id-mapping options and the translation of owners both ways.
// The semantics follow fuse-overlayfs (main.c: read_mappings, find_mapping, rpl_stat, do_fchown),
// except that we refuse the malformed values it reads leniently (see IdMapping::parse).
#include "core/id_map.h"

#include <algorithm>
#include <charconv>
#include <string>

#include "core/layer.h"

namespace unionfs {
namespace {

constexpr uint64_t kIdLimit = uint64_t{1} << 32;

// A decimal number below `limit`: digits only (no sign, no blanks, no empty field).
std::optional<uint64_t> parse_number(std::string_view s, uint64_t limit) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v >= limit) return std::nullopt;
  return v;
}

// fuse-overlayfs's strtol takes signs and blanks and truncates to 32 bits, and its ranges wrap
// past 2^32 - 1 without a word. We refuse these: a mapping that silently means something else
// would show wrong owners and store wrong ones.
IdRange parse_range(std::string_view c, std::string_view h, std::string_view n,
                    std::string_view spec, std::string_view what) {
  auto fail = [&](const std::string& why) {
    return SetupError("bad " + std::string(what) + "='" + std::string(spec) + "': " + why +
                      " (expected CONTAINER_ID:HOST_ID:COUNT[:...])");
  };
  const auto vc = parse_number(c, kIdLimit), vh = parse_number(h, kIdLimit),
             vn = parse_number(n, kIdLimit);
  if (!vc || !vh || !vn) throw fail("each field must be a decimal id below 4294967296");
  if (*vc + *vn > kIdLimit || *vh + *vn > kIdLimit) throw fail("a range runs past id 4294967295");
  return IdRange{static_cast<uint32_t>(*vc), static_cast<uint32_t>(*vh),
                 static_cast<uint32_t>(*vn)};
}

}  // namespace

IdMapping IdMapping::parse(std::string_view spec, std::string_view what) {
  IdMapping m;
  if (spec.empty()) return m;
  // Empty fields are skipped, as fuse-overlayfs's strtok does: containers/storage (podman 4.3)
  // writes "uidmapping=:0:1:2000", with a leading ':'.
  std::vector<std::string_view> fields;
  for (size_t start = 0; start <= spec.size();) {
    const size_t colon = std::min(spec.find(':', start), spec.size());
    if (colon > start) fields.push_back(spec.substr(start, colon - start));
    start = colon + 1;
  }
  if (fields.size() % 3 != 0) {
    throw SetupError("bad " + std::string(what) + "='" + std::string(spec) +
                     "': the fields must come in threes (CONTAINER_ID:HOST_ID:COUNT[:...])");
  }
  for (size_t i = 0; i < fields.size(); i += 3) {
    m.ranges_.push_back(parse_range(fields[i], fields[i + 1], fields[i + 2], spec, what));
  }
  return m;
}

std::optional<uint32_t> IdMapping::find(uint32_t id, bool to_host) const {
  if (ranges_.empty()) return id;
  for (auto it = ranges_.rbegin(); it != ranges_.rend(); ++it) {
    const uint32_t from = to_host ? it->container : it->host;
    const uint32_t to = to_host ? it->host : it->container;
    if (id >= from && id - from < it->count) return to + (id - from);
  }
  return std::nullopt;
}

bool IdMap::parse_option(std::string_view opt) {
  if (opt.starts_with("uidmapping=")) {
    uids = IdMapping::parse(opt.substr(11), "uidmapping");
  } else if (opt.starts_with("gidmapping=")) {
    gids = IdMapping::parse(opt.substr(11), "gidmapping");
  } else if (opt == "squash_to_root") {
    squash_to_root = true;
  } else if (opt.starts_with("squash_to_uid=") || opt.starts_with("squash_to_gid=")) {
    // fuse-overlayfs reads an int: -1 there means "unset" and other negative values wrap; an id
    // of 4294967295 is (uid_t)-1, which no file can have.
    const auto v = parse_number(opt.substr(14), kIdLimit - 1);
    if (!v) {
      throw SetupError("bad value for " + std::string(opt) +
                       " (a decimal id from 0 to 4294967294)");
    }
    (opt[10] == 'u' ? squash_uid : squash_gid) = static_cast<uint32_t>(*v);
  } else {
    return false;
  }
  return true;
}

void IdMap::to_host(struct stat& st) const {
  st.st_uid = shown(st.st_uid, squash_uid, uids, overflow_uid);
  st.st_gid = shown(st.st_gid, squash_gid, gids, overflow_gid);
}

uint32_t IdMap::shown(uint32_t id, const std::optional<uint32_t>& squash, const IdMapping& m,
                      uint32_t overflow) const {
  // squash_to_{u,g}id= take precedence over squash_to_root, which takes precedence over the
  // mappings (fuse-overlayfs's find_mapping).
  if (squash) return *squash;
  if (squash_to_root) return 0;
  return m.to_host(id).value_or(overflow);
}

}  // namespace unionfs
