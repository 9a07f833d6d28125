// The tool subcommands: `diff`, `layers` and `squash` read a stack without mounting it and print
// what its top layer changed (`docker diff`), a table of its layers (`docker history`), or merge
// a range of its layers into one new layer directory (`docker build --squash`); `import` and
// `export` turn image archives into layer directories and a layer directory into a layer tar.
#pragma once

namespace unionfs::fuse {

/// Whether `name` (argv[1]) is one of the tool subcommands.
bool is_tool(const char* name);

/// argv[0] is the subcommand ("diff", "layers", "squash", "import" or "export"). Prints to
/// stdout only once everything is read (squash, import, export: once the output is in place);
/// bad input or an unreadable layer throws SetupError (exit 2, nothing printed, nothing written).
int run_tool(int argc, char** argv);

}  // namespace unionfs::fuse
