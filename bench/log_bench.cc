// log_bench: write a log the way a service does, and time every write.
//
// Opens PATH with O_WRONLY|O_APPEND (|O_CREAT), appends records of --record bytes (a timestamped
// text line, as a logger writes one) until --total bytes have been appended, with one write(2)
// per record and optionally fdatasync(2) after every --fsync-every records, and prints one JSON
// object: throughput, p50/p99/max write latency, the latency of open(2) and of the first write
// (on a union mount, opening a file of a lower layer for writing copies it up, so the first
// record pays the copy-up), and a down-sampled latency-over-time series for plotting.
//
// A record's latency is what the logging call would block for: its write(2), plus the
// fdatasync(2) when that record triggers one. Times are CLOCK_MONOTONIC.
//
//   log_bench PATH --total BYTES [--record BYTES] [--fsync-every N] [--points N] [--no-create]
//   log_bench PATH --fill BYTES [--record BYTES]      (make a log of BYTES, fast: 1 MiB writes)
//
// Plain POSIX, no FUSE: it measures whatever file system PATH is on.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "log_bench: %s\n", msg.c_str());
  std::exit(2);
}

[[noreturn]] void die_errno(const std::string& what) { die(what + ": " + std::strerror(errno)); }

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

uint64_t parse_size(std::string_view s) {
  if (s.empty()) die("empty size");
  std::string str(s);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(str.c_str(), &end);
  if (errno != 0 || end == str.c_str() || v < 0) die("bad size: " + str);
  std::string_view suf(end);
  uint64_t mul = 1;
  if (suf == "" || suf == "B")
    mul = 1;
  else if (suf == "K" || suf == "KiB" || suf == "k")
    mul = 1ull << 10;
  else if (suf == "M" || suf == "MiB")
    mul = 1ull << 20;
  else if (suf == "G" || suf == "GiB")
    mul = 1ull << 30;
  else
    die("bad size suffix: " + str);
  return static_cast<uint64_t>(v * static_cast<double>(mul));
}

// One log record of exactly `size` bytes ending in '\n': an ISO-8601 wall-clock timestamp, a level,
// a sequence number and a message padded to the size.
void make_record(char* buf, size_t size, uint64_t seq) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char head[160];
  int n = std::snprintf(head, sizeof head,
                        "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ INFO app[4242]: seq=%010" PRIu64
                        " GET /api/v1/items status=200 dur_ms=%" PRIu64 " msg=",
                        t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                        ts.tv_nsec / 1000, seq, seq % 97);
  size_t h = std::min(static_cast<size_t>(std::max(n, 0)), size > 0 ? size - 1 : 0);
  std::memcpy(buf, head, h);
  for (size_t i = h; i + 1 < size; ++i) buf[i] = static_cast<char>('a' + (i + seq) % 26);
  if (size > 0) buf[size - 1] = '\n';
}

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      die_errno("write");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

int fill(const char* path, uint64_t total, size_t record) {
  int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die_errno(std::string("open ") + path);
  std::vector<char> chunk;
  chunk.reserve((1u << 20) + record);
  std::vector<char> rec(record);
  uint64_t done = 0, seq = 0;
  while (done < total) {
    chunk.clear();
    while (chunk.size() + record <= (1u << 20) && done + chunk.size() < total) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(record, total - done - chunk.size()));
      make_record(rec.data(), len, seq++);
      chunk.insert(chunk.end(), rec.begin(), rec.begin() + static_cast<long>(len));
    }
    write_all(fd, chunk.data(), chunk.size());
    done += chunk.size();
  }
  if (::fsync(fd) < 0) die_errno("fsync");
  ::close(fd);
  std::printf("{\"filled\": %" PRIu64 "}\n", total);
  return 0;
}

double pct(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return static_cast<double>(sorted[std::min(i, sorted.size() - 1)]) / 1000.0;
}

void usage() {
  std::fprintf(stderr,
               "usage: log_bench PATH --total BYTES [--record BYTES] [--fsync-every N]\n"
               "                 [--points N] [--no-create]\n"
               "       log_bench PATH --fill BYTES [--record BYTES]\n"
               "BYTES takes K, M, G suffixes (powers of 1024). Prints JSON on stdout.\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  const char* path = nullptr;
  uint64_t total = 0, fill_bytes = 0;
  size_t record = 200;
  uint64_t fsync_every = 0;
  size_t points = 1500;
  bool create = true;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto val = [&]() -> std::string_view {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--total")
      total = parse_size(val());
    else if (a == "--fill")
      fill_bytes = parse_size(val());
    else if (a == "--record")
      record = static_cast<size_t>(parse_size(val()));
    else if (a == "--fsync-every")
      fsync_every = std::strtoull(std::string(val()).c_str(), nullptr, 10);
    else if (a == "--points")
      points = std::strtoull(std::string(val()).c_str(), nullptr, 10);
    else if (a == "--no-create")
      create = false;
    else if (a == "-h" || a == "--help")
      usage();
    else if (!a.empty() && a[0] != '-' && path == nullptr)
      path = argv[i];
    else
      usage();
  }
  if (path == nullptr || record == 0 || record > (1u << 20)) usage();
  if (fill_bytes > 0) return fill(path, fill_bytes, record);
  if (total == 0) usage();

  const uint64_t n = (total + record - 1) / record;
  std::vector<int64_t> lat(n);     // ns, per record (write + its fdatasync, if any)
  std::vector<int64_t> end_at(n);  // ns since open() was called, when the record's call returned
  std::vector<int64_t> syncs;
  syncs.reserve(fsync_every ? n / fsync_every + 1 : 0);
  std::vector<char> rec(record);

  struct stat st0 {};
  bool existed = ::stat(path, &st0) == 0;

  int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0);
  make_record(rec.data(), std::min<uint64_t>(record, total), 0);  // warm up (time zone, stdio)
  const int64_t t0 = now_ns();
  int fd = ::open(path, flags, 0644);
  const int64_t t_open = now_ns();
  if (fd < 0) die_errno(std::string("open ") + path);

  uint64_t written = 0;
  for (uint64_t i = 0; i < n; ++i) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(record, total - written));
    make_record(rec.data(), len, i);  // outside the timed part
    const int64_t a = now_ns();
    write_all(fd, rec.data(), len);
    if (fsync_every && (i + 1) % fsync_every == 0) {
      const int64_t s = now_ns();
      if (::fdatasync(fd) < 0) die_errno("fdatasync");
      syncs.push_back(now_ns() - s);
    }
    const int64_t b = now_ns();
    lat[i] = b - a;
    end_at[i] = b - t0;
    written += len;
  }
  const int64_t t_end = now_ns();
  struct stat st1 {};
  if (::fstat(fd, &st1) < 0) die_errno("fstat");
  if (::close(fd) < 0) die_errno("close");
  const int64_t t_close = now_ns();

  std::vector<int64_t> sorted(lat);
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> ssorted(syncs);
  std::sort(ssorted.begin(), ssorted.end());
  double sum = 0;
  for (int64_t v : lat) sum += static_cast<double>(v);
  const double secs = static_cast<double>(t_end - t0) / 1e9;

  std::printf("{\n");
  std::printf("  \"path\": \"%s\",\n", path);
  std::printf("  \"existed\": %s,\n", existed ? "true" : "false");
  std::printf("  \"initial_size\": %" PRIu64 ",\n",
              existed ? static_cast<uint64_t>(st0.st_size) : uint64_t{0});
  std::printf("  \"final_size\": %" PRIu64 ",\n", static_cast<uint64_t>(st1.st_size));
  std::printf("  \"record_bytes\": %zu,\n  \"records\": %" PRIu64 ",\n  \"bytes\": %" PRIu64 ",\n",
              record, n, written);
  std::printf("  \"fsync_every\": %" PRIu64 ",\n  \"fsyncs\": %zu,\n", fsync_every, syncs.size());
  std::printf("  \"elapsed_s\": %.6f,\n", secs);
  std::printf("  \"throughput_mib_s\": %.4f,\n", static_cast<double>(written) / secs / (1 << 20));
  std::printf("  \"records_per_s\": %.1f,\n", static_cast<double>(n) / secs);
  std::printf("  \"open_us\": %.1f,\n", static_cast<double>(t_open - t0) / 1000.0);
  std::printf("  \"first_write_us\": %.1f,\n", static_cast<double>(lat[0]) / 1000.0);
  std::printf("  \"pause_us\": %.1f,\n", static_cast<double>(t_open - t0 + lat[0]) / 1000.0);
  std::printf("  \"close_us\": %.1f,\n", static_cast<double>(t_close - t_end) / 1000.0);
  std::printf("  \"mean_us\": %.3f,\n", sum / static_cast<double>(n) / 1000.0);
  std::printf("  \"p50_us\": %.3f,\n  \"p90_us\": %.3f,\n  \"p99_us\": %.3f,\n", pct(sorted, 50),
              pct(sorted, 90), pct(sorted, 99));
  std::printf("  \"p999_us\": %.3f,\n  \"max_us\": %.3f,\n", pct(sorted, 99.9),
              static_cast<double>(sorted.back()) / 1000.0);
  std::printf(
      "  \"max_after_first_us\": %.3f,\n",
      n > 1 ? static_cast<double>(*std::max_element(lat.begin() + 1, lat.end())) / 1000.0 : 0.0);
  std::printf("  \"fsync_p50_us\": %.3f,\n  \"fsync_max_us\": %.3f,\n", pct(ssorted, 50),
              ssorted.empty() ? 0.0 : static_cast<double>(ssorted.back()) / 1000.0);

  // Latency over time, down-sampled: first the pause before the first record was written (open(2)
  // plus the first write: on a union mount, opening a lower file for writing copies it up), then
  // buckets of consecutive records, each with the time its last record returned (seconds since
  // open() was called) and the median and maximum latency in it (µs).
  const double pause_us = static_cast<double>(t_open - t0 + lat[0]) / 1000.0;
  std::printf("  \"series_columns\": [\"t_s\", \"p50_us\", \"max_us\", \"records\"],\n");
  std::printf("  \"series\": [\n    [%.6f, %.3f, %.3f, 1]", static_cast<double>(end_at[0]) / 1e9,
              pause_us, pause_us);
  if (n > 1 && points > 1) {
    const uint64_t rest = n - 1;
    const uint64_t per = std::max<uint64_t>(1, (rest + points - 2) / (points - 1));
    std::vector<int64_t> b;
    for (uint64_t s = 1; s < n; s += per) {
      uint64_t e = std::min(n, s + per);
      b.assign(lat.begin() + static_cast<long>(s), lat.begin() + static_cast<long>(e));
      std::nth_element(b.begin(), b.begin() + static_cast<long>(b.size() / 2), b.end());
      double med = static_cast<double>(b[b.size() / 2]) / 1000.0;
      double mx = static_cast<double>(*std::max_element(b.begin(), b.end())) / 1000.0;
      std::printf(",\n    [%.6f, %.3f, %.3f, %" PRIu64 "]",
                  static_cast<double>(end_at[e - 1]) / 1e9, med, mx, e - s);
    }
  }
  std::printf("\n  ]\n}\n");
  return 0;
}
