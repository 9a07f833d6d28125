// Volumes: validation, creation of the mount points inside the stack, and the bind mounts.
#include "fuse/volumes.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace unionfs::fuse {
namespace {

std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    std::string c = path.substr(start, slash - start);
    if (!c.empty() && c != ".") out.push_back(std::move(c));
    start = slash + 1;
  }
  return out;
}

}  // namespace

Volume parse_volume(const std::string& spec) {
  const size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) {
    throw SetupError("volume '" + spec + "': expected HOST_DIR:PATH");
  }
  Volume v;
  const std::string host = spec.substr(0, colon);
  char* real = ::realpath(host.c_str(), nullptr);
  if (!real) throw SetupError("volume host directory '" + host + "': " + std::strerror(errno));
  v.host = real;
  ::free(real);
  struct stat st{};
  if (::stat(v.host.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw SetupError("volume host directory '" + host + "' is not a directory");
  }
  for (const std::string& c : components(spec.substr(colon + 1))) {
    if (c == "..") throw SetupError("volume path '" + spec.substr(colon + 1) + "' escapes the mount");
    v.path += (v.path.empty() ? "" : "/") + c;
  }
  if (v.path.empty()) throw SetupError("volume path '" + spec.substr(colon + 1) + "' is the mount's root");
  return v;
}

void prepare_volumes(UnionFs& fs, const std::vector<Volume>& volumes) {
  for (const Volume& v : volumes) {
    std::vector<Entry> held;  // lookups to give back: the kernel has not seen these inodes
    Inode* dir = &fs.root();
    std::string error;
    for (const std::string& c : components(v.path)) {
      auto e = fs.lookup(*dir, c);
      if (!e && e.error() == ENOENT) e = fs.mkdir(*dir, c, 0755, Caller{0, 0});
      if (!e) {
        error = "volume path '" + v.path + "': " + std::strerror(e.error());
        break;
      }
      held.push_back(*e);
      if (!S_ISDIR(e->attr.st_mode)) {
        error = "volume path '" + v.path + "' is not a directory in the stack";
        break;
      }
      dir = e->inode;
    }
    for (auto it = held.rbegin(); it != held.rend(); ++it) fs.forget(*it->inode, 1);
    if (!error.empty()) throw SetupError(error);
  }
}

std::string mount_volumes(const std::string& mountpoint, const std::vector<Volume>& volumes) {
  for (size_t i = 0; i < volumes.size(); ++i) {
    const std::string target = mountpoint + "/" + volumes[i].path;
    if (::mount(volumes[i].host.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      const std::string why = std::strerror(errno);
      unmount_volumes(mountpoint, std::vector<Volume>(volumes.begin(), volumes.begin() + static_cast<ptrdiff_t>(i)));
      return "could not mount volume '" + volumes[i].host + "' on '" + target + "': " + why;
    }
  }
  return {};
}

void unmount_volumes(const std::string& mountpoint, const std::vector<Volume>& volumes) {
  for (auto it = volumes.rbegin(); it != volumes.rend(); ++it) {
    const std::string target = mountpoint + "/" + it->path;
    (void)::umount2(target.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
  }
}

}  // namespace unionfs::fuse
