/* statloop: the timing helper of the end-to-end benchmark (bench/e2e/bench_e2e.py).
 *
 * Python's own overhead (~1 us per os.lstat) would blur microsecond lookups, so the timed loops
 * run here, in C. Every mode prints one JSON object per line on stdout.
 *
 *   statloop stat PASSES [-p PRIME]... LIST...
 *       lstat()s every path of each LIST file (one path a line) PASSES times, list after list.
 *       The -p paths are lstat()ed once first, each timed on its own (a "prime" line). Per list and pass: ns per op (total
 *       time / n), per-op p50/p99, and the count of results (ok / ENOENT / other errors).
 *   statloop warm DIRLIST NAMELIST reads each directory of DIRLIST (one a line) to the end and
 *                                  lstat()s DIR/NAME for every NAME of NAMELIST, untimed: fills
 *                                  the dentry cache (negative entries too) of the layers.
 *   statloop readdir PASSES DIR    opendir + readdir to the end + closedir, PASSES times.
 *   statloop read FILE BUFSIZE     reads FILE sequentially to EOF in BUFSIZE chunks.
 *   statloop append FILE BYTES     open(O_WRONLY|O_APPEND) + write(BYTES) + close, timed
 *                                  (the first append to a lower file is a copy-up).
 *   statloop probecost PASSES NAME DIRLIST
 *       What asking one layer about a name costs in user space: for each directory DIR of
 *       DIRLIST (one instance of a merged directory per layer), from a descriptor of its parent,
 *       as a union daemon asks a layer it has not opened DIR in: fstatat of DIR/NAME and of
 *       DIR/.wh.NAME, listxattr of DIR (listxattrat where the kernel has it), fstatat of
 *       DIR/.wh..wh..opq; and reading DIR (openat, getdents64 to the end, close). Each kind is
 *       timed over all the directories in turn; one line per pass with the mean us per call.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char* what) {
  fprintf(stderr, "statloop: %s: %s\n", what, strerror(errno));
  exit(2);
}

static char** read_list(const char* file, size_t* n_out) {
  FILE* f = fopen(file, "r");
  if (!f) die(file);
  size_t cap = 1024, n = 0;
  char** v = malloc(cap * sizeof *v);
  char* line = NULL;
  size_t lcap = 0;
  ssize_t len;
  while ((len = getline(&line, &lcap, f)) > 0) {
    if (line[len - 1] == '\n') line[--len] = '\0';
    if (len == 0) continue;
    if (n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
    v[n++] = strdup(line);
  }
  free(line);
  fclose(f);
  *n_out = n;
  return v;
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

static int mode_stat(int argc, char** argv) {
  int passes = atoi(argv[0]);
  int i = 1;
  struct stat st;
  for (; i + 1 < argc && strcmp(argv[i], "-p") == 0; i += 2) {
    uint64_t t0 = now_ns();
    int rc = lstat(argv[i + 1], &st);
    printf("{\"prime\":\"%s\",\"ns\":%llu,\"rc\":%d}\n", argv[i + 1],
           (unsigned long long)(now_ns() - t0), rc == 0 ? 0 : errno);
  }
  for (int li = 0; i < argc; ++i, ++li) {
    size_t n;
    char** paths = read_list(argv[i], &n);
    uint64_t* each = malloc((n ? n : 1) * sizeof *each);
    for (int p = 1; p <= passes; ++p) {
      size_t ok = 0, enoent = 0, other = 0;
      uint64_t t0 = now_ns(), prev = t0;
      for (size_t k = 0; k < n; ++k) {
        if (lstat(paths[k], &st) == 0) ++ok;
        else if (errno == ENOENT) ++enoent;
        else ++other;
        uint64_t t = now_ns();
        each[k] = t - prev;
        prev = t;
      }
      uint64_t total = prev - t0;
      qsort(each, n, sizeof *each, cmp_u64);
      printf("{\"list\":%d,\"pass\":%d,\"n\":%zu,\"ns_per_op\":%.1f,\"p50_ns\":%llu,"
             "\"p99_ns\":%llu,\"ok\":%zu,\"enoent\":%zu,\"other\":%zu}\n",
             li, p, n, n ? (double)total / (double)n : 0.0,
             n ? (unsigned long long)each[n / 2] : 0ull,
             n ? (unsigned long long)each[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0ull, ok,
             enoent, other);
      fflush(stdout);
    }
    free(each);
  }
  return 0;
}

static int mode_warm(int argc, char** argv) {
  if (argc < 2) return 1;
  size_t nd, nn;
  char** dirs = read_list(argv[0], &nd);
  char** names = read_list(argv[1], &nn);
  size_t entries = 0, ok = 0;
  char path[8192];
  struct stat st;
  for (size_t i = 0; i < nd; ++i) {
    DIR* d = opendir(dirs[i]);
    if (d) {
      while (readdir(d)) ++entries;
      closedir(d);
    }
    for (size_t k = 0; k < nn; ++k) {
      snprintf(path, sizeof path, "%s/%s", dirs[i], names[k]);
      if (lstat(path, &st) == 0) ++ok;
    }
  }
  printf("{\"dirs\":%zu,\"entries\":%zu,\"found\":%zu}\n", nd, entries, ok);
  return 0;
}

static int mode_readdir(int argc, char** argv) {
  if (argc < 2) return 1;
  int passes = atoi(argv[0]);
  for (int p = 1; p <= passes; ++p) {
    uint64_t t0 = now_ns();
    DIR* d = opendir(argv[1]);
    if (!d) die(argv[1]);
    size_t n = 0;
    errno = 0;
    while (readdir(d)) ++n;
    if (errno) die("readdir");
    closedir(d);
    uint64_t t = now_ns() - t0;
    printf("{\"pass\":%d,\"entries\":%zu,\"ns\":%llu}\n", p, n, (unsigned long long)t);
    fflush(stdout);
  }
  return 0;
}

static int mode_read(int argc, char** argv) {
  if (argc < 2) return 1;
  size_t bs = (size_t)strtoull(argv[1], NULL, 0);
  char* buf = aligned_alloc(4096, bs);
  uint64_t t0 = now_ns();
  int fd = open(argv[0], O_RDONLY);
  if (fd < 0) die(argv[0]);
  unsigned long long total = 0;
  for (;;) {
    ssize_t r = read(fd, buf, bs);
    if (r < 0) die("read");
    if (r == 0) break;
    total += (unsigned long long)r;
  }
  close(fd);
  uint64_t t = now_ns() - t0;
  printf("{\"bytes\":%llu,\"ns\":%llu}\n", total, (unsigned long long)t);
  return 0;
}

static int mode_append(int argc, char** argv) {
  if (argc < 2) return 1;
  size_t n = (size_t)strtoull(argv[1], NULL, 0);
  char* buf = malloc(n ? n : 1);
  memset(buf, 'a', n);
  uint64_t t0 = now_ns();
  int fd = open(argv[0], O_WRONLY | O_APPEND);
  if (fd < 0) die(argv[0]);
  uint64_t t1 = now_ns();
  if (write(fd, buf, n) != (ssize_t)n) die("write");
  uint64_t t2 = now_ns();
  if (close(fd) != 0) die("close");
  uint64_t t3 = now_ns();
  printf("{\"ns\":%llu,\"open_ns\":%llu,\"write_ns\":%llu,\"close_ns\":%llu}\n",
         (unsigned long long)(t3 - t0), (unsigned long long)(t1 - t0),
         (unsigned long long)(t2 - t1), (unsigned long long)(t3 - t2));
  return 0;
}

static int mode_probecost(int argc, char** argv) {
  if (argc < 3) return 1;
  int passes = atoi(argv[0]);
  const char* name = argv[1];
  size_t n;
  char** dirs = read_list(argv[2], &n);
  int* parent = malloc((n ? n : 1) * sizeof *parent);
  char** rel = malloc((n ? n : 1) * sizeof *rel);
  for (size_t i = 0; i < n; ++i) {
    char* slash = strrchr(dirs[i], '/');
    if (!slash || slash == dirs[i]) {
      fprintf(stderr, "statloop: %s: not an absolute path below a parent\n", dirs[i]);
      exit(2);
    }
    *slash = '\0';
    parent[i] = open(dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (parent[i] < 0) die(dirs[i]);
    rel[i] = slash + 1;
  }
  char path[8192], buf[32768];
  struct stat st;
  for (int p = 1; p <= passes; ++p) {
    uint64_t t[6];
    t[0] = now_ns();
    for (size_t i = 0; i < n; ++i) {
      snprintf(path, sizeof path, "%s/%s", rel[i], name);
      fstatat(parent[i], path, &st, AT_SYMLINK_NOFOLLOW);
    }
    t[1] = now_ns();
    for (size_t i = 0; i < n; ++i) {
      snprintf(path, sizeof path, "%s/.wh.%s", rel[i], name);
      fstatat(parent[i], path, &st, AT_SYMLINK_NOFOLLOW);
    }
    t[2] = now_ns();
    for (size_t i = 0; i < n; ++i) {
#ifdef SYS_listxattrat
      long r = syscall(SYS_listxattrat, parent[i], rel[i], AT_SYMLINK_NOFOLLOW, buf, sizeof buf);
#else
      long r = syscall(465, parent[i], rel[i], AT_SYMLINK_NOFOLLOW, buf, sizeof buf);
#endif
      if (r < 0 && errno == ENOSYS) {  /* before Linux 6.13: by path */
        snprintf(path, sizeof path, "/proc/self/fd/%d/%s", parent[i], rel[i]);
        llistxattr(path, buf, sizeof buf);
      }
    }
    t[3] = now_ns();
    for (size_t i = 0; i < n; ++i) {
      snprintf(path, sizeof path, "%s/.wh..wh..opq", rel[i]);
      fstatat(parent[i], path, &st, AT_SYMLINK_NOFOLLOW);
    }
    t[4] = now_ns();
    size_t entries = 0;
    for (size_t i = 0; i < n; ++i) {
      int fd = openat(parent[i], rel[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) die(rel[i]);
      long got;
      while ((got = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < got;) {
          off += ((struct dirent64*)(buf + off))->d_reclen;
          ++entries;
        }
      }
      close(fd);
    }
    t[5] = now_ns();
    double d = n ? (double)n * 1000.0 : 1.0;
    printf("{\"pass\":%d,\"dirs\":%zu,\"stat_name_us\":%.2f,\"stat_wh_us\":%.2f,"
           "\"listxattr_us\":%.2f,\"stat_opq_us\":%.2f,\"read_dir_us\":%.2f,"
           "\"entries_per_dir\":%.1f}\n",
           p, n, (t[1] - t[0]) / d, (t[2] - t[1]) / d, (t[3] - t[2]) / d, (t[4] - t[3]) / d,
           (t[5] - t[4]) / d, n ? (double)entries / (double)n : 0.0);
    fflush(stdout);
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: statloop stat|warm|readdir|read|append|probecost ARGS...\n");
    return 1;
  }
  if (strcmp(argv[1], "stat") == 0) return mode_stat(argc - 2, argv + 2);
  if (strcmp(argv[1], "warm") == 0) return mode_warm(argc - 2, argv + 2);
  if (strcmp(argv[1], "readdir") == 0) return mode_readdir(argc - 2, argv + 2);
  if (strcmp(argv[1], "read") == 0) return mode_read(argc - 2, argv + 2);
  if (strcmp(argv[1], "append") == 0) return mode_append(argc - 2, argv + 2);
  if (strcmp(argv[1], "probecost") == 0) return mode_probecost(argc - 2, argv + 2);
  fprintf(stderr, "statloop: unknown mode %s\n", argv[1]);
  return 1;
}
