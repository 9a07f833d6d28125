// The `which` subcommand: top-down lookup of each path component, reported per layer.
#include "fuse/which.h"

#include <unistd.h>

#include <cstdio>
#include <string>

#include "core/lookup.h"
#include "core/whiteout.h"

namespace unionfs::fuse {

int run_which(int argc, char** argv) {
  if (argc != 3) throw SetupError("usage: unionfs-cpp which LAYERS PATH");
  LayerStack stack = LayerStack::open(argv[1], true);
  WhiteoutFormat fmt(WhiteoutMode::kAuto, ::geteuid() == 0);
  std::string path = argv[2];
  DirParts parts = root_parts(stack, fmt);
  Found f;
  f.exists = true;
  f.st.st_mode = S_IFDIR;
  f.layer = parts.front().layer;
  f.parts = parts;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    std::string comp = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    start = slash == std::string::npos ? path.size() : slash + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == ".." ) throw SetupError("'..' is not supported in PATH");
    if (!f.is_dir() || fmt.is_reserved_name(comp)) {
      std::printf("%s: not in the merged view\n", path.c_str());
      return 1;
    }
    auto r = lookup_name(stack, fmt, f.parts, comp);
    if (!r || !r->exists) {
      std::printf("%s: not in the merged view%s\n", path.c_str(),
                  r && r->upper_whiteout ? " (whited out)" : "");
      return 1;
    }
    f = std::move(*r);
  }
  std::printf("%s: layer %zu (%s)", path.c_str(), f.layer, stack.layer(f.layer).path.c_str());
  if (f.is_dir() && f.parts.size() > 1) {
    std::printf(", merged with");
    for (size_t i = 1; i < f.parts.size(); ++i) std::printf(" %zu", f.parts[i].layer);
  }
  std::printf("\n");
  return 0;
}

}  // namespace unionfs::fuse
