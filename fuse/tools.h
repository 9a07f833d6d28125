// The `diff`, `layers` and `squash` subcommands: read a stack without mounting it and print
// what its top layer changed (`docker diff`) or a table of its layers (`docker history`), or
// merge a range of its layers into one new layer directory (`docker build --squash`).
#pragma once

namespace unionfs::fuse {

/// Whether `name` (argv[1]) is one of the tool subcommands.
bool is_tool(const char* name);

/// argv[0] is the subcommand ("diff", "layers" or "squash"). Prints to stdout only once
/// everything is read (squash: once its output is in place); bad input or an unreadable layer
/// throws SetupError (exit 2, nothing printed, squash writes nothing).
int run_tool(int argc, char** argv);

}  // namespace unionfs::fuse
