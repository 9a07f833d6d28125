// Output-directory helpers shared by squash and import.
#include "core/output_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <vector>

#include "core/layer.h"
#include "core/sys.h"

namespace unionfs {

std::pair<std::string, std::string> split_target(const std::string& outdir) {
  std::string p = outdir;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
  if (name.empty() || name == "." || name == ".." || name == "/") {
    throw SetupError("output directory '" + outdir + "': must name a directory to create");
  }
  return {parent, name};
}

void check_absent_or_empty(int parent, const std::string& name, const std::string& what) {
  auto st = sys::stat_at(parent, name.c_str());
  if (!st) {
    if (st.error() == ENOENT) return;
    throw SetupError(what + ": " + std::strerror(st.error()));
  }
  if (!S_ISDIR(st->st_mode)) throw SetupError(what + " exists and is not a directory");
  auto fd = sys::open_at(parent, name.c_str(), O_RDONLY | O_DIRECTORY);
  auto ents = fd ? sys::read_dir(fd->get()) : Result<std::vector<sys::DirEnt>>(Errno{fd.error()});
  if (!ents) throw SetupError(what + ": " + std::strerror(ents.error()));
  if (!ents->empty()) throw SetupError(what + " exists and is not empty");
}

void remove_tree(int dir, const std::string& name) {
  // A finished directory may be unreadable (mode 0, say) to a caller that is not root: make it
  // ours to read through an O_PATH descriptor first, then open it for reading.
  if (auto path = sys::open_at(dir, name.c_str(), O_PATH | O_DIRECTORY)) {
    (void)sys::chmod_fd(path->get(), 0700);
  }
  auto fd = sys::open_at(dir, name.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd) {
    auto ents = sys::read_dir(fd->get());
    for (const sys::DirEnt& e : ents ? *ents : std::vector<sys::DirEnt>{}) {
      bool is_dir = e.type == DT_DIR;
      if (e.type == DT_UNKNOWN) {
        auto st = sys::stat_at(fd->get(), e.name.c_str());
        is_dir = st && S_ISDIR(st->st_mode);
      }
      if (is_dir) {
        remove_tree(fd->get(), e.name);
      } else {
        (void)sys::unlink_at(fd->get(), e.name.c_str());
      }
    }
  }
  (void)sys::unlink_at(dir, name.c_str(), AT_REMOVEDIR);
}

void for_each_ancestor(UniqueFd dir, const std::string& what,
                       const std::function<void(const struct stat&)>& check) {
  UniqueFd cur = std::move(dir);
  for (;;) {
    auto here = sys::fstat(cur.get());
    auto up = sys::open_at(cur.get(), "..", O_PATH | O_DIRECTORY);
    if (!here || !up) throw SetupError(what + ": " + std::strerror(here ? up.error() : here.error()));
    check(*here);
    auto up_st = sys::fstat(up->get());
    if (!up_st) throw SetupError(what + ": " + std::strerror(up_st.error()));
    if (up_st->st_dev == here->st_dev && up_st->st_ino == here->st_ino) return;  // "/"
    cur = std::move(*up);
  }
}

}  // namespace unionfs
