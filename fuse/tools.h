// The `diff` and `layers` subcommands: read a stack without mounting it and print what its
// top layer changed (`docker diff`) or a table of its layers (`docker history`).
#pragma once

namespace unionfs::fuse {

/// Whether `name` (argv[1]) is one of the tool subcommands.
bool is_tool(const char* name);

/// argv[0] is the subcommand ("diff" or "layers"). Prints to stdout only once everything is
/// read; bad input or an unreadable layer throws SetupError (exit 2, nothing printed).
int run_tool(int argc, char** argv);

}  // namespace unionfs::fuse
