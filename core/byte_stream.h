// Byte streams for image archives: a range of a file, a hashing and counting wrapper, and the
// output of a decompressor child (`gzip -dc`, `zstd -dc`) fed by a thread; a file sink that
// hashes what it writes. Compression is told by magic bytes, never by a file name.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"
#include "core/sha256.h"
#include "core/unique_fd.h"

namespace unionfs {

/// A sequential source of bytes.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  /// Up to `len` bytes; 0 only at the end. Errors: errno of the underlying read (EIO...).
  virtual Result<size_t> read(char* buf, size_t len) = 0;
  /// Skips up to `n` bytes: how many were skipped (fewer only at the end).
  virtual Result<uint64_t> skip(uint64_t n);
};

/// Bytes [offset, offset + size) of a file read with pread: a short-lived view, the fd is
/// borrowed (and may be shared) for the object's life.
class FileRange final : public ByteSource {
 public:
  FileRange(int fd, uint64_t offset, uint64_t size)
      : fd_(fd), begin_(offset), end_(offset + size) {}
  Result<size_t> read(char* buf, size_t len) override;
  Result<uint64_t> skip(uint64_t n) override;
  /// Bytes consumed so far.
  [[nodiscard]] uint64_t position() const { return pos_; }

 private:
  int fd_;
  uint64_t begin_;
  uint64_t end_;
  uint64_t pos_ = 0;
};

/// Passes `in` through, hashing (SHA-256) and counting every byte; `on_bytes` is told of each
/// read (for a progress bar).
class HashingSource final : public ByteSource {
 public:
  explicit HashingSource(ByteSource& in, std::function<void(uint64_t)> on_bytes = {})
      : in_(in), on_bytes_(std::move(on_bytes)) {}
  Result<size_t> read(char* buf, size_t len) override;
  /// Reads what is left to the end (a digest covers the whole stream).
  Status drain();
  [[nodiscard]] uint64_t bytes() const { return bytes_; }
  /// The digest of everything read; call once, at the end.
  std::string hex() { return sha_.hex(); }

 private:
  ByteSource& in_;
  std::function<void(uint64_t)> on_bytes_;
  Sha256 sha_;
  uint64_t bytes_ = 0;
};

enum class Compression { kNone, kGzip, kZstd, kBzip2, kXz };

/// The compression of a stream that starts with `head` (at least 6 bytes, or the whole stream).
Compression sniff_compression(const char* head, size_t len);
/// "gzip", "zstd"... for messages.
const char* compression_name(Compression c);

/// The stdout of a decompressor child whose stdin a thread feeds from `in`.
class FilterSource final : public ByteSource {
 public:
  /// Starts `argv` (e.g. {"gzip", "-dc"}). ENOENT (`*why` says so) when it is not installed.
  static Result<std::unique_ptr<FilterSource>> start(const std::vector<std::string>& argv,
                                                     ByteSource& in, std::string* why);
  FilterSource(const FilterSource&) = delete;
  FilterSource& operator=(const FilterSource&) = delete;
  /// Stops the child if still running and reaps it.
  ~FilterSource() override;
  /// At the end of the output, checks the child's exit status: EIO when it failed (bad
  /// compressed data); why() says which program and how.
  Result<size_t> read(char* buf, size_t len) override;
  [[nodiscard]] const std::string& why() const { return why_; }

 private:
  FilterSource(std::string name, ByteSource& in) : name_(std::move(name)), in_(in) {}
  void feed(UniqueFd to_child);
  Status finish();

  std::string name_;
  ByteSource& in_;
  UniqueFd from_child_;
  pid_t pid_ = -1;
  std::thread feeder_;
  int feed_error_ = 0;  // written by the feeder, read after join()
  std::string why_;
  bool done_ = false;
};

/// A decompressing view of `in` when its first bytes say it is compressed (gzip, zstd), else
/// `in` itself (returned as nullptr: use `in`). EPROTONOSUPPORT for bzip2/xz, ENOENT when
/// `zstd` is not installed; `*why` names the problem.
Result<std::unique_ptr<ByteSource>> open_decompressed(Compression c, ByteSource& in,
                                                      std::string* why);

/// Writes to a file descriptor (borrowed for the object's life), hashing and counting what it
/// writes.
class FdSink {
 public:
  explicit FdSink(int fd, std::function<void(uint64_t)> on_bytes = {})
      : fd_(fd), on_bytes_(std::move(on_bytes)) {}
  /// Errors: those of write(2) (ENOSPC, EIO...).
  Status write(const char* buf, size_t len);
  [[nodiscard]] uint64_t bytes() const { return bytes_; }
  std::string hex() { return sha_.hex(); }

 private:
  int fd_;
  std::function<void(uint64_t)> on_bytes_;
  Sha256 sha_;
  uint64_t bytes_ = 0;
};

}  // namespace unionfs
