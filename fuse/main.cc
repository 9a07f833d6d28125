// unionfs-cpp: command line, mount-point checks, mount and the multi-threaded session loop.
//   unionfs-cpp [-f] [-d] [-s] [-o OPT,...] LOWER1:...:UPPER MOUNTPOINT
//   unionfs-cpp which LAYERS PATH
#include <dirent.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/layer.h"
#include "core/union_fs.h"
#include "fuse/ops.h"
#include "fuse/which.h"
#include "fuse/tools.h"

namespace unionfs::fuse {
namespace {

constexpr const char* kUsage =
    "usage: unionfs-cpp [options] LOWER1[:LOWER2...]:UPPER MOUNTPOINT\n"
    "       unionfs-cpp which LAYERS PATH\n"
    "       unionfs-cpp diff [--format json] [--exclude PATH]... | layers [--bytes] [--format json] LAYERS\n"
    "\n"
    "Mounts a union of directories, listed bottom to top; the last one is the writable upper\n"
    "layer. Lookups go top-down; whiteouts and opaque directories hide what lies below.\n"
    "\n"
    "options:\n"
    "  -f                  stay in the foreground (SIGINT/SIGTERM unmount)\n"
    "  -d                  debug output (implies -f)\n"
    "  -s                  single-threaded\n"
    "  -o ro               mount read-only: every directory is a lower layer\n"
    "  -o whiteout=MODE    auto (default): read kernel and OCI markers, write the kernel's as\n"
    "                      root and OCI's otherwise; overlay: kernel format only (\".wh.\" names\n"
    "                      are plain files); oci: write \".wh.\" files\n"
    "  -o timeout=SECONDS  how long the kernel caches entries and attributes (default 86400)\n"
    "  -o threads=N        at most N worker threads (default 16; 1 = -s)\n"
    "  -o idle_threads=N   keep at most N idle workers (default: libfuse's)\n"
    "  -o OPT              any other option is passed to FUSE (e.g. allow_other)\n"
    "  -h, --help          this text\n"
    "  -V, --version       the version\n";

struct Cli {
  bool foreground = false;
  bool debug = false;
  bool single_thread = false;
  bool read_only = false;
  WhiteoutMode whiteout = WhiteoutMode::kAuto;
  double timeout = 86400.0;
  unsigned max_threads = 16;
  int idle_threads = -1;  // libfuse's default
  std::vector<std::string> fuse_opts;
  std::string layers;
  std::string mountpoint;
};

void parse_option(Cli& cli, const std::string& opt) {
  if (opt.empty()) return;
  if (opt == "ro") {
    cli.read_only = true;
    cli.fuse_opts.push_back("ro");
  } else if (opt == "rw") {
    cli.read_only = false;
  } else if (opt.starts_with("whiteout=")) {
    std::string v = opt.substr(9);
    if (v == "auto") cli.whiteout = WhiteoutMode::kAuto;
    else if (v == "overlay") cli.whiteout = WhiteoutMode::kOverlay;
    else if (v == "oci") cli.whiteout = WhiteoutMode::kOci;
    else throw SetupError("bad value for whiteout= '" + v + "' (auto, overlay or oci)");
  } else if (opt.starts_with("threads=") || opt.starts_with("idle_threads=")) {
    const bool idle = opt[0] == 'i';
    char* end = nullptr;
    const long n = std::strtol(opt.c_str() + opt.find('=') + 1, &end, 10);
    if (*end != '\0' || n < (idle ? 0 : 1) || n > 1024) throw SetupError("bad value for " + opt);
    if (idle) {
      cli.idle_threads = static_cast<int>(n);
    } else {
      cli.max_threads = static_cast<unsigned>(n);
    }
  } else if (opt.starts_with("timeout=")) {
    char* end = nullptr;
    cli.timeout = std::strtod(opt.c_str() + 8, &end);
    if (*end != '\0' || cli.timeout < 0) throw SetupError("bad value for " + opt);
  } else {
    cli.fuse_opts.push_back(opt);
  }
}

Cli parse(int argc, char** argv) {
  Cli cli;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-f") {
      cli.foreground = true;
    } else if (a == "-d") {
      cli.debug = cli.foreground = true;
    } else if (a == "-s") {
      cli.single_thread = true;
    } else if (a == "-o" || (a.starts_with("-o") && a.size() > 2)) {
      std::string opts;
      if (a == "-o") {
        if (++i >= argc) throw SetupError("-o needs an argument");
        opts = argv[i];
      } else {
        opts = a.substr(2);
      }
      size_t start = 0;
      for (;;) {
        size_t comma = opts.find(',', start);
        parse_option(cli, opts.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a.size() > 1 && a[0] == '-') {
      throw SetupError("unknown option '" + a + "' (see --help)");
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) {
    throw SetupError(positional.size() < 2 ? "need LAYERS and MOUNTPOINT (see --help)"
                                           : "too many arguments (see --help)");
  }
  cli.layers = positional[0];
  cli.mountpoint = positional[1];
  return cli;
}

// The mount point must be an empty directory that is not already a mount point.
void check_mountpoint(const std::string& mp) {
  struct stat st{};
  if (::stat(mp.c_str(), &st) != 0) {
    if (errno == ENOTCONN) throw SetupError("mount point '" + mp + "' is a dead FUSE mount (fusermount3 -u it)");
    throw SetupError("mount point '" + mp + "': " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) throw SetupError("mount point '" + mp + "' is not a directory");
  struct stat parent{};
  std::string up = mp + "/..";
  if (::stat(up.c_str(), &parent) == 0 &&
      (parent.st_dev != st.st_dev || parent.st_ino == st.st_ino)) {
    throw SetupError("mount point '" + mp + "' is already a mount point");
  }
  DIR* d = ::opendir(mp.c_str());
  if (!d) throw SetupError("mount point '" + mp + "': " + std::strerror(errno));
  bool empty = true;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  if (!empty) throw SetupError("mount point '" + mp + "' is not empty");
}

int run(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "-V" || a == "--version") {
      std::printf("unionfs-cpp %s (libfuse %s)\n", UNIONFS_VERSION, fuse_pkgversion());
      return 0;
    }
  }
  if (argc > 1 && std::string(argv[1]) == "which") return run_which(argc - 1, argv + 1);
  if (argc > 1 && is_tool(argv[1])) return run_tool(argc - 1, argv + 1);

  Cli cli = parse(argc, argv);
  const bool root = ::geteuid() == 0;
  LayerStack stack = LayerStack::open(cli.layers, cli.read_only);
  check_mountpoint(cli.mountpoint);
  UnionFs fs(std::move(stack), Options{cli.whiteout, root});
  Daemon daemon{&fs, cli.timeout};

  std::vector<std::string> args = {"unionfs-cpp"};
  std::string o = "fsname=unionfs-cpp,subtype=unionfs-cpp,default_permissions";
  // As root the mount serves every user and, like overlayfs, honours device nodes and
  // set-user-ID bits; the kernel checks permissions against the attributes we report.
  if (root) o += ",allow_other,dev,suid";
  for (const std::string& opt : cli.fuse_opts) o += "," + opt;
  args.push_back("-o");
  args.push_back(o);
  if (cli.debug) args.push_back("-d");
  std::vector<char*> cargs;
  for (std::string& s : args) cargs.push_back(s.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(cargs.size()), cargs.data());

  fuse_lowlevel_ops ops = make_operations();
  // fuse_session_new grows fargs; free it on every way out.
  struct ArgsGuard {
    fuse_args* a;
    ~ArgsGuard() { fuse_opt_free_args(a); }
  } args_guard{&fargs};
  fuse_session* se = fuse_session_new(&fargs, &ops, sizeof(ops), &daemon);
  if (!se) throw SetupError("could not create the FUSE session (bad -o option?)");
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    throw SetupError("could not install signal handlers");
  }
  if (fuse_session_mount(se, cli.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    throw SetupError("could not mount on '" + cli.mountpoint + "'");
  }
  // Daemonize only once the mount is live, so the command returns with it usable.
  if (fuse_daemonize(cli.foreground ? 1 : 0) != 0) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return 1;
  }
  int rc;
  if (cli.single_thread || cli.max_threads == 1) {
    rc = fuse_session_loop(se);
  } else {
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    fuse_loop_cfg_set_max_threads(cfg, cli.max_threads);
    if (cli.idle_threads >= 0) fuse_loop_cfg_set_idle_threads(cfg, static_cast<unsigned>(cli.idle_threads));
    rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
  }
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  // libfuse reports the signal that ended the loop; an unmount on SIGINT/SIGTERM/SIGHUP is a
  // clean exit.
  return (rc == 0 || rc == SIGINT || rc == SIGTERM || rc == SIGHUP) ? 0 : 1;
}

}  // namespace
}  // namespace unionfs::fuse

int main(int argc, char** argv) {
  try {
    return unionfs::fuse::run(argc, argv);
  } catch (const unionfs::SetupError& e) {
    std::fprintf(stderr, "unionfs-cpp: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unionfs-cpp: %s\n", e.what());
    return 2;
  }
}
