// Top-down lookup of a name across the instances of a merged directory.
#include "core/lookup.h"

#include <fcntl.h>

#include <string>

#include "core/sys.h"

namespace unionfs {

Result<ProbeResult> probe(const WhiteoutFormat& fmt, const LayerDir& dir, std::string_view name) {
  std::string n(name);
  ProbeResult r;
  auto st = sys::stat_at(dir.get(), n.c_str());
  if (!st) {
    if (st.error() != ENOENT) return Errno{st.error()};
    if (fmt.has_oci_whiteout(dir.get(), name)) r.kind = Probe::kWhiteout;
    return r;
  }
  r.st = *st;
  if (is_kernel_whiteout(r.st) ||
      (dir.xwhiteouts && S_ISREG(r.st.st_mode) && r.st.st_size == 0 &&
       fmt.is_xattr_whiteout(dir.get(), n.c_str()))) {
    r.kind = Probe::kWhiteout;
    return r;
  }
  r.kind = Probe::kPresent;
  return r;
}

namespace {

// Opens a directory instance found by probe and reads its opacity.
Result<LayerDir> open_part(const WhiteoutFormat& fmt, const LayerDir& parent, size_t layer,
                           std::string_view name, bool* hides_lower) {
  std::string n(name);
  auto fd = sys::open_at(parent.get(), n.c_str(), O_RDONLY | O_DIRECTORY);
  if (!fd) return Errno{fd.error()};
  LayerDir d;
  d.layer = layer;
  Opacity op = fmt.dir_opacity(fd->get());
  d.xwhiteouts = op == Opacity::kXWhiteouts;
  // An OCI ".wh.NAME" next to a directory NAME in the same layer hides the lower NAMEs.
  *hides_lower = op == Opacity::kOpaque || fmt.has_oci_whiteout(parent.get(), name);
  d.fd = std::make_shared<const UniqueFd>(std::move(*fd));
  return d;
}

}  // namespace

Result<Found> lookup_name(const LayerStack& stack, const WhiteoutFormat& fmt,
                          const DirParts& parent, std::string_view name) {
  Found f;
  for (const LayerDir& part : parent) {
    UNIONFS_ASSIGN_OR_RETURN(ProbeResult p, probe(fmt, part, name));
    if (p.kind == Probe::kAbsent) continue;
    if (p.kind == Probe::kWhiteout) {
      if (!f.exists && stack.is_upper(part.layer)) f.upper_whiteout = true;
      break;
    }
    if (!f.exists) {
      f.exists = true;
      f.st = p.st;
      f.layer = part.layer;
      f.origin_dev = p.st.st_dev;
      f.origin_ino = p.st.st_ino;
      if (!S_ISDIR(p.st.st_mode)) {
        std::string n(name);
        UNIONFS_ASSIGN_OR_RETURN(UniqueFd fd, sys::open_at(part.get(), n.c_str(), O_PATH));
        f.fd = std::make_shared<const UniqueFd>(std::move(fd));
        break;
      }
    } else if (!S_ISDIR(p.st.st_mode)) {
      break;  // a non-directory below a directory is hidden, and so is all beneath it
    }
    bool hides_lower = false;
    UNIONFS_ASSIGN_OR_RETURN(LayerDir d, open_part(fmt, part, part.layer, name, &hides_lower));
    if (f.parts.empty()) f.top_opaque = hides_lower;
    f.parts.push_back(std::move(d));
    f.origin_dev = p.st.st_dev;
    f.origin_ino = p.st.st_ino;
    if (hides_lower) break;
  }
  return f;
}

Result<bool> lower_positive(const LayerStack& stack, const WhiteoutFormat& fmt,
                            const DirParts& parent, std::string_view name) {
  for (const LayerDir& part : parent) {
    if (stack.is_upper(part.layer)) continue;
    UNIONFS_ASSIGN_OR_RETURN(ProbeResult p, probe(fmt, part, name));
    if (p.kind == Probe::kAbsent) continue;
    return p.kind == Probe::kPresent;
  }
  return false;
}

DirParts root_parts(const LayerStack& stack, const WhiteoutFormat& fmt) {
  DirParts parts;
  for (size_t i = stack.size(); i-- > 0;) {
    auto fd = sys::open_at(stack.layer(i).root.get(), ".", O_RDONLY | O_DIRECTORY);
    if (!fd) continue;  // cannot happen: the roots were opened at setup
    LayerDir d;
    d.layer = i;
    Opacity op = fmt.dir_opacity(fd->get());
    d.xwhiteouts = op == Opacity::kXWhiteouts;
    d.fd = std::make_shared<const UniqueFd>(std::move(*fd));
    parts.push_back(std::move(d));
    if (op == Opacity::kOpaque) break;
  }
  return parts;
}

}  // namespace unionfs
