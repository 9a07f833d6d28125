// `unionfs-cpp which LAYERS PATH`: which layer a path of the merged view comes from,
// answered from the layers without mounting them.
#pragma once

namespace unionfs::fuse {

/// argv[0] is "which". Prints "PATH: layer N (DIR)" and, for a merged directory, every layer
/// it merges. Exit status 0, 1 when the path does not exist in the merged view, 2 on bad input.
int run_which(int argc, char** argv);

}  // namespace unionfs::fuse
