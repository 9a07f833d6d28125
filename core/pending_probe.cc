// lookup_name_probing: a lookup in a merged directory whose lower instances are still pending,
// by path from the parent's instances (see dir_index.h).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <string>

#include "core/dir_index.h"
#include "core/sys.h"

namespace unionfs {

namespace {

// What pending instance `i` says of the layers below it, asked once and cached in `pending`.
// `rel` is the instance's path below its parent's instance.
uint8_t opacity_of(const WhiteoutFormat& fmt, const PendingLower& pending, size_t i, int parent,
                   const std::string& rel) {
  uint8_t v = pending.opacity[i].load(std::memory_order_relaxed);
  if (v != 0) return v;
  const Opacity op = fmt.xattr_opacity_at(parent, rel.c_str());
  v = PendingLower::kOpacityKnown | static_cast<uint8_t>(op);
  // As dir_opacity: an xattr answer comes first; OCI's marker is read only without one.
  if (op == Opacity::kNone && fmt.read_oci() &&
      sys::stat_at(parent, (rel + "/" + std::string(kOciOpaqueName)).c_str()).ok()) {
    v |= PendingLower::kOciOpaque;
  }
  pending.opacity[i].store(v, std::memory_order_relaxed);
  return v;
}

Opacity xattr_part(uint8_t v) { return PendingLower::xattr_of(v); }

// A non-directory found at `rel` below `parent` (stat'ed as `st`) in `layer`: an upper one is
// opened (O_PATH) and what was opened is stat'ed, as Search::take does; a lower one is opened
// only when needed (FoundAt).
Result<Found> found_file(const LayerStack& stack, const SharedFd& parent, const std::string& rel,
                         size_t layer, const struct stat& st) {
  Found f;
  f.exists = true;
  f.layer = layer;
  if (stack.is_upper(layer)) {
    UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(parent->get(), rel.c_str(), O_PATH));
    UNIONFS_ASSIGN_OR_RETURN(f.st, sys::fstat(fd.get()));
    f.fd = std::make_shared<const UniqueFd>(std::move(fd));
  } else {
    f.st = st;
    f.at = std::make_shared<const FoundAt>(FoundAt{parent, rel});
  }
  f.origin_dev = f.st.st_dev;
  f.origin_ino = f.st.st_ino;
  return f;
}

}  // namespace

Result<std::optional<Found>> lookup_name_probing(const LayerStack& stack, const WhiteoutFormat& fmt,
                                                 const DirParts& parts, const PendingLower& pending,
                                                 std::string_view name) {
  // The instances already open: none of them is opaque (else nothing would be pending).
  for (const LayerDir& part : parts) {
    UNIONFS_ASSIGN_OR_RETURN(ProbeResult p, probe(fmt, part, name));
    if (p.kind == Probe::kAbsent) continue;
    if (p.kind == Probe::kWhiteout) {
      Found f;
      f.upper_whiteout = stack.is_upper(part.layer);
      return std::optional<Found>(std::move(f));
    }
    if (S_ISDIR(p.st.st_mode)) return std::optional<Found>();
    UNIONFS_ASSIGN_OR_RETURN(Found f,
                             found_file(stack, part.fd, std::string(name), part.layer, p.st));
    return std::optional<Found>(std::move(f));
  }
  const DirParts& above = pending.parent_index->parts();
  const std::string dir = pending.name + "/";
  const std::string rel = dir + std::string(name);
  // First NAME alone, down the instances: a name that none holds (what module loaders ask
  // most) is missing whatever the markers above say, so it costs one fstatat per instance.
  size_t k = 0;
  std::optional<struct stat> st;
  for (; k < pending.hits.size(); ++k) {
    const IndexHit& h = pending.hits[k];
    if (h.type != DT_DIR) break;  // a whiteout or a non-directory ends the merge
    auto r = sys::stat_at(above[h.part].get(), rel.c_str());
    if (r) {
      st = *r;
      break;
    }
    // Changed under us (ENOTDIR, ELOOP), or an error in an instance that the markers above
    // might have hidden: the caller opens the instances and decides.
    if (r.error() != ENOENT) return std::optional<Found>();
    if (h.hides_lower) break;
  }
  if (!st || is_kernel_whiteout(*st)) return std::optional<Found>(Found{});
  // Then whether an instance above the one holding it hides it: its ".wh.NAME" or its opacity
  // (a directory too: only a visible one is left to the caller).
  for (size_t i = 0; i < k; ++i) {
    const int parent = above[pending.hits[i].part].get();
    if (fmt.read_oci() &&
        sys::stat_at(parent, (dir + std::string(kOciWhiteoutPrefix) + std::string(name)).c_str())
            .ok()) {
      return std::optional<Found>(Found{});
    }
    const uint8_t v = opacity_of(fmt, pending, i, parent, pending.name);
    if (xattr_part(v) == Opacity::kOpaque || (v & PendingLower::kOciOpaque)) {
      return std::optional<Found>(Found{});
    }
  }
  if (S_ISDIR(st->st_mode)) return std::optional<Found>();
  const LayerDir& at = above[pending.hits[k].part];
  const int parent = at.get();
  if (S_ISREG(st->st_mode) && st->st_size == 0 &&
      xattr_part(opacity_of(fmt, pending, k, parent, pending.name)) == Opacity::kXWhiteouts &&
      fmt.is_xattr_whiteout(parent, rel.c_str())) {
    return std::optional<Found>(Found{});
  }
  UNIONFS_ASSIGN_OR_RETURN(Found f, found_file(stack, at.fd, rel, at.layer, *st));
  return std::optional<Found>(std::move(f));
}

}  // namespace unionfs
