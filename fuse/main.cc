// unionfs-cpp: command line, mount-point checks, mount and the multi-threaded session loop.
//   unionfs-cpp [-f] [-d] [-s] [-o OPT,...] LOWER1:...:UPPER MOUNTPOINT
//   unionfs-cpp which LAYERS PATH
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "core/id_map.h"
#include "core/layer.h"
#include "core/union_fs.h"
#include "fuse/malloc_tuning.h"
#include "fuse/ops.h"
#include "fuse/session_loop.h"
#include "fuse/volumes.h"
#include "fuse/which.h"
#include "fuse/tools.h"

namespace unionfs::fuse {
namespace {

constexpr const char* kUsage =
    "usage: unionfs-cpp [options] LOWER1[:LOWER2...]:UPPER MOUNTPOINT\n"
    "       unionfs-cpp -o lowerdir=TOP:...:BOTTOM[,upperdir=U,workdir=W] [options] MOUNTPOINT\n"
    "       unionfs-cpp which LAYERS PATH\n"
    "       unionfs-cpp diff [--format json] [--exclude PATH]... | layers [--bytes] [--format json] LAYERS\n"
    "       unionfs-cpp squash [--range I:J] [--format auto|overlay|oci] LAYERS OUTDIR\n"
    "       unionfs-cpp import [--image NAME] [--format auto|overlay|oci] IMAGE.tar DIR\n"
    "       unionfs-cpp export LAYER_DIR LAYER.tar\n"
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
    "  -o passthrough      the kernel reads and writes open files' data in the layers itself\n"
    "                      (FUSE passthrough: Linux 6.9+, as root); while a lower file is\n"
    "                      open for reading, opening it for writing or truncating it fails\n"
    "                      with ETXTBSY\n"
    "  -o threads=N        at most N worker threads (default 16; 1 = -s)\n"
    "  -o idle_threads=N   keep at most N idle workers (default: no limit)\n"
    "  -v, --volume HOST_DIR:PATH, -o volume=HOST_DIR:PATH\n"
    "                      bind-mount a host directory over PATH inside the mount (as root;\n"
    "                      PATH is created in the upper if missing); taken down on SIGTERM,\n"
    "                      or unmount everything with umount -R MOUNTPOINT\n"
    "  -o lowerdir=TOP:...:BOTTOM,upperdir=U,workdir=W\n"
    "                      the overlayfs/fuse-overlayfs form, instead of LAYERS (lowerdir\n"
    "                      lists the top layer first; without upperdir the mount is read-only)\n"
    "  -o uidmapping=C:H:N[:C:H:N...], -o gidmapping=C:H:N[:...]\n"
    "                      fuse-overlayfs's id mapping: ids C..C+N-1 stored in the layers show\n"
    "                      as H..H+N-1, and new owners are stored the other way round; ids\n"
    "                      outside every range become the overflow id (65534)\n"
    "  -o squash_to_root, -o squash_to_uid=UID, -o squash_to_gid=GID\n"
    "                      show every file as owned by root, or by UID/GID (what is stored\n"
    "                      does not change; a failed chown is then ignored)\n"
    "  -o OPT              any other option is passed to FUSE (e.g. allow_other)\n"
    "  -h, --help          this text\n"
    "  -V, --version       the version\n";

struct Cli {
  bool foreground = false;
  bool debug = false;
  bool single_thread = false;
  bool read_only = false;
  bool passthrough = false;
  WhiteoutMode whiteout = WhiteoutMode::kAuto;
  double timeout = 86400.0;
  unsigned max_threads = 16;
  int idle_threads = -1;  // no limit
  std::vector<std::string> fuse_opts;
  std::vector<Volume> volumes;
  IdMap ids;
  // The overlayfs / fuse-overlayfs form: lowerdir lists the top layer first.
  std::string lowerdir, upperdir, workdir;
  std::string layers;
  std::string mountpoint;
};

// Options that containers/storage passes to fuse-overlayfs and that change nothing here:
// tuning knobs we do not need (volatile and fsync=0 skip fsyncs we only do at copy-up,
// threaded=, fast_ino=, static_nlink, noacl), the kernel overlay features that we follow in
// their default "off" form (redirect_dir=off, index=off, metacopy=off, xino=), and userxattr
// (we read user.overlay.* markers anyway). fuse-overlayfs ignores several of them too.
bool is_ignored_overlay_option(const std::string& opt) {
  static const char* const kFlags[] = {"volatile", "static_nlink", "noacl", "userxattr"};
  static const char* const kValues[] = {"fsync=", "threaded=", "fast_ino=", "xino="};
  for (const char* f : kFlags) {
    if (opt == f) return true;
  }
  for (const char* v : kValues) {
    if (opt.starts_with(v)) return true;
  }
  return opt == "redirect_dir=off" || opt == "index=off" || opt == "metacopy=off";
}

// Turns lowerdir=/upperdir=/workdir= into our LAYERS spec (bottom first).
void apply_overlay_form(Cli& cli) {
  if (cli.lowerdir.empty()) {
    if (!cli.upperdir.empty() || !cli.workdir.empty()) {
      throw SetupError("upperdir= and workdir= need lowerdir=");
    }
    return;
  }
  std::vector<std::string> lowers = split_layer_spec(cli.lowerdir);
  std::string spec;
  for (auto it = lowers.rbegin(); it != lowers.rend(); ++it) spec += (spec.empty() ? "" : ":") + *it;
  if (cli.upperdir.empty()) {
    cli.read_only = true;
  } else {
    spec += ":" + cli.upperdir;
  }
  cli.layers = spec;
  if (!cli.workdir.empty()) {
    // It must be a directory on the upper's filesystem: temporary objects are renamed from it.
    struct stat w{}, u{};
    if (::stat(cli.workdir.c_str(), &w) != 0 || !S_ISDIR(w.st_mode)) {
      throw SetupError("workdir '" + cli.workdir + "' is not a directory");
    }
    if (!cli.upperdir.empty() && ::stat(cli.upperdir.c_str(), &u) == 0 && u.st_dev != w.st_dev) {
      throw SetupError("workdir '" + cli.workdir + "' is not on the upper layer's filesystem");
    }
  }
}

void parse_option(Cli& cli, const std::string& opt) {
  if (opt.empty()) return;
  if (opt == "ro") {
    cli.read_only = true;
    cli.fuse_opts.push_back("ro");
  } else if (opt == "rw") {
    cli.read_only = false;
  } else if (opt == "passthrough") {
    cli.passthrough = true;
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
  } else if (opt.starts_with("lowerdir=")) {
    cli.lowerdir = opt.substr(9);
  } else if (opt.starts_with("upperdir=")) {
    cli.upperdir = opt.substr(9);
  } else if (opt.starts_with("workdir=")) {
    cli.workdir = opt.substr(8);
  } else if (cli.ids.parse_option(opt)) {
    // uidmapping=, gidmapping=, squash_to_root, squash_to_uid=, squash_to_gid=: core/id_map.h.
  } else if (is_ignored_overlay_option(opt)) {
    // Accepted for compatibility with fuse-overlayfs command lines; see the function.
  } else if (opt.starts_with("volume=")) {
    cli.volumes.push_back(parse_volume(opt.substr(7)));
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
    } else if (a == "--volume" || a == "-v") {
      if (++i >= argc) throw SetupError(a + " needs HOST_DIR:PATH");
      cli.volumes.push_back(parse_volume(argv[i]));
    } else if (a.starts_with("--volume=")) {
      cli.volumes.push_back(parse_volume(a.substr(9)));
    } else if (a.size() > 1 && a[0] == '-') {
      throw SetupError("unknown option '" + a + "' (see --help)");
    } else {
      positional.push_back(a);
    }
  }
  if (cli.lowerdir.empty() && (!cli.upperdir.empty() || !cli.workdir.empty())) {
    throw SetupError("upperdir= and workdir= need lowerdir=");
  }
  if (!cli.lowerdir.empty() && positional.size() == 1) {
    cli.mountpoint = positional[0];  // fuse-overlayfs form: -o lowerdir=... MOUNTPOINT
  } else if (positional.size() != 2) {
    throw SetupError(positional.size() < 2 ? "need LAYERS and MOUNTPOINT (see --help)"
                                           : "too many arguments (see --help)");
  } else {
    // With lowerdir= the first one is mount(8)'s source, a name only.
    if (cli.lowerdir.empty()) cli.layers = positional[0];
    cli.mountpoint = positional[1];
  }
  apply_overlay_form(cli);
  // Absolute, so that the daemon, which leaves its working directory, can still reach it.
  if (char* real = ::realpath(cli.mountpoint.c_str(), nullptr)) {
    cli.mountpoint = real;
    ::free(real);
  }
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

// The id that stands for one no mapping holds (what stat shows for an unmapped owner in a user
// namespace); fuse-overlayfs reads the same files.
uint32_t read_overflow_id(const char* path) {
  uint32_t id = 65534;
  if (FILE* f = std::fopen(path, "re")) {
    if (std::fscanf(f, "%u", &id) != 1) id = 65534;
    std::fclose(f);
  }
  return id;
}

// -o passthrough needs the kernel's consent, which only root gets, and layers whose files can
// back a FUSE file: not stacked filesystems (the mount then stays usable as an overlayfs layer).
void check_passthrough(const LayerStack& stack) {
  constexpr long kOverlayfs = 0x794c7630, kEcryptfs = 0xf15f;
  for (size_t i = 0; i < stack.size(); ++i) {
    struct statfs sf{};
    if (::fstatfs(stack.layer(i).root.get(), &sf) != 0) continue;
    if (sf.f_type == kOverlayfs || sf.f_type == kEcryptfs) {
      throw SetupError("-o passthrough: layer '" + stack.layer(i).path +
                       "' is on a stacked filesystem (overlayfs, ecryptfs), whose files cannot "
                       "back FUSE passthrough");
    }
  }
}

// Runs the session loop until it is unmounted or told to exit.
int loop(fuse_session* se, const Cli& cli) {
  if (cli.single_thread || cli.max_threads == 1) return fuse_session_loop(se);
  return run_session_loop(se, cli.max_threads, cli.idle_threads);
}

// Ends the session from outside the loop: detaching the mount ends the connection, which
// wakes every worker blocked on /dev/fuse.
void end_session(fuse_session* se, const std::string& mountpoint) {
  fuse_session_exit(se);
  (void)::umount2(mountpoint.c_str(), MNT_DETACH);
}

// With volumes the bind mounts can only be made once the loop serves the lookups they need,
// and must be undone while it still does. So the loop runs on a thread of its own; this thread
// mounts the volumes, reports the outcome (to the waiting parent when daemonized, so that the
// command fails with a clear message and leaves nothing mounted), then waits for SIGINT,
// SIGTERM or SIGHUP, unmounts the volumes and ends the session. `report_fd` is the pipe to
// the parent, or -1 in the foreground.
int serve_with_volumes(fuse_session* se, const Cli& cli, int report_fd) {
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&sigs, sig);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);  // inherited by the loop's threads
  std::atomic<bool> done{false};
  int rc = 0;
  std::thread worker([&] {
    rc = loop(se, cli);
    done = true;
  });
  const std::string err = mount_volumes(cli.mountpoint, cli.volumes);
  std::string msg = err.empty() ? std::string("0") : "2unionfs-cpp: " + err + "\n";
  if (report_fd >= 0) {
    (void)!::write(report_fd, msg.data(), msg.size());
    ::close(report_fd);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);  // the terminal is the parent's
    if (null >= 0) {
      ::dup2(null, STDERR_FILENO);
      ::close(null);
    }
  } else if (!err.empty()) {
    std::fputs(msg.c_str() + 1, stderr);
  }
  if (!err.empty()) {
    end_session(se, cli.mountpoint);
    worker.join();
    return 2;
  }
  while (!done) {
    const timespec tick{0, 200'000'000};
    if (sigtimedwait(&sigs, nullptr, &tick) > 0) {
      unmount_volumes(cli.mountpoint, cli.volumes);
      end_session(se, cli.mountpoint);
      break;
    }
  }
  worker.join();
  unmount_volumes(cli.mountpoint, cli.volumes);  // after an external unmount: nothing left
  return rc == 0 ? 0 : 1;
}

// Daemonizes for serve_with_volumes: the parent waits for the child's report and exits with
// it. Returns the pipe's write end in the child; in the parent, never returns.
int fork_reporting() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw SetupError(std::string("pipe: ") + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) throw SetupError(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) {
    ::close(fds[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) msg.append(buf, static_cast<size_t>(n));
    if (msg.size() > 1) std::fputs(msg.c_str() + 1, stderr);
    std::_Exit(msg.empty() ? 1 : msg[0] - '0');
  }
  ::close(fds[0]);
  ::setsid();
  if (::chdir("/") != 0) {
    // harmless: the daemon uses only fds from here on
  }
  const int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    ::dup2(null, STDIN_FILENO);
    ::dup2(null, STDOUT_FILENO);
    if (null > STDERR_FILENO) ::close(null);
  }
  return fds[1];
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
  reexec_with_malloc_tunables(argv);

  Cli cli = parse(argc, argv);
  const bool root = ::geteuid() == 0;
  if (cli.passthrough && !root) {
    throw SetupError("-o passthrough needs root (the kernel's backing files need CAP_SYS_ADMIN)");
  }
  LayerStack stack = LayerStack::open(cli.layers, cli.read_only);
  if (cli.passthrough) check_passthrough(stack);
  check_mountpoint(cli.mountpoint);
  UniqueFd workdir;
  if (!cli.workdir.empty()) {
    int fd = ::open(cli.workdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw SetupError("workdir '" + cli.workdir + "': " + std::strerror(errno));
    workdir.reset(fd);
  }
  UnionFs fs(std::move(stack), Options{cli.whiteout, root}, std::move(workdir));
  if (!cli.volumes.empty()) {
    if (!root) throw SetupError("volumes are bind mounts: they need root");
    prepare_volumes(fs, cli.volumes);
  }
  cli.ids.overflow_uid = read_overflow_id("/proc/sys/kernel/overflowuid");
  cli.ids.overflow_gid = read_overflow_id("/proc/sys/kernel/overflowgid");
  Daemon daemon{&fs, cli.timeout, cli.ids};
  Passthrough passthrough;

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
  if (cli.volumes.empty() && fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    throw SetupError("could not install signal handlers");
  }
  if (fuse_session_mount(se, cli.mountpoint.c_str()) != 0) {
    if (cli.volumes.empty()) fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    throw SetupError("could not mount on '" + cli.mountpoint + "'");
  }
  if (cli.passthrough) {
    // Active once the kernel agrees at INIT; without its consent opens go through the daemon.
    if (const int rc = passthrough.install(se); rc != 0) {
      fuse_session_unmount(se);
      if (cli.volumes.empty()) fuse_remove_signal_handlers(se);
      fuse_session_destroy(se);
      throw SetupError(std::string("-o passthrough: ") + std::strerror(-rc));
    }
    daemon.passthrough = &passthrough;
  }
  if (!cli.volumes.empty()) {
    // stderr stays open in the child until the report is sent; the parent prints it.
    const int report_fd = cli.foreground ? -1 : fork_reporting();
    const int rc = serve_with_volumes(se, cli, report_fd);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    return rc;
  }
  // Daemonize only once the mount is live, so the command returns with it usable.
  if (fuse_daemonize(cli.foreground ? 1 : 0) != 0) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return 1;
  }
  const int rc = loop(se, cli);
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
