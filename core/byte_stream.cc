// Byte streams: pread ranges, hashing, and decompressor children. The feeder thread blocks
// SIGPIPE for itself, so a child that dies early turns its writes into EPIPE, not a kill.
#include "core/byte_stream.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/sys.h"

namespace unionfs {

Result<uint64_t> ByteSource::skip(uint64_t n) {
  char buf[65536];
  uint64_t done = 0;
  while (done < n) {
    UNIONFS_ASSIGN_OR_RETURN(size_t got, read(buf, std::min<uint64_t>(sizeof(buf), n - done)));
    if (got == 0) break;
    done += got;
  }
  return done;
}

Result<size_t> FileRange::read(char* buf, size_t len) {
  const uint64_t left = end_ - begin_ - pos_;
  if (left == 0 || len == 0) return size_t{0};
  const size_t want = static_cast<size_t>(std::min<uint64_t>(len, left));
  UNIONFS_ASSIGN_OR_RETURN(size_t got,
                           sys::pread(fd_, buf, want, static_cast<off_t>(begin_ + pos_)));
  pos_ += got;
  return got;
}

Result<uint64_t> FileRange::skip(uint64_t n) {
  const uint64_t step = std::min(n, end_ - begin_ - pos_);
  pos_ += step;
  return step;
}

Result<size_t> HashingSource::read(char* buf, size_t len) {
  UNIONFS_ASSIGN_OR_RETURN(size_t got, in_.read(buf, len));
  sha_.update(buf, got);
  bytes_ += got;
  if (on_bytes_ && got > 0) on_bytes_(got);
  return got;
}

Status HashingSource::drain() {
  char buf[65536];
  for (;;) {
    UNIONFS_ASSIGN_OR_RETURN(size_t got, read(buf, sizeof(buf)));
    if (got == 0) return kOk;
  }
}

Compression sniff_compression(const char* head, size_t len) {
  auto starts = [&](std::string_view magic) {
    return len >= magic.size() && std::memcmp(head, magic.data(), magic.size()) == 0;
  };
  if (starts("\x1f\x8b")) return Compression::kGzip;
  if (starts("\x28\xb5\x2f\xfd")) return Compression::kZstd;
  if (starts("BZh")) return Compression::kBzip2;
  if (starts("\xfd"
             "7zXZ"))
    return Compression::kXz;
  return Compression::kNone;
}

const char* compression_name(Compression c) {
  switch (c) {
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
    case Compression::kBzip2:
      return "bzip2";
    case Compression::kXz:
      return "xz";
    case Compression::kNone:
      break;
  }
  return "none";
}

Result<std::unique_ptr<FilterSource>> FilterSource::start(const std::vector<std::string>& argv,
                                                          ByteSource& in, std::string* why) {
  std::unique_ptr<FilterSource> f(new FilterSource(argv.front(), in));
  auto to = sys::pipe();
  if (!to) return Errno{to.error()};
  auto from = sys::pipe();
  if (!from) return Errno{from.error()};
  auto pid = sys::spawn(argv, to->first.get(), from->second.get());
  if (!pid) {
    if (why) {
      *why = "cannot run `" + argv.front() + "`: " + std::strerror(pid.error()) +
             (pid.error() == ENOENT ? " (is it installed?)" : "");
    }
    return Errno{pid.error()};
  }
  f->pid_ = *pid;
  f->from_child_ = std::move(from->first);
  f->feeder_ = std::thread(&FilterSource::feed, f.get(), std::move(to->second));
  return f;
}

void FilterSource::feed(UniqueFd to_child) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  char buf[65536];
  for (;;) {
    auto got = in_.read(buf, sizeof(buf));
    if (!got) {
      feed_error_ = got.error();
      return;
    }
    if (*got == 0) return;
    Status s = sys::write_all(to_child.get(), buf, *got);
    if (!s) {
      // EPIPE: the child stopped reading; its exit status tells why.
      if (s.error() != EPIPE) feed_error_ = s.error();
      return;
    }
  }
}

Status FilterSource::finish() {
  done_ = true;
  from_child_.reset();
  if (feeder_.joinable()) feeder_.join();
  auto st = sys::wait_child(pid_);
  pid_ = -1;
  if (!st) return Errno{st.error()};
  if (feed_error_ != 0) {
    why_ = "reading the compressed data: " + std::string(std::strerror(feed_error_));
    return Errno{feed_error_};
  }
  if (*st != 0) {
    why_ = "`" + name_ + " -dc` failed (exit status " + std::to_string(*st) +
           "): the compressed data is corrupt or truncated";
    return Errno{EIO};
  }
  return kOk;
}

Result<size_t> FilterSource::read(char* buf, size_t len) {
  if (done_) return size_t{0};
  UNIONFS_ASSIGN_OR_RETURN(size_t got, sys::read(from_child_.get(), buf, len));
  if (got == 0) UNIONFS_TRY(finish());
  return got;
}

FilterSource::~FilterSource() {
  if (pid_ > 0) {
    from_child_.reset();
    sys::kill_child(pid_, SIGKILL);
    if (feeder_.joinable()) feeder_.join();
    (void)sys::wait_child(pid_);
  } else if (feeder_.joinable()) {
    feeder_.join();
  }
}

Result<std::unique_ptr<ByteSource>> open_decompressed(Compression c, ByteSource& in,
                                                      std::string* why) {
  if (c == Compression::kNone) return std::unique_ptr<ByteSource>();
  if (c == Compression::kBzip2 || c == Compression::kXz) {
    if (why) *why = std::string(compression_name(c)) + "-compressed layers are not supported";
    return Errno{EPROTONOSUPPORT};
  }
  const std::string prog = compression_name(c);
  auto f = FilterSource::start({prog, "-dc", "-q"}, in, why);
  if (!f) return Errno{f.error()};
  return std::unique_ptr<ByteSource>(std::move(*f));
}

Status FdSink::write(const char* buf, size_t len) {
  UNIONFS_TRY(sys::write_all(fd_, buf, len));
  sha_.update(buf, len);
  bytes_ += len;
  if (on_bytes_ && len > 0) on_bytes_(len);
  return kOk;
}

}  // namespace unionfs
