// Helpers for the tar, import and export tests: tar archives built in memory from entries
// (through our TarWriter), a tree description that ignores inode numbers, and running a shell
// command to compare with the system's tar, gzip and sha256sum.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/tar.h"
#include "layer_builder.h"

namespace unionfs::test {

/// One archive entry and its data.
struct Ent {
  TarEntry e;
  std::string data;
};

inline Ent file_ent(const std::string& path, const std::string& data, uint32_t mode = 0644) {
  Ent x;
  x.e.path = path;
  x.e.type = TarType::kFile;
  x.e.size = data.size();
  x.e.mode = mode;
  x.e.mtime = {1600000000, 0};
  x.data = data;
  return x;
}

inline Ent dir_ent(const std::string& path, uint32_t mode = 0755) {
  Ent x;
  x.e.path = path;
  x.e.type = TarType::kDir;
  x.e.mode = mode;
  x.e.mtime = {1600000000, 0};
  return x;
}

inline Ent link_ent(TarType type, const std::string& path, const std::string& target) {
  Ent x;
  x.e.path = path;
  x.e.type = type;
  x.e.link = target;
  x.e.mode = 0777;
  x.e.mtime = {1600000000, 0};
  return x;
}

/// Writes the entries as a tar to `path` and returns its bytes.
inline std::string write_tar(const std::string& path, const std::vector<Ent>& ents) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail_errno("create " + path);
  FdSink sink(fd);
  TarWriter w(sink);
  bool ok = true;
  for (const Ent& x : ents) {
    ok = ok && w.add(x.e).ok() && w.write(x.data.data(), x.data.size()).ok();
  }
  ok = ok && w.finish().ok();
  ::close(fd);
  if (!ok) throw std::runtime_error("TarWriter failed on " + path);
  return read_file(path);
}

/// Writes bytes to a file.
inline void put_file(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail_errno("create " + path);
  if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
    fail_errno("write " + path);
  ::close(fd);
}

/// Runs `cmd` with sh; its stdout (the exit status must be 0).
inline std::string shell(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) fail_errno("popen " + cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  if (st != 0) throw std::runtime_error("command failed (" + std::to_string(st) + "): " + cmd);
  return out;
}

/// One line per object under `root`: path, type and mode, owner, size, rdev, mtime, symlink
/// target, content hash, xattrs, and which earlier path shares its inode. No inode numbers or
/// ctimes, so two copies of a tree compare equal.
inline std::vector<std::string> tree(const std::string& root) {
  std::vector<std::string> lines = manifest(root);
  std::map<std::string, std::string> first_of_ino;
  for (std::string& l : lines) {
    auto cut = [&](const std::string& key) {
      const size_t a = l.find(" " + key + "=");
      if (a == std::string::npos) return std::string();
      const size_t b = l.find(' ', a + 1);
      std::string v = l.substr(a + key.size() + 2,
                               b == std::string::npos ? std::string::npos : b - a - key.size() - 2);
      l.erase(a, b == std::string::npos ? std::string::npos : b - a);
      return v;
    };
    const std::string ino = cut("ino");
    cut("ctime");
    const bool dir = l.find(" mode=4") != std::string::npos;
    if (dir) {
      cut("size");
      cut("nlink");
      continue;
    }
    const std::string path = l.substr(0, l.find(' '));
    auto [it, fresh] = first_of_ino.try_emplace(ino, path);
    if (!fresh) l += " same-inode-as=" + it->second;
  }
  return lines;
}

inline bool is_root() { return ::geteuid() == 0; }

}  // namespace unionfs::test
