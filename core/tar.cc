// Tar headers: parsing (checksum, octal or base-256 numbers, ustar prefix, pax and GNU long
// names) and writing (ustar, pax records where a field does not fit). Layout of the 512-byte
// header per POSIX.1-2008 pax(1) "ustar Interchange Format".
#include "core/tar.h"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace unionfs {
namespace {

constexpr size_t kBlock = 512;
constexpr uint64_t kMaxMeta = 1 << 20;  // pax and GNU long-name data we keep in memory
// Entry sizes past this are refused: the data and its padding must stay countable in 64 bits
// (a size near 2^64 would wrap to "no data" and smuggle its data in as headers).
constexpr uint64_t kMaxSize = uint64_t{1} << 62;

// Field offsets and widths of the ustar header.
struct Field {
  size_t off;
  size_t len;
};
constexpr Field kName{0, 100}, kMode{100, 8}, kUid{108, 8}, kGid{116, 8}, kSize{124, 12},
    kMtime{136, 12}, kChksum{148, 8}, kType{156, 1}, kLink{157, 100}, kMagic{257, 6},
    kVersion{263, 2}, kDevMajor{329, 8}, kDevMinor{337, 8}, kPrefix{345, 155};

std::string field_str(const char* b, Field f) {
  const char* p = b + f.off;
  return std::string(p, strnlen(p, f.len));
}

// An octal number padded with spaces or NULs, or GNU base-256 (first byte's high bit set).
bool field_num(const char* b, Field f, uint64_t* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(b + f.off);
  if (p[0] & 0x80) {
    if (p[0] != 0x80) return false;  // negative or too large for us
    uint64_t v = 0;
    for (size_t i = 1; i < f.len; ++i) {
      if (v >> 56) return false;
      v = (v << 8) | p[i];
    }
    *out = v;
    return true;
  }
  size_t i = 0;
  while (i < f.len && p[i] == ' ') ++i;
  uint64_t v = 0;
  bool any = false;
  for (; i < f.len && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (v >> 60) return false;
    v = v * 8 + (p[i] - '0');
    any = true;
  }
  for (; i < f.len; ++i) {
    if (p[i] != ' ' && p[i] != '\0') return false;
  }
  *out = any ? v : 0;
  return true;
}

bool checksum_ok(const char* b) {
  uint64_t want = 0;
  if (!field_num(b, kChksum, &want)) return false;
  uint64_t uns = 0;
  int64_t sgn = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const bool in_field = i >= kChksum.off && i < kChksum.off + kChksum.len;
    const char c = in_field ? ' ' : b[i];
    uns += static_cast<unsigned char>(c);
    sgn += static_cast<signed char>(c);
  }
  return want == uns || static_cast<int64_t>(want) == sgn;
}

bool is_zero(const char* b) {
  return std::all_of(b, b + kBlock, [](char c) { return c == 0; });
}

// "1700000000.5" → {1700000000, 500000000}; negative times are refused.
bool parse_time(const std::string& v, struct timespec* ts) {
  const size_t dot = v.find('.');
  const std::string sec = v.substr(0, dot);
  int64_t s = 0;
  auto [end, ec] = std::from_chars(sec.data(), sec.data() + sec.size(), s);
  if (ec != std::errc() || end != sec.data() + sec.size() || sec.empty() || s < 0) return false;
  long ns = 0;
  if (dot != std::string::npos) {
    const std::string frac = v.substr(dot + 1);
    for (size_t i = 0; i < 9; ++i) {
      const char c = i < frac.size() ? frac[i] : '0';
      if (c < '0' || c > '9') return false;
      ns = ns * 10 + (c - '0');
    }
  }
  ts->tv_sec = static_cast<time_t>(s);
  ts->tv_nsec = ns;
  return true;
}

bool parse_uint(const std::string& v, uint64_t* out) {
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
  return !v.empty() && ec == std::errc() && end == v.data() + v.size();
}

}  // namespace

Errno TarReader::bad(const std::string& msg, int err) {
  why_ = msg + " (at archive offset " + std::to_string(offset_) + ")";
  return Errno{err};
}

Result<bool> TarReader::read_block(char* block) {
  size_t have = 0;
  while (have < kBlock) {
    UNIONFS_ASSIGN_OR_RETURN(size_t got, in_.read(block + have, kBlock - have));
    if (got == 0) break;
    have += got;
  }
  offset_ += have;
  if (have == 0) return false;
  if (have < kBlock) return bad("truncated archive: a header block is cut short");
  return true;
}

Status TarReader::skip_rest() {
  const uint64_t n = left_ + pad_;
  if (n == 0) return kOk;
  UNIONFS_ASSIGN_OR_RETURN(uint64_t skipped, in_.skip(n));
  offset_ += skipped;
  left_ = pad_ = 0;
  if (skipped < n) return bad("truncated archive: an entry's data is cut short");
  return kOk;
}

Result<std::string> TarReader::read_meta(uint64_t size, const char* what) {
  if (size > kMaxMeta) return bad(std::string(what) + " larger than 1 MiB");
  std::string data(static_cast<size_t>(size), '\0');
  left_ = size;
  pad_ = (kBlock - size % kBlock) % kBlock;
  size_t have = 0;
  while (have < data.size()) {
    UNIONFS_ASSIGN_OR_RETURN(size_t got, read(data.data() + have, data.size() - have));
    have += got;
  }
  UNIONFS_TRY(skip_rest());
  return data;
}

Status TarReader::parse_pax(const std::string& data, Overrides& o) {
  for (size_t pos = 0; pos < data.size();) {
    const size_t sp = data.find(' ', pos);
    uint64_t len = 0;
    if (sp == std::string::npos || !parse_uint(data.substr(pos, sp - pos), &len) ||
        len < sp - pos + 3 || len > data.size() - pos || data[pos + len - 1] != '\n') {
      return bad("malformed pax extended header");
    }
    const std::string rec = data.substr(sp + 1, pos + len - 1 - (sp + 1));
    pos += len;
    const size_t eq = rec.find('=');
    if (eq == std::string::npos) return bad("malformed pax record '" + rec + "'");
    const std::string key = rec.substr(0, eq), value = rec.substr(eq + 1);
    TarEntry& v = o.values;
    bool ok = true;
    if (key == "path") {
      o.path = value;
      o.has_path = true;
    } else if (key == "linkpath") {
      o.link = value;
      o.has_link = true;
    } else if (key == "size") {
      ok = o.has_size = parse_uint(value, &v.size) && v.size <= kMaxSize;
    } else if (key == "uid") {
      ok = o.has_uid = parse_uint(value, &v.uid);
    } else if (key == "gid") {
      ok = o.has_gid = parse_uint(value, &v.gid);
    } else if (key == "mtime") {
      ok = o.has_mtime = parse_time(value, &v.mtime);
    } else if (key.starts_with("SCHILY.xattr.")) {
      // A later record for the same xattr replaces the earlier one (pax's rule for keys).
      const std::string attr = key.substr(13);
      auto it = std::find_if(v.xattrs.begin(), v.xattrs.end(),
                             [&](const auto& x) { return x.first == attr; });
      if (it != v.xattrs.end()) {
        it->second = value;
      } else {
        v.xattrs.emplace_back(attr, value);
      }
    } else if (key.starts_with("GNU.sparse.")) {
      return bad("GNU sparse entries are not supported", EPROTONOSUPPORT);
    }
    if (!ok) return bad("bad pax value for '" + key + "': '" + value + "'");
  }
  return kOk;
}

// The entry from a ustar header block and the overrides that came before it.
Status TarReader::fill(const char* b, const Overrides& o, TarEntry& e) {
  std::string name = field_str(b, kName);
  const bool posix = std::memcmp(b + kMagic.off, "ustar\0", 6) == 0;
  if (posix && b[kPrefix.off] != '\0') name = field_str(b, kPrefix) + "/" + name;
  e.path = o.has_path ? o.path : name;
  e.link = o.has_link ? o.link : field_str(b, kLink);
  uint64_t mode = 0, uid = 0, gid = 0, mtime = 0, size = 0, major = 0, minor = 0;
  if (!field_num(b, kMode, &mode) || !field_num(b, kUid, &uid) || !field_num(b, kGid, &gid) ||
      !field_num(b, kMtime, &mtime) || !field_num(b, kSize, &size)) {
    return bad("bad numeric field in the header of '" + e.path + "'");
  }
  if (size > kMaxSize) return bad("size field of '" + e.path + "' out of range");
  if (!field_num(b, kDevMajor, &major)) major = 0;
  if (!field_num(b, kDevMinor, &minor)) minor = 0;
  e.mode = static_cast<uint32_t>(mode & 07777);
  e.uid = o.has_uid ? o.values.uid : uid;
  e.gid = o.has_gid ? o.values.gid : gid;
  e.mtime = o.has_mtime ? o.values.mtime : timespec{static_cast<time_t>(mtime), 0};
  e.size = o.has_size ? o.values.size : size;
  e.dev_major = static_cast<uint32_t>(major);
  e.dev_minor = static_cast<uint32_t>(minor);
  e.xattrs = o.values.xattrs;
  const char type = b[kType.off];
  switch (type) {
    case '\0':
    case '0':
    case '7':
      e.type = TarType::kFile;
      break;
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
      e.type = static_cast<TarType>(type);
      break;
    default:
      return bad(
          "entry '" + e.path + "' has type '" + std::string(1, type) + "', which is not supported",
          EPROTONOSUPPORT);
  }
  // Only regular files carry data (a hard link's or a directory's size is not data).
  if (e.type != TarType::kFile) e.size = 0;
  left_ = e.size;
  pad_ = (kBlock - e.size % kBlock) % kBlock;
  return kOk;
}

Result<bool> TarReader::next(TarEntry& e) {
  e = TarEntry{};
  UNIONFS_TRY(skip_rest());
  Overrides o = global_;
  uint64_t meta = 0;  // extended-header bytes before this entry: bounded, as each one is
  char b[kBlock];
  for (;;) {
    UNIONFS_ASSIGN_OR_RETURN(bool got, read_block(b));
    if (!got) return bad("truncated archive: no end-of-archive marker");
    if (is_zero(b)) return false;  // the marker; a second zero block may follow
    if (!checksum_ok(b)) return bad("bad tar header checksum (not a tar archive, or corrupt)");
    uint64_t size = 0;
    if (!field_num(b, kSize, &size)) return bad("bad size field in a tar header");
    const char type = b[kType.off];
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      meta += size;
      if (meta > 4 * kMaxMeta) return bad("extended headers of one entry larger than 4 MiB");
    }
    if (type == 'x' || type == 'g') {
      UNIONFS_ASSIGN_OR_RETURN(std::string data, read_meta(size, "pax header"));
      if (type == 'g') {
        UNIONFS_TRY(parse_pax(data, global_));
        // A global name would name every entry; global records are copied into each entry,
        // so their total is bounded too.
        if (global_.has_path || global_.has_link) return bad("a pax global header sets a name");
        size_t total = 0;
        for (const auto& [k, v] : global_.values.xattrs) total += k.size() + v.size();
        if (total > kMaxMeta) return bad("pax global headers larger than 1 MiB");
      }
      UNIONFS_TRY(parse_pax(data, o));
    } else if (type == 'L' || type == 'K') {
      UNIONFS_ASSIGN_OR_RETURN(std::string data, read_meta(size, "GNU long name"));
      data.resize(strnlen(data.c_str(), data.size()));
      (type == 'L' ? o.path : o.link) = data;
      (type == 'L' ? o.has_path : o.has_link) = true;
    } else {
      UNIONFS_TRY(fill(b, o, e));
      return true;
    }
  }
}

Status TarReader::for_each(const std::function<Status(const TarEntry&)>& fn) {
  TarEntry e;
  for (;;) {
    UNIONFS_ASSIGN_OR_RETURN(bool more, next(e));
    if (!more) return kOk;
    UNIONFS_TRY(fn(e));
  }
}

Result<size_t> TarReader::read(char* buf, size_t len) {
  if (left_ == 0 || len == 0) return size_t{0};
  UNIONFS_ASSIGN_OR_RETURN(size_t got, in_.read(buf, std::min<uint64_t>(len, left_)));
  if (got == 0) return bad("truncated archive: an entry's data is cut short");
  left_ -= got;
  offset_ += got;
  return got;
}

std::string pax_record(const std::string& key, const std::string& value) {
  const size_t body = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t len = body + std::to_string(body).size();
  if (std::to_string(len).size() != std::to_string(body).size()) ++len;
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

namespace {

// Whether `v` fits an octal field of `width` bytes (width - 1 digits and a NUL).
bool fits_octal(uint64_t v, size_t width) {
  return (width - 1) * 3 >= 64 || v < (uint64_t{1} << ((width - 1) * 3));
}

void put_octal(char* b, Field f, uint64_t v) {
  std::snprintf(b + f.off, f.len, "%0*llo", static_cast<int>(f.len - 1),
                static_cast<unsigned long long>(v));
}

void put_str(char* b, Field f, const std::string& s) {
  std::memcpy(b + f.off, s.data(), std::min(s.size(), f.len));
}

// GNU base-256 for numbers no octal field holds (device numbers only: pax has no key).
void put_number(char* b, Field f, uint64_t v) {
  if (fits_octal(v, f.len)) return put_octal(b, f, v);
  auto* p = reinterpret_cast<unsigned char*>(b + f.off);
  std::memset(p, 0, f.len);
  p[0] = 0x80;
  for (size_t i = f.len - 1; i > 0 && v; --i, v >>= 8) p[i] = static_cast<unsigned char>(v & 0xff);
}

// The ustar split of a path into prefix and name, if it has one.
bool split_ustar(const std::string& path, std::string* prefix, std::string* name) {
  if (path.size() <= kName.len) {
    *name = path;
    return true;
  }
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    if (slash > kPrefix.len) break;
    if (path.size() - slash - 1 <= kName.len && slash + 1 < path.size()) {
      *prefix = path.substr(0, slash);
      *name = path.substr(slash + 1);
      return true;
    }
  }
  return false;
}

std::string time_str(const struct timespec& ts) {
  std::string s = std::to_string(ts.tv_sec);
  if (ts.tv_nsec != 0) {
    char frac[16];
    std::snprintf(frac, sizeof(frac), ".%09ld", ts.tv_nsec);
    std::string f = frac;
    while (f.back() == '0') f.pop_back();
    s += f;
  }
  return s;
}

}  // namespace

Status TarWriter::header(const TarEntry& e, const std::string& name, const std::string& prefix,
                         char type, uint64_t size, bool fits_numbers) {
  char b[kBlock] = {};
  put_str(b, kName, name);
  put_octal(b, kMode, e.mode & 07777);
  put_octal(b, kUid, fits_numbers && fits_octal(e.uid, kUid.len) ? e.uid : 0);
  put_octal(b, kGid, fits_numbers && fits_octal(e.gid, kGid.len) ? e.gid : 0);
  put_octal(b, kSize, fits_octal(size, kSize.len) ? size : 0);
  const uint64_t mt = e.mtime.tv_sec < 0 ? 0 : static_cast<uint64_t>(e.mtime.tv_sec);
  put_octal(b, kMtime, fits_octal(mt, kMtime.len) ? mt : 0);
  b[kType.off] = type;
  if (type != 'x') put_str(b, kLink, e.link.size() <= kLink.len ? e.link : std::string());
  std::memcpy(b + kMagic.off, "ustar\0", 6);
  std::memcpy(b + kVersion.off, "00", 2);
  put_number(b, kDevMajor, e.dev_major);
  put_number(b, kDevMinor, e.dev_minor);
  put_str(b, kPrefix, prefix);
  std::memset(b + kChksum.off, ' ', kChksum.len);
  unsigned sum = 0;
  for (char c : b) sum += static_cast<unsigned char>(c);
  std::snprintf(b + kChksum.off, kChksum.len, "%06o", sum);
  b[kChksum.off + 7] = ' ';
  return out_.write(b, kBlock);
}

Status TarWriter::add(const TarEntry& e) {
  UNIONFS_TRY(pad());
  std::string prefix, name, pax;
  if (!split_ustar(e.path, &prefix, &name)) pax += pax_record("path", e.path);
  if (e.link.size() > kLink.len) pax += pax_record("linkpath", e.link);
  const uint64_t size = e.type == TarType::kFile ? e.size : 0;
  if (!fits_octal(size, kSize.len)) pax += pax_record("size", std::to_string(size));
  if (!fits_octal(e.uid, kUid.len)) pax += pax_record("uid", std::to_string(e.uid));
  if (!fits_octal(e.gid, kGid.len)) pax += pax_record("gid", std::to_string(e.gid));
  if (e.mtime.tv_nsec != 0 || e.mtime.tv_sec < 0 ||
      !fits_octal(static_cast<uint64_t>(e.mtime.tv_sec), kMtime.len)) {
    pax += pax_record("mtime", time_str(e.mtime));
  }
  auto xattrs = e.xattrs;
  std::sort(xattrs.begin(), xattrs.end());
  for (const auto& [k, v] : xattrs) pax += pax_record("SCHILY.xattr." + k, v);
  if (!pax.empty()) {
    if (pax.size() > kMaxMeta) return Errno{E2BIG};
    // The pax header's own name: fixed, from the entry's base name, so output is repeatable.
    std::string base = e.path;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    base = base.substr(base.rfind('/') == std::string::npos ? 0 : base.rfind('/') + 1);
    TarEntry p;
    p.mode = 0644;
    p.mtime.tv_sec = e.mtime.tv_sec;
    UNIONFS_TRY(header(p, ("PaxHeaders/" + base).substr(0, kName.len), "", 'x', pax.size(), true));
    UNIONFS_TRY(out_.write(pax.data(), pax.size()));
    left_ = 0;
    pad_ = (kBlock - pax.size() % kBlock) % kBlock;
    UNIONFS_TRY(pad());
    if (name.empty()) name = e.path.substr(0, kName.len);
  }
  UNIONFS_TRY(header(e, name, prefix, static_cast<char>(e.type), size, true));
  left_ = size;
  pad_ = (kBlock - size % kBlock) % kBlock;
  return kOk;
}

Status TarWriter::write(const char* buf, size_t len) {
  if (len > left_) return Errno{EIO};
  left_ -= len;
  return out_.write(buf, len);
}

Status TarWriter::pad() {
  if (left_ != 0) return Errno{EIO};  // fewer data bytes than the header announced
  static const char kZero[kBlock] = {};
  Status s = out_.write(kZero, pad_);
  pad_ = 0;
  return s;
}

Status TarWriter::finish() {
  UNIONFS_TRY(pad());
  static const char kZero[2 * kBlock] = {};
  return out_.write(kZero, sizeof(kZero));
}

}  // namespace unionfs
