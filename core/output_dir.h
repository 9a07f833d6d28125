// New output directories of the tools (squash, import): naming the target, checking that it
// is absent or empty, and removing a partial result. Outputs are built in a temporary sibling
// and renamed into place, so that a failure leaves nothing behind.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <utility>

#include "core/unique_fd.h"

namespace unionfs {

/// "a/b/out/" → {"a/b", "out"}. Throws SetupError for a path that names no new directory.
std::pair<std::string, std::string> split_target(const std::string& outdir);

/// Throws SetupError unless `name` in the directory `parent` is absent or an empty directory;
/// `what` starts the message ("output directory 'x'").
void check_absent_or_empty(int parent, const std::string& name, const std::string& what);

/// Best-effort removal of the tree `name` in `dir` (a partial output after a failure); never
/// follows a symlink, makes read-only directories writable first.
void remove_tree(int dir, const std::string& name);

/// Calls `check` with the stat of `dir` and of each directory above it, up to "/" (for a tool
/// whose output must not land inside a layer). Throws SetupError, with `what` first, if one
/// cannot be read; `check` throws to refuse.
void for_each_ancestor(UniqueFd dir, const std::string& what,
                       const std::function<void(const struct stat&)>& check);

}  // namespace unionfs
