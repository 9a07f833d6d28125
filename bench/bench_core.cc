// bench_core: lookup and readdir cost of the core (no FUSE) against the depth of the layer stack.
// Measures through the public UnionFs API only (lookup, forget, list), so it keeps working as
// the lookup machinery behind it changes. The layer trees are described in layer_fixture.h.
//
// Every benchmark takes two arguments: the number of lower layers (depth) and whether a
// writable upper sits on top (0/1). The JSON output has both wall-clock (real_time) and process
// CPU time per iteration; --benchmark_min_time counts CPU time. The split counters (*_us) are
// wall-clock. scripts/bench_core.sh runs this and prints a table.
//
// Steady state (directory m in use):  BM_LookupPresentCold, BM_LookupPresentWarm,
//   BM_LookupMissing, BM_LookupWhiteout, BM_List.
// First use:  BM_FreshDir, BM_FreshDirList (a fresh merged directory: the index build),
//   BM_BigDirFirstTouch, BM_BigDir100Lookups (a 100,000-entry directory in one layer).
//
// Environment:
//   UNIONFS_BENCH_DEPTHS   comma-separated depths (default 1,4,16,64,256,1024)
//   UNIONFS_BENCH_UPPER    comma-separated upper modes, 0 and/or 1 (default 0,1)
//   UNIONFS_BENCH_TMPDIR   where the layer pool is made (default /var/tmp); removed at exit
//   UNIONFS_BENCH_WARMUP   lookups into m before the steady-state lookup benchmarks measure
//                          (default 100: "warmup" and then missing names w001..; enough to
//                          pass any lookup-count threshold for building a directory's index)
//   UNIONFS_BENCH_CACHE    a directory to keep the layer pool in across runs instead (built
//                          on first use, reused later, never removed by the program)
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/layer_fixture.h"
#include "core/layer.h"
#include "core/union_fs.h"

namespace unionfs_bench {
namespace {

using unionfs::Inode;
using unionfs::LayerStack;
using unionfs::Options;
using unionfs::UnionFs;
using unionfs::WhiteoutMode;

std::unique_ptr<LayerPool> g_pool;
char g_pool_path[4096];  // for the signal handler

LayerPool& pool() { return *g_pool; }

// Names are made once, outside the timed regions.
struct Names {
  std::vector<std::string> files, missing, warmup, whiteouts_d1, whiteouts_dn, fresh_dirs, big;
  Names() {
    warmup.push_back("warmup");
    for (int i = 1; i < 1000; ++i) warmup.push_back(numbered("w", 3, i));
    for (int i = 0; i < kFiles; ++i) files.push_back(file_name(i));
    for (int i = 0; i < kFiles; ++i) missing.push_back(numbered("n", 4, i));
    for (int i = 0; i < kWhiteouts; ++i) {
      whiteouts_d1.push_back(LayerPool::whiteout_name(1, i));
      whiteouts_dn.push_back(LayerPool::whiteout_name(2, i));
    }
    for (int i = 0; i < kFreshDirs; ++i) fresh_dirs.push_back(fresh_dir_name(i));
    for (int i = 0; i < kBigEntries; ++i) big.push_back(big_name(i));
  }
};
const Names& names() {
  static const Names n;
  return n;
}

/// One mounted (in-process) union: a fresh UnionFs over a stack from the pool.
struct Mount {
  std::unique_ptr<UnionFs> fs;
  Inode* m = nullptr;  ///< the merged directory m, one lookup held (when opened with_m)
};

std::string errstr(int e) { return std::strerror(e); }

/// Builds the pool for `depth`, sets the common counters, and opens a fresh UnionFs.
/// On failure reports it with SkipWithError and returns false.
bool open_mount(benchmark::State& state, Mount* out, bool with_m = true) {
  const int depth = static_cast<int>(state.range(0));
  const bool upper = state.range(1) != 0;
  try {
    pool().ensure(depth);
    out->m = nullptr;
    out->fs.reset();  // close the old stack's fds first
    LayerStack stack = LayerStack::open(pool().spec(depth, upper), /*read_only=*/!upper);
    out->fs = std::make_unique<UnionFs>(std::move(stack),
                                        Options{WhiteoutMode::kAuto, ::geteuid() == 0});
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("setup: ") + e.what()).c_str());
    return false;
  }
  state.counters["depth"] = depth;
  state.counters["upper"] = upper ? 1 : 0;
  state.counters["layers"] = depth + (upper ? 1 : 0);
  if (with_m) {
    auto e = out->fs->lookup(out->fs->root(), "m");
    if (!e) {
      state.SkipWithError(("lookup m: " + errstr(e.error())).c_str());
      return false;
    }
    if (!S_ISDIR(e->attr.st_mode)) {
      state.SkipWithError("m is not a directory");
      return false;
    }
    out->m = e->inode;
  }
  return true;
}

size_t g_warmup = 100;  // UNIONFS_BENCH_WARMUP

/// A fresh UnionFs with m looked up and used: g_warmup lookups of names the benchmarks do not
/// measure ("warmup", present, then missing w001...). Whatever the first uses of a directory
/// cost (building an index, say after a number of lookups) is paid before the measurement.
bool open_warm_mount(benchmark::State& state, Mount* out) {
  if (!open_mount(state, out)) return false;
  const auto& w = names().warmup;
  for (size_t i = 0; i < g_warmup && i < w.size(); ++i) {
    auto e = out->fs->lookup(*out->m, w[i]);
    if (e) {
      out->fs->forget(*e->inode, 1);
    } else if (i == 0 || e.error() != ENOENT) {
      state.SkipWithError(("lookup m/" + w[i] + ": " + errstr(e.error())).c_str());
      return false;
    }
  }
  return true;
}

void set_label(benchmark::State& state) {
  state.SetLabel(state.range(1) ? "lower+upper" : "lower only (ro)");
}

// 1a. A present name that lives only in the bottom layer, first lookup of that name in a
// UnionFs whose directory m is already in use. Each name is looked up once per UnionFs; after
// kFiles names a new UnionFs is opened (untimed). The entries are kept (as the kernel would keep
// them) and dropped with the UnionFs.
void BM_LookupPresentCold(benchmark::State& state) {
  const auto& n = names();
  Mount mt;
  if (!open_warm_mount(state, &mt)) return;
  size_t next = 0;
  for (auto _ : state) {
    if (next == n.files.size()) {
      state.PauseTiming();
      if (!open_warm_mount(state, &mt)) break;  // the skip leaves the timer stopped
      state.ResumeTiming();
      next = 0;
    }
    auto e = mt.fs->lookup(*mt.m, n.files[next++]);
    if (!e) {
      state.SkipWithError(("present lookup: " + errstr(e.error())).c_str());
      break;
    }
    benchmark::DoNotOptimize(e->inode);
  }
  set_label(state);
}

// 1b. The same present name again and again (its inode stays held, as the kernel holds it).
void BM_LookupPresentWarm(benchmark::State& state) {
  Mount mt;
  if (!open_warm_mount(state, &mt)) return;
  const std::string& name = names().files[kFiles / 2];
  auto pin = mt.fs->lookup(*mt.m, name);
  if (!pin) {
    state.SkipWithError(("present lookup: " + errstr(pin.error())).c_str());
    return;
  }
  uint64_t count = 1;
  for (auto _ : state) {
    auto e = mt.fs->lookup(*mt.m, name);
    if (!e) {
      state.SkipWithError(("present lookup: " + errstr(e.error())).c_str());
      break;
    }
    ++count;
    benchmark::DoNotOptimize(e->inode);
  }
  mt.fs->forget(*pin->inode, count);
  set_label(state);
}

// Shared by the missing and whiteout benchmarks: lookups that must give ENOENT.
void lookup_enoent(benchmark::State& state, const std::vector<std::string>& list, const char* what) {
  Mount mt;
  if (!open_warm_mount(state, &mt)) return;
  size_t next = 0;
  for (auto _ : state) {
    auto e = mt.fs->lookup(*mt.m, list[next]);
    if (++next == list.size()) next = 0;
    if (e || e.error() != ENOENT) {
      state.SkipWithError((std::string(what) + " lookup: expected ENOENT, got " +
                           (e ? "an entry" : errstr(e.error()))).c_str());
      break;
    }
  }
  set_label(state);
}

// 2. A name no layer holds.
void BM_LookupMissing(benchmark::State& state) {
  lookup_enoent(state, names().missing, "missing");
}

// 3. A name whited out (char 0/0) in the top lower layer; at depth >= 2 the bottom layer holds
// a file of that name. At depth 1 the only layer holds the whiteout, with nothing beneath it.
void BM_LookupWhiteout(benchmark::State& state) {
  if (::geteuid() != 0) {
    state.SkipWithError("kernel whiteouts need root");
    return;
  }
  try {
    pool().ensure(static_cast<int>(state.range(0)));
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("setup: ") + e.what()).c_str());
    return;
  }
  if (!pool().whiteouts()) {
    state.SkipWithError("could not make kernel whiteouts (mknod 0/0)");
    return;
  }
  const auto& n = names();
  lookup_enoent(state, state.range(0) >= 2 ? n.whiteouts_dn : n.whiteouts_d1, "whiteout");
}

// 4. The merged listing of m. Counters: entries; index_names and index_bytes_per_name, the
// size of m's lower index.
void BM_List(benchmark::State& state) {
  Mount mt;
  if (!open_warm_mount(state, &mt)) return;
  // base/m: kFiles + "warmup" always; the wh* files only where nothing whites them out.
  const size_t want = kFiles + 1 + (state.range(0) >= 2 && pool().whiteouts() ? 0 : kWhiteouts);
  size_t got = 0;
  for (auto _ : state) {
    auto l = mt.fs->list(*mt.m);
    if (!l) {
      state.SkipWithError(("list: " + errstr(l.error())).c_str());
      break;
    }
    got = l->size();
    benchmark::DoNotOptimize(l->data());
  }
  if (got != want && !state.error_occurred()) {
    state.SkipWithError(("list: " + std::to_string(got) + " entries, expected " +
                         std::to_string(want)).c_str());
  }
  state.counters["entries"] = static_cast<double>(got);
  // The index the listing built: its names and heap bytes per name (DirIndex::memory_bytes).
  if (auto index = mt.m->index(); index && index->size() > 0) {
    state.counters["index_names"] = static_cast<double>(index->size());
    state.counters["index_bytes_per_name"] =
        static_cast<double>(index->memory_bytes()) / static_cast<double>(index->size());
  }
  set_label(state);
}

using Clock = std::chrono::steady_clock;

// Looks up the next fresh merged directory (a new UnionFs, untimed, once all are used) and adds
// the lookup's wall-clock time to *dir_us. False after SkipWithError: the caller stops.
bool next_fresh_dir(benchmark::State& state, Mount& mt, size_t& next, unionfs::Entry* out, double* dir_us) {
  const auto& n = names();
  if (next == n.fresh_dirs.size()) {
    state.PauseTiming();
    if (!open_mount(state, &mt, false)) return false;
    state.ResumeTiming();
    next = 0;
  }
  auto t0 = Clock::now();
  auto d = mt.fs->lookup(mt.fs->root(), n.fresh_dirs[next++]);
  *dir_us += std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  if (!d) {
    state.SkipWithError(("lookup dNNN: " + errstr(d.error())).c_str());
    return false;
  }
  *out = *d;
  return true;
}

// 5. Index build: first uses of a merged directory (d000.., in every layer; kFreshFiles files in
// the bottom one, empty elsewhere); each directory is used once per UnionFs (then a new UnionFs
// is opened, untimed). Timed: lookup of dNNN in the root, then two lookups of different present
// names in it. Counters split the time (wall-clock): dir_us (the directory itself), first_us
// and second_us (the lookups inside), so an index build shows wherever the implementation puts it.
void BM_FreshDir(benchmark::State& state) {
  const auto& n = names();
  Mount mt;
  if (!open_mount(state, &mt, /*with_m=*/false)) return;
  size_t next = 0;
  double dir_us = 0, first_us = 0, second_us = 0;
  for (auto _ : state) {
    unionfs::Entry d;
    if (!next_fresh_dir(state, mt, next, &d, &dir_us)) break;
    auto t1 = Clock::now();
    auto e1 = mt.fs->lookup(*d.inode, n.files[kFreshFiles / 2]);
    auto t2 = Clock::now();
    if (!e1) {
      state.SkipWithError(("lookup dNNN/f (1st): " + errstr(e1.error())).c_str());
      break;
    }
    auto e2 = mt.fs->lookup(*d.inode, n.files[kFreshFiles / 2 + 1]);
    auto t3 = Clock::now();
    if (!e2) {
      state.SkipWithError(("lookup dNNN/f (2nd): " + errstr(e2.error())).c_str());
      break;
    }
    first_us += std::chrono::duration<double, std::micro>(t2 - t1).count();
    second_us += std::chrono::duration<double, std::micro>(t3 - t2).count();
    // Give them back untimed: dropping a deep directory closes one fd per layer.
    state.PauseTiming();
    mt.fs->forget(*e2->inode, 1);
    mt.fs->forget(*e1->inode, 1);
    mt.fs->forget(*d.inode, 1);
    state.ResumeTiming();
  }
  state.counters["dir_us"] = benchmark::Counter(dir_us, benchmark::Counter::kAvgIterations);
  state.counters["first_us"] = benchmark::Counter(first_us, benchmark::Counter::kAvgIterations);
  state.counters["second_us"] = benchmark::Counter(second_us, benchmark::Counter::kAvgIterations);
  set_label(state);
}

// 5b. The first listing of a fresh merged directory (as 5): lookup of dNNN, then list() of it.
// A listing needs every lower instance read, so this shows the full index-build cost even where
// lookups defer building it. Counters: dir_us, list_us (wall-clock).
void BM_FreshDirList(benchmark::State& state) {
  Mount mt;
  if (!open_mount(state, &mt, /*with_m=*/false)) return;
  size_t next = 0;
  double dir_us = 0, list_us = 0;
  for (auto _ : state) {
    unionfs::Entry d;
    if (!next_fresh_dir(state, mt, next, &d, &dir_us)) break;
    auto t1 = Clock::now();
    auto l = mt.fs->list(*d.inode);
    auto t2 = Clock::now();
    if (!l || l->size() != static_cast<size_t>(kFreshFiles)) {
      state.SkipWithError(l ? ("list dNNN: " + std::to_string(l->size()) + " entries, expected " +
                               std::to_string(kFreshFiles)).c_str()
                            : ("list dNNN: " + errstr(l.error())).c_str());
      break;
    }
    list_us += std::chrono::duration<double, std::micro>(t2 - t1).count();
    state.PauseTiming();
    mt.fs->forget(*d.inode, 1);
    state.ResumeTiming();
  }
  state.counters["dir_us"] = benchmark::Counter(dir_us, benchmark::Counter::kAvgIterations);
  state.counters["list_us"] = benchmark::Counter(list_us, benchmark::Counter::kAvgIterations);
  set_label(state);
}

// Opens a fresh UnionFs (untimed, inside the caller's loop) and looks up "big", timed, adding
// the wall-clock time to *dir_us. Returns null after SkipWithError (timer left stopped).
Inode* fresh_big(benchmark::State& state, Mount* mt, double* dir_us) {
  state.PauseTiming();
  if (!open_mount(state, mt, false)) return nullptr;
  state.ResumeTiming();
  auto t0 = Clock::now();
  auto d = mt->fs->lookup(mt->fs->root(), "big");
  *dir_us += std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  if (!d) {
    state.SkipWithError(("lookup big: " + errstr(d.error())).c_str());
    return nullptr;
  }
  return d->inode;
}

bool big_ready(benchmark::State& state) {
  try {
    pool().ensure(static_cast<int>(state.range(0)));
    pool().ensure_big();
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("setup: ") + e.what()).c_str());
    return false;
  }
  return true;
}

// 6. First touch of a directory with 100,000 entries in the bottom layer only (not merged):
// a fresh UnionFs each iteration (untimed), then timed: lookup of "big" in the root and of one
// name in it. Counters dir_us and first_us split the time (wall-clock).
void BM_BigDirFirstTouch(benchmark::State& state) {
  const auto& n = names();
  if (!big_ready(state)) return;
  Mount mt;
  size_t next = 0;
  double dir_us = 0, first_us = 0;
  for (auto _ : state) {
    Inode* big = fresh_big(state, &mt, &dir_us);
    if (!big) break;
    auto t1 = Clock::now();
    auto e = mt.fs->lookup(*big, n.big[next]);
    first_us += std::chrono::duration<double, std::micro>(Clock::now() - t1).count();
    next = (next + 7919) % n.big.size();  // spread over the directory (7919 is prime)
    if (!e) {
      state.SkipWithError(("lookup big/e: " + errstr(e.error())).c_str());
      break;
    }
  }
  state.counters["dir_us"] = benchmark::Counter(dir_us, benchmark::Counter::kAvgIterations);
  state.counters["first_us"] = benchmark::Counter(first_us, benchmark::Counter::kAvgIterations);
  state.counters["entries"] = kBigEntries;
  set_label(state);
}

// 6b. The first 100 lookups (distinct present names) in the 100,000-entry directory of a fresh
// UnionFs: shows what a lazily built index costs when it is built, and on which lookup.
// Counters (wall-clock): dir_us, per_lookup_us (mean), max_us (slowest single lookup, mean over
// iterations) and max_at (which lookup, 1-based, of the last iteration was the slowest).
void BM_BigDir100Lookups(benchmark::State& state) {
  constexpr int kLookups = 100;
  const auto& n = names();
  if (!big_ready(state)) return;
  Mount mt;
  double dir_us = 0, lookups_us = 0, max_sum = 0;
  int max_at = 0;
  for (auto _ : state) {
    Inode* big = fresh_big(state, &mt, &dir_us);
    if (!big) break;
    double max_us = 0;
    bool failed = false;
    for (int i = 0; i < kLookups; ++i) {
      auto t0 = Clock::now();
      auto e = mt.fs->lookup(*big, n.big[(static_cast<size_t>(i) * 7919) % n.big.size()]);
      double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      if (!e) {
        state.SkipWithError(("lookup big/e: " + errstr(e.error())).c_str());
        failed = true;
        break;
      }
      lookups_us += us;
      if (us > max_us) {
        max_us = us;
        max_at = i + 1;
      }
    }
    if (failed) break;
    max_sum += max_us;
  }
  state.counters["dir_us"] = benchmark::Counter(dir_us, benchmark::Counter::kAvgIterations);
  state.counters["per_lookup_us"] =
      benchmark::Counter(lookups_us / kLookups, benchmark::Counter::kAvgIterations);
  state.counters["max_us"] = benchmark::Counter(max_sum, benchmark::Counter::kAvgIterations);
  state.counters["max_at"] = max_at;
  state.counters["entries"] = kBigEntries;
  set_label(state);
}

std::vector<int64_t> int_list_env(const char* var, std::vector<int64_t> dflt) {
  const char* v = std::getenv(var);
  if (!v || !*v) return dflt;
  std::vector<int64_t> out;
  std::string s(v);
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string part = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (!part.empty()) out.push_back(std::stoll(part));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out.empty() ? dflt : out;
}

void raise_fd_limit() {
  struct rlimit rl {};
  if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "r")) {
    unsigned long nr_open = 0;
    if (std::fscanf(f, "%lu", &nr_open) == 1 && ::getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_max != RLIM_INFINITY && nr_open > rl.rlim_max) {
      struct rlimit want {nr_open, nr_open};
      ::setrlimit(RLIMIT_NOFILE, &want);  // needs CAP_SYS_RESOURCE; else the hard limit below
    }
    std::fclose(f);
  }
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// On SIGINT/SIGTERM/SIGHUP/SIGABRT (a failed check in the library): remove the pool (fork + exec are async-signal-safe), then die.
void on_signal(int sig) {
  if (g_pool_path[0]) {
    pid_t pid = ::fork();
    if (pid == 0) {
      const char* argv[] = {"rm", "-rf", "--", g_pool_path, nullptr};
      ::execv("/bin/rm", const_cast<char* const*>(argv));
      ::_exit(127);
    }
    if (pid > 0) {
      int status;
      ::waitpid(pid, &status, 0);
    }
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace
}  // namespace unionfs_bench

int main(int argc, char** argv) {
  using namespace unionfs_bench;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  raise_fd_limit();

  const char* tmp = std::getenv("UNIONFS_BENCH_TMPDIR");
  const char* cache = std::getenv("UNIONFS_BENCH_CACHE");
  try {
    if (cache && *cache) {
      g_pool = LayerPool::persistent(cache);
    } else {
      g_pool = std::make_unique<LayerPool>(tmp && *tmp ? tmp : "/var/tmp");
      std::snprintf(g_pool_path, sizeof(g_pool_path), "%s", g_pool->root().c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_core: %s\n", e.what());
    return 1;
  }
  benchmark::AddCustomContext("layer_pool", g_pool->root());
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGABRT}) ::sigaction(sig, &sa, nullptr);

  const std::vector<int64_t> depths =
      int_list_env("UNIONFS_BENCH_DEPTHS", {1, 4, 16, 64, 256, 1024});
  const std::vector<int64_t> uppers = int_list_env("UNIONFS_BENCH_UPPER", {0, 1});
  g_warmup = static_cast<size_t>(int_list_env("UNIONFS_BENCH_WARMUP", {100}).front());
  benchmark::AddCustomContext("warmup_lookups", std::to_string(g_warmup));
  struct Def {
    const char* name;
    void (*fn)(benchmark::State&);
    benchmark::TimeUnit unit;
  };
  const Def defs[] = {
      {"BM_LookupPresentCold", BM_LookupPresentCold, benchmark::kMicrosecond},
      {"BM_LookupPresentWarm", BM_LookupPresentWarm, benchmark::kMicrosecond},
      {"BM_LookupMissing", BM_LookupMissing, benchmark::kMicrosecond},
      {"BM_LookupWhiteout", BM_LookupWhiteout, benchmark::kMicrosecond},
      {"BM_List", BM_List, benchmark::kMillisecond},
      {"BM_FreshDir", BM_FreshDir, benchmark::kMicrosecond},
      {"BM_FreshDirList", BM_FreshDirList, benchmark::kMicrosecond},
      {"BM_BigDirFirstTouch", BM_BigDirFirstTouch, benchmark::kMicrosecond},
      {"BM_BigDir100Lookups", BM_BigDir100Lookups, benchmark::kMicrosecond},
  };
  for (const Def& d : defs) {
    benchmark::RegisterBenchmark(d.name, d.fn)
        ->ArgNames({"depth", "upper"})
        ->ArgsProduct({depths, uppers})
        ->Unit(d.unit);
  }

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_pool_path[0] = '\0';
  g_pool.reset();  // removes the layer trees (unless persistent)
  return 0;
}
