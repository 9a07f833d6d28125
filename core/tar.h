// A tar reader and writer for container image layers: ustar headers, pax extended headers
// (path, linkpath, size, uid, gid, mtime with fractions, SCHILY.xattr.*), GNU 'L'/'K' long
// names and base-256 numbers on read; regular files, hard links, symlinks, dirs, devices, fifos.
#pragma once

#include <time.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/byte_stream.h"
#include "core/result.h"

namespace unionfs {

/// Entry types, as the ustar typeflag.
enum class TarType : char {
  kFile = '0',
  kHardLink = '1',
  kSymlink = '2',
  kChar = '3',
  kBlock = '4',
  kDir = '5',
  kFifo = '6',
};

struct TarEntry {
  std::string path;  ///< as in the archive ("./etc/", "usr/bin/x")
  TarType type = TarType::kFile;
  std::string link;   ///< target of a symlink or hard link
  uint64_t size = 0;  ///< data bytes (regular files only)
  uint32_t mode = 0;  ///< permission bits, 07777
  uint64_t uid = 0;
  uint64_t gid = 0;
  struct timespec mtime {};
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  /// Extended attributes (SCHILY.xattr.NAME), in archive order on read.
  std::vector<std::pair<std::string, std::string>> xattrs;
};

class TarReader {
 public:
  explicit TarReader(ByteSource& in) : in_(in) {}

  /// Reads the next entry's header(s) into `e`, skipping what is left of the current entry's
  /// data. False at the end-of-archive marker. EBADMSG for a malformed or truncated archive
  /// and EPROTONOSUPPORT for an entry type we do not extract, with why() saying which.
  Result<bool> next(TarEntry& e);
  /// Reads the current entry's data; 0 at its end. EBADMSG if the archive ends first.
  Result<size_t> read(char* buf, size_t len);
  /// Calls `fn` on every entry up to the end-of-archive marker; stops at the first error,
  /// the reader's (why() says it) or `fn`'s.
  Status for_each(const std::function<Status(const TarEntry&)>& fn);
  /// What went wrong, with the entry name and the archive offset.
  [[nodiscard]] const std::string& why() const { return why_; }
  /// Archive bytes consumed so far (after next(): where the entry's data starts).
  [[nodiscard]] uint64_t offset() const { return offset_; }

 private:
  /// What pax and GNU long-name headers say about the entry that follows them.
  struct Overrides {
    std::string path, link;
    bool has_path = false, has_link = false, has_size = false, has_uid = false, has_gid = false,
         has_mtime = false;
    TarEntry values;  // size, uid, gid, mtime, xattrs
  };

  Result<bool> read_block(char* block);
  Result<std::string> read_meta(uint64_t size, const char* what);
  Status skip_rest();
  Status parse_pax(const std::string& data, Overrides& o);
  Status fill(const char* block, const Overrides& o, TarEntry& e);
  Errno bad(const std::string& msg, int err = EBADMSG);

  ByteSource& in_;
  uint64_t offset_ = 0;
  uint64_t left_ = 0;  // data bytes of the current entry not read yet
  uint64_t pad_ = 0;   // padding after them
  Overrides global_;   // pax 'g' records: apply to every later entry
  std::string why_;
};

class TarWriter {
 public:
  explicit TarWriter(FdSink& out) : out_(out) {}

  /// Writes the header of `e` (a pax header before it when a field does not fit ustar: long
  /// names, big numbers, sub-second mtime, xattrs). Then exactly `e.size` bytes must follow
  /// through write(). Names have no length limit (pax). E2BIG when the pax header would pass
  /// 1 MiB (huge xattrs); otherwise errors of the sink.
  Status add(const TarEntry& e);
  /// Data of the current entry.
  Status write(const char* buf, size_t len);
  /// Pads the last entry and writes the end-of-archive marker (two zero blocks).
  Status finish();

 private:
  Status pad();
  Status header(const TarEntry& e, const std::string& name, const std::string& prefix, char type,
                uint64_t size, bool fits_numbers);

  FdSink& out_;
  uint64_t left_ = 0;
  uint64_t pad_ = 0;
};

/// One pax record, "LEN key=value\n" (LEN counts the whole record).
std::string pax_record(const std::string& key, const std::string& value);

}  // namespace unionfs
