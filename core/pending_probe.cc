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
  for (size_t i = 0; i < pending.hits.size(); ++i) {
    const IndexHit& h = pending.hits[i];
    if (h.type != DT_DIR) break;  // a whiteout or a non-directory ends the merge
    const int parent = above[h.part].get();
    const size_t layer = above[h.part].layer;
    auto st = sys::stat_at(parent, rel.c_str());
    if (st) {
      if (is_kernel_whiteout(*st)) return std::optional<Found>(Found{});
      if (S_ISDIR(st->st_mode)) return std::optional<Found>();
      if (S_ISREG(st->st_mode) && st->st_size == 0 &&
          xattr_part(opacity_of(fmt, pending, i, parent, pending.name)) == Opacity::kXWhiteouts &&
          fmt.is_xattr_whiteout(parent, rel.c_str())) {
        return std::optional<Found>(Found{});
      }
      UNIONFS_ASSIGN_OR_RETURN(Found f, found_file(stack, above[h.part].fd, rel, layer, *st));
      return std::optional<Found>(std::move(f));
    }
    if (st.error() == ENOTDIR || st.error() == ELOOP) return std::optional<Found>();  // changed
    if (st.error() != ENOENT) return Errno{st.error()};
    // The last instance of the merge: its ".wh.NAME" and opacity would hide nothing.
    if (i + 1 == pending.hits.size() || pending.hits[i + 1].type != DT_DIR) break;
    if (fmt.read_oci() &&
        sys::stat_at(parent, (dir + std::string(kOciWhiteoutPrefix) + std::string(name)).c_str())
            .ok()) {
      return std::optional<Found>(Found{});
    }
    const uint8_t v = opacity_of(fmt, pending, i, parent, pending.name);
    if (xattr_part(v) == Opacity::kOpaque || (v & PendingLower::kOciOpaque) || h.hides_lower) {
      break;
    }
  }
  return std::optional<Found>(Found{});
}

}  // namespace unionfs
