// Image archives: an index of the outer tar (headers only), then the two formats' JSON:
// docker-archive's manifest.json → config (rootfs.diff_ids) and layer members; OCI's
// index.json → manifest → config and layer blobs, each blob checked against its digest.
#include "core/image_archive.h"

#include <cerrno>

#include "core/byte_stream.h"
#include "core/json.h"
#include "core/layer_extract.h"
#include "core/sha256.h"
#include "core/sys.h"
#include "core/tar.h"

namespace unionfs {
namespace {

constexpr uint64_t kMaxJson = 64 << 20;
constexpr int kMaxLinkHops = 8;

Errno invalid(std::string* why, const std::string& msg) {
  if (why) *why = msg;
  return Errno{EINVAL};
}

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A member whose path names its own digest: "blobs/sha256/<hex>" or "<hex>.json".
std::string digest_in_name(const std::string& path) {
  const std::string base = base_of(path);
  if (dir_of(path) == "blobs/sha256" && is_sha256_hex(base)) return base;
  if (base.size() == 69 && base.ends_with(".json") && is_sha256_hex(base.substr(0, 64)))
    return base.substr(0, 64);
  return "";
}

std::string names_of(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + (n.empty() ? "<unnamed>" : n);
  return out;
}

}  // namespace

Result<ArchiveIndex> ArchiveIndex::read(UniqueFd archive, std::string* why) {
  ArchiveIndex idx;
  idx.fd_ = std::move(archive);
  const int fd = idx.fd();
  UNIONFS_ASSIGN_OR_RETURN(struct stat st, sys::fstat(fd));
  FileRange range(fd, 0, static_cast<uint64_t>(st.st_size));
  TarReader tar(range);
  std::string bad;
  Status s = tar.for_each([&](const TarEntry& e) -> Status {
    auto path = clean_archive_path(e.path);
    if (!path) {
      bad = "archive member '" + e.path + "': absolute or with '..'";
      return Errno{EINVAL};
    }
    idx.members_[*path] = ArchiveMember{tar.offset(), e.size, static_cast<char>(e.type), e.link};
    return kOk;
  });
  if (!s) {
    if (why) *why = bad.empty() ? tar.why() : bad;
    return Errno{s.error()};
  }
  return idx;
}

const ArchiveMember* ArchiveIndex::file(const std::string& path) const {
  std::string p = path;
  for (int hop = 0; hop <= kMaxLinkHops; ++hop) {
    auto it = members_.find(p);
    if (it == members_.end()) return nullptr;
    const ArchiveMember& m = it->second;
    if (m.type == '0') return &m;
    if (m.type != '1' && m.type != '2') return nullptr;
    // A symlink is relative to its directory (docker save links <id>/layer.tar to the blob);
    // a hard link names an archive path.
    std::string target = m.link;
    if (m.type == '2' && !target.starts_with("/")) target = dir_of(p) + "/" + target;
    while (target.starts_with("/")) target.erase(0, 1);
    // Resolve ".." lexically, inside the archive only.
    std::vector<std::string> parts;
    for (size_t start = 0; start <= target.size();) {
      size_t slash = target.find('/', start);
      if (slash == std::string::npos) slash = target.size();
      const std::string c = target.substr(start, slash - start);
      if (c == "..") {
        if (parts.empty()) return nullptr;
        parts.pop_back();
      } else if (!c.empty() && c != ".") {
        parts.push_back(c);
      }
      start = slash + 1;
    }
    p.clear();
    for (const auto& c : parts) p += (p.empty() ? "" : "/") + c;
  }
  return nullptr;
}

Result<std::string> ArchiveIndex::slurp(const std::string& path, std::string* why) const {
  const ArchiveMember* m = file(path);
  if (!m) {
    if (why) *why = "the archive has no file '" + path + "'";
    return Errno{ENOENT};
  }
  if (m->size > kMaxJson) {
    if (why) *why = "'" + path + "' is larger than 64 MiB";
    return Errno{EFBIG};
  }
  std::string data(m->size, '\0');
  FileRange r(fd(), m->offset, m->size);
  size_t have = 0;
  while (have < data.size()) {
    UNIONFS_ASSIGN_OR_RETURN(size_t got, r.read(data.data() + have, data.size() - have));
    if (got == 0) {
      if (why) *why = "'" + path + "' is cut short: truncated archive";
      return Errno{EBADMSG};
    }
    have += got;
  }
  return data;
}

std::string sha256_of_digest(const std::string& digest) {
  if (!digest.starts_with("sha256:")) return "";
  const std::string hex = digest.substr(7);
  return is_sha256_hex(hex) ? hex : "";
}

bool image_name_matches(const std::string& have, const std::string& want) {
  auto norm = [](std::string s) {
    for (const char* prefix : {"docker.io/library/", "docker.io/", "localhost/"}) {
      if (s.starts_with(prefix)) {
        s.erase(0, std::string(prefix).size());
        break;
      }
    }
    const std::string last = base_of(s);
    if (last.find(':') == std::string::npos && last.find('@') == std::string::npos) s += ":latest";
    return s;
  };
  return !have.empty() && !want.empty() && (have == want || norm(have) == norm(want));
}

namespace {

// The JSON of a member, checked against the digest its name or descriptor gives.
Result<Json> load_json(const ArchiveIndex& idx, const std::string& path, const std::string& hex,
                       uint64_t size, std::string* why) {
  UNIONFS_ASSIGN_OR_RETURN(std::string text, idx.slurp(path, why));
  if (size != 0 && text.size() != size) {
    return invalid(why, "'" + path + "' has " + std::to_string(text.size()) +
                            " bytes, its descriptor says " + std::to_string(size));
  }
  if (!hex.empty() && Sha256::of(text) != hex) {
    return invalid(why, "digest mismatch: '" + path + "' has sha256:" + Sha256::of(text) +
                            ", expected sha256:" + hex);
  }
  std::string err;
  auto json = Json::parse(text, &err);
  if (!json) return invalid(why, "'" + path + "': " + err);
  return json;
}

// rootfs.diff_ids of an image config, as hex.
Result<std::vector<std::string>> diff_ids(const Json& config, const std::string& path,
                                          std::string* why) {
  const Json* rootfs = config.get("rootfs");
  const Json* ids = rootfs ? rootfs->get("diff_ids") : nullptr;
  if (!ids || !ids->is_array()) return invalid(why, "'" + path + "' has no rootfs.diff_ids");
  std::vector<std::string> out;
  for (const Json& id : ids->items()) {
    const std::string hex = sha256_of_digest(id.str());
    if (hex.empty()) return invalid(why, "'" + path + "': bad diff_id '" + id.str() + "'");
    out.push_back(hex);
  }
  return out;
}

Result<ImagePlan> plan_docker(const ArchiveIndex& idx, const std::string& want, std::string* why) {
  UNIONFS_ASSIGN_OR_RETURN(Json manifest, load_json(idx, "manifest.json", "", 0, why));
  if (!manifest.is_array() || manifest.items().empty())
    return invalid(why, "manifest.json lists no image");
  const Json* pick = nullptr;
  std::string pick_name;
  std::vector<std::string> all;
  for (const Json& img : manifest.items()) {
    const Json* tags = img.get("RepoTags");
    std::vector<std::string> names;
    if (tags && tags->is_array()) {
      for (const Json& t : tags->items()) names.push_back(t.str());
    }
    all.push_back(names.empty() ? "" : names.front());
    for (const auto& n : names) {
      if (!pick && image_name_matches(n, want)) {
        pick = &img;
        pick_name = n;
      }
    }
  }
  if (want.empty() && manifest.items().size() == 1) {
    pick = &manifest.items().front();
    pick_name = all.front();
  }
  if (!pick && want.empty()) {
    return invalid(why, "the archive holds " + std::to_string(all.size()) + " images (" +
                            names_of(all) + "): choose one with --image NAME");
  }
  if (!pick)
    return invalid(why, "no image '" + want + "' in the archive (it has: " + names_of(all) + ")");
  const std::string config_path = pick->get_str("Config");
  UNIONFS_ASSIGN_OR_RETURN(Json config,
                           load_json(idx, config_path, digest_in_name(config_path), 0, why));
  UNIONFS_ASSIGN_OR_RETURN(std::vector<std::string> ids, diff_ids(config, config_path, why));
  const Json* layers = pick->get("Layers");
  if (!layers || !layers->is_array()) return invalid(why, "manifest.json: no Layers");
  if (layers->items().size() != ids.size()) {
    return invalid(why, "manifest.json lists " + std::to_string(layers->items().size()) +
                            " layers, the config " + std::to_string(ids.size()) + " diff_ids");
  }
  ImagePlan plan{"docker-archive", pick_name, {}};
  for (size_t i = 0; i < ids.size(); ++i) {
    LayerRef l;
    l.path = layers->items()[i].str();
    l.blob_sha256 = digest_in_name(l.path);
    l.diff_id = ids[i];
    plan.layers.push_back(l);
  }
  return plan;
}

struct Descriptor {
  std::string path;
  std::string hex;
  uint64_t size = 0;
  std::string media_type;
};

Result<Descriptor> descriptor(const Json& d, const std::string& where, std::string* why) {
  Descriptor out;
  const std::string digest = d.get_str("digest");
  out.hex = sha256_of_digest(digest);
  if (out.hex.empty()) {
    return invalid(why, where + ": digest '" + digest + "' is not sha256:<64 hex digits>");
  }
  out.path = "blobs/sha256/" + out.hex;
  const Json* size = d.get("size");
  if (size && !size->as_uint(&out.size)) return invalid(why, where + ": bad size");
  out.media_type = d.get_str("mediaType");
  return out;
}

std::string ref_name(const Json& d) {
  const Json* a = d.get("annotations");
  if (!a) return "";
  std::string n = a->get_str("io.containerd.image.name");
  return n.empty() ? a->get_str("org.opencontainers.image.ref.name") : n;
}

// The manifest descriptor index.json names for `want` (or its only one).
Result<Descriptor> pick_manifest(const ArchiveIndex& idx, const std::string& want,
                                 std::string* name, std::string* why) {
  UNIONFS_ASSIGN_OR_RETURN(Json index, load_json(idx, "index.json", "", 0, why));
  const Json* ms = index.get("manifests");
  if (!ms || !ms->is_array() || ms->items().empty())
    return invalid(why, "index.json lists no manifest");
  std::vector<std::string> all;
  const Json* pick = nullptr;
  for (const Json& d : ms->items()) {
    all.push_back(ref_name(d));
    const Json* a = d.get("annotations");
    const std::string oci_ref = a ? a->get_str("org.opencontainers.image.ref.name") : "";
    if (!pick && (image_name_matches(all.back(), want) || (!want.empty() && oci_ref == want))) {
      pick = &d;
    }
  }
  if (want.empty() && all.size() == 1) pick = &ms->items().front();
  if (!pick && want.empty()) {
    return invalid(why, "the archive holds " + std::to_string(all.size()) + " images (" +
                            names_of(all) + "): choose one with --image NAME");
  }
  if (!pick)
    return invalid(why, "no image '" + want + "' in the archive (it has: " + names_of(all) + ")");
  *name = ref_name(*pick);
  return descriptor(*pick, "index.json", why);
}

Result<ImagePlan> plan_oci(const ArchiveIndex& idx, const std::string& want, std::string* why) {
  std::string name;
  UNIONFS_ASSIGN_OR_RETURN(Descriptor md, pick_manifest(idx, want, &name, why));
  UNIONFS_ASSIGN_OR_RETURN(Json manifest, load_json(idx, md.path, md.hex, md.size, why));
  if (manifest.get("manifests")) {
    // An image index (several platforms): follow it only when it has one manifest.
    const Json* ms = manifest.get("manifests");
    if (!ms->is_array() || ms->items().size() != 1) {
      return invalid(why, "the image is a multi-platform index (" + md.path +
                              "): not supported, save a single platform");
    }
    UNIONFS_ASSIGN_OR_RETURN(md, descriptor(ms->items().front(), md.path, why));
    UNIONFS_ASSIGN_OR_RETURN(manifest, load_json(idx, md.path, md.hex, md.size, why));
  }
  const Json* cd = manifest.get("config");
  const Json* layers = manifest.get("layers");
  if (!cd || !layers || !layers->is_array()) {
    return invalid(why, "'" + md.path + "' is not an image manifest (no config or layers)");
  }
  UNIONFS_ASSIGN_OR_RETURN(Descriptor cdesc, descriptor(*cd, md.path + " config", why));
  UNIONFS_ASSIGN_OR_RETURN(Json config, load_json(idx, cdesc.path, cdesc.hex, cdesc.size, why));
  UNIONFS_ASSIGN_OR_RETURN(std::vector<std::string> ids, diff_ids(config, cdesc.path, why));
  if (layers->items().size() != ids.size()) {
    return invalid(why, "'" + md.path + "' lists " + std::to_string(layers->items().size()) +
                            " layers, the config " + std::to_string(ids.size()) + " diff_ids");
  }
  ImagePlan plan{"oci-archive", name, {}};
  for (size_t i = 0; i < ids.size(); ++i) {
    UNIONFS_ASSIGN_OR_RETURN(Descriptor ld,
                             descriptor(layers->items()[i], md.path + " layer", why));
    plan.layers.push_back(LayerRef{ld.path, ld.hex, ld.size, ids[i], ld.media_type});
  }
  return plan;
}

}  // namespace

Result<ImagePlan> plan_image(const ArchiveIndex& index, const std::string& want, std::string* why) {
  if (index.has("manifest.json")) return plan_docker(index, want, why);
  if (index.has("index.json")) return plan_oci(index, want, why);
  return invalid(why,
                 "neither manifest.json (docker-archive) nor index.json (OCI layout) in "
                 "the archive: not an image archive");
}

}  // namespace unionfs
