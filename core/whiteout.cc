// Whiteout and opaque-marker reading and writing, in the kernel's and OCI's formats.
#include "core/whiteout.h"

#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>

#include "core/sys.h"

namespace unionfs {

namespace {
constexpr const char* kOpaqueXattrs[] = {"trusted.overlay.opaque", "user.overlay.opaque"};
constexpr const char* kWhiteoutXattrs[] = {"trusted.overlay.whiteout", "user.overlay.whiteout"};
}  // namespace

WhiteoutFormat::WhiteoutFormat(WhiteoutMode mode, bool privileged)
    : read_oci_(mode != WhiteoutMode::kOverlay),
      write_oci_(mode == WhiteoutMode::kOci || (mode == WhiteoutMode::kAuto && !privileged)),
      privileged_(privileged),
      read_trusted_(mode != WhiteoutMode::kOverlay || privileged),
      read_user_(mode != WhiteoutMode::kOverlay || !privileged) {}

bool WhiteoutFormat::is_internal_xattr(std::string_view name) const {
  if (name.starts_with("trusted.overlay.")) return true;
  return read_user_ && name.starts_with("user.overlay.");
}

bool WhiteoutFormat::is_reserved_name(std::string_view name) const {
  if (name.starts_with(kTempPrefix)) return true;
  return read_oci_ && name.starts_with(kOciWhiteoutPrefix);
}

Opacity WhiteoutFormat::dir_opacity(int dir_fd) const {
  const Opacity op = xattr_opacity(dir_fd);
  if (op != Opacity::kNone) return op;
  if (read_oci_ && sys::stat_at(dir_fd, std::string(kOciOpaqueName).c_str()).ok()) {
    return Opacity::kOpaque;
  }
  return Opacity::kNone;
}

namespace {

// Most directories carry no opaque xattr: one listxattr answers for both names.
template <typename List, typename Get>
Opacity opacity_from(bool read_trusted, bool read_user, List&& list, Get&& get) {
  auto names = list();
  bool maybe = !names.ok();
  for (const std::string& n : names.ok() ? *names : std::vector<std::string>{}) {
    maybe = maybe || n == kOpaqueXattrs[0] || n == kOpaqueXattrs[1];
  }
  for (const char* attr : kOpaqueXattrs) {
    if (!maybe) break;
    if (!(attr[0] == 't' ? read_trusted : read_user)) continue;
    auto v = get(attr);
    if (v.ok()) {
      if (*v == "y") return Opacity::kOpaque;
      if (*v == "x") return Opacity::kXWhiteouts;
    }
  }
  return Opacity::kNone;
}

}  // namespace

Opacity WhiteoutFormat::xattr_opacity(int dir_fd) const {
  return opacity_from(
      read_trusted_, read_user_, [&] { return sys::listxattr(dir_fd); },
      [&](const char* attr) { return sys::getxattr(dir_fd, attr); });
}

Opacity WhiteoutFormat::xattr_opacity_at(int dir, const char* rel) const {
  return opacity_from(
      read_trusted_, read_user_, [&] { return sys::llistxattr_at(dir, rel); },
      [&](const char* attr) { return sys::lgetxattr_at(dir, rel, attr); });
}

bool WhiteoutFormat::is_xattr_whiteout(int dir, const char* name) const {
  for (const char* attr : kWhiteoutXattrs) {
    if (!(attr[0] == 't' ? read_trusted_ : read_user_)) continue;
    if (sys::lgetxattr_at(dir, name, attr).ok()) return true;
  }
  return false;
}

bool WhiteoutFormat::has_oci_whiteout(int dir, std::string_view name) const {
  if (!read_oci_) return false;
  std::string wh = std::string(kOciWhiteoutPrefix) + std::string(name);
  return sys::stat_at(dir, wh.c_str()).ok();
}

Status WhiteoutFormat::make_kernel_whiteout(int dir, const char* tmp) const {
  return sys::mknod_at(dir, tmp, S_IFCHR | 0, makedev(0, 0));
}

Status WhiteoutFormat::make_whiteout(int dir, std::string_view name) const {
  if (!write_oci_) {
    std::string n(name);
    return make_kernel_whiteout(dir, n.c_str());
  }
  std::string wh = std::string(kOciWhiteoutPrefix) + std::string(name);
  auto fd = sys::open_at(dir, wh.c_str(), O_WRONLY | O_CREAT, 0600);
  if (!fd) return Errno{fd.error()};
  return kOk;
}

Status WhiteoutFormat::set_opaque(int dir_fd) const {
  if (!write_oci_) return sys::setxattr(dir_fd, opaque_xattr(), "y", 0);
  auto fd = sys::open_at(dir_fd, std::string(kOciOpaqueName).c_str(), O_WRONLY | O_CREAT, 0600);
  if (!fd) return Errno{fd.error()};
  return kOk;
}

std::string temp_name() {
  static std::atomic<uint64_t> counter{0};
  return std::string(kTempPrefix) + std::to_string(::getpid()) + "." +
         std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
}

}  // namespace unionfs
