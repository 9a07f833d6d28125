// LayerStack: validation and opening of the layer directories (setup only).
#include "core/layer.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/hash.h"

namespace unionfs {
namespace {

std::string why(int err) { return std::strerror(err); }

bool inside(const std::string& child, const std::string& parent) {
  if (parent == "/") return true;
  return child.size() > parent.size() && child.compare(0, parent.size(), parent) == 0 &&
         child[parent.size()] == '/';
}

// Raises the soft fd limit to the hard one and checks the stack fits in it with room for
// the directory fds that lookups hold.
void ensure_fd_budget(size_t layers) {
  struct rlimit rl{};
  // Every inode the kernel caches holds an fd (as in libfuse's passthrough_hp), so take as
  // many as the system allows: up to fs.nr_open when privileged, else the hard limit.
  if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "r")) {
    unsigned long nr_open = 0;
    if (std::fscanf(f, "%lu", &nr_open) == 1 && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_max != RLIM_INFINITY && nr_open > rl.rlim_max) {
      struct rlimit want{nr_open, nr_open};
      setrlimit(RLIMIT_NOFILE, &want);  // fails without CAP_SYS_RESOURCE: then the hard limit
    }
    std::fclose(f);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  const rlim_t need = static_cast<rlim_t>(layers) * 4 + 256;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
    throw SetupError("too many layers (" + std::to_string(layers) +
                     ") for the open-file limit " + std::to_string(rl.rlim_cur) + " (need " +
                     std::to_string(need) + "; raise it with ulimit -n)");
  }
}

}  // namespace

std::vector<std::string> split_layer_spec(const std::string& spec) {
  if (spec.empty()) throw SetupError("empty layer list");
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t colon = spec.find(':', start);
    std::string part = spec.substr(start, colon == std::string::npos ? std::string::npos
                                                                      : colon - start);
    if (part.empty()) {
      throw SetupError("empty layer at position " + std::to_string(parts.size() + 1) +
                       " in '" + spec + "'");
    }
    parts.push_back(std::move(part));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return parts;
}

LayerStack LayerStack::open(const std::string& spec, bool read_only) {
  std::vector<std::string> paths = split_layer_spec(spec);
  if (!read_only && paths.size() < 2) {
    throw SetupError("need at least one lower layer and an upper layer (LOWER:UPPER), or -o ro");
  }
  ensure_fd_budget(paths.size());
  LayerStack stack;
  stack.has_upper_ = !read_only;
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string& given = paths[i];
    char* real = ::realpath(given.c_str(), nullptr);
    if (!real) throw SetupError("layer '" + given + "': " + why(errno));
    Layer l;
    l.path = real;
    ::free(real);
    int fd = ::open(l.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw SetupError("layer '" + given + "': " + why(errno));
    l.root.reset(fd);
    struct stat st{};
    if (::fstat(fd, &st) != 0) throw SetupError("layer '" + given + "': " + why(errno));
    l.dev = st.st_dev;
    l.ino = st.st_ino;
    if (::faccessat(fd, ".", R_OK | X_OK, AT_EACCESS) != 0) {
      throw SetupError("layer '" + given + "': not readable: " + why(errno));
    }
    for (const Layer& other : stack.layers_) {
      if (other.dev == l.dev && other.ino == l.ino) {
        throw SetupError("layer '" + given + "' is listed twice");
      }
    }
    stack.layers_.push_back(std::move(l));
  }
  if (stack.has_upper_) {
    const Layer& up = stack.layers_.back();
    struct statvfs sv{};
    if (::fstatvfs(up.root.get(), &sv) == 0 && (sv.f_flag & ST_RDONLY)) {
      throw SetupError("upper layer '" + up.path + "' is on a read-only filesystem");
    }
    if (::faccessat(up.root.get(), ".", W_OK, AT_EACCESS) != 0) {
      throw SetupError("upper layer '" + up.path + "' is not writable: " + why(errno));
    }
    for (size_t i = 0; i + 1 < stack.layers_.size(); ++i) {
      const Layer& low = stack.layers_[i];
      if (inside(up.path, low.path)) {
        throw SetupError("upper layer '" + up.path + "' is inside lower layer '" + low.path + "'");
      }
      if (inside(low.path, up.path)) {
        throw SetupError("lower layer '" + low.path + "' is inside upper layer '" + up.path + "'");
      }
    }
  }
  for (const Layer& l : stack.layers_) {
    if (std::find(stack.devs_.begin(), stack.devs_.end(), l.dev) == stack.devs_.end()) {
      stack.devs_.push_back(l.dev);
    }
  }
  return stack;
}

uint64_t LayerStack::st_ino(dev_t dev, ino_t ino) const {
  if (devs_.size() == 1 && dev == devs_[0]) return ino;
  // Like overlayfs's xino: the filesystem's index in the high bits, when the number fits.
  auto it = std::find(devs_.begin(), devs_.end(), dev);
  if (it != devs_.end() && devs_.size() < 128 && (static_cast<uint64_t>(ino) >> 56) == 0) {
    return (static_cast<uint64_t>(it - devs_.begin()) << 56) | ino;
  }
  uint64_t key[2] = {static_cast<uint64_t>(dev), static_cast<uint64_t>(ino)};
  return hash_bytes(key, sizeof(key)) | (uint64_t{1} << 63);
}

}  // namespace unionfs
