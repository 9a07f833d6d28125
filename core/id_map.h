// IdMap: the owner translation of fuse-overlayfs's uidmapping=, gidmapping=, squash_to_root,
// squash_to_uid= and squash_to_gid= options, between the ids stored in the layers and the ids the
// mount shows. Pure logic, no syscalls: the FUSE adapter applies it to every attribute it replies
// with, to the owner of new objects and to chown. (No kernel counterpart: overlayfs leaves this to
// idmapped mounts.)
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace unionfs {

/// One range of a mapping: `count` ids from `container` on, as stored in the layers, show through
/// the mount as the ids from `host` on.
struct IdRange {
  uint32_t container = 0;
  uint32_t host = 0;
  uint32_t count = 0;
};

/// The mapping of one kind of id, written "C:H:N[:C:H:N...]": the fields of /proc/PID/uid_map
/// lines, all joined by ':' (containers/storage writes ContainerID:HostID:Size). No range at all
/// is the identity. Where ranges overlap, the last one given wins, as in fuse-overlayfs.
class IdMapping {
 public:
  IdMapping() = default;  ///< the identity

  /// Parses `spec` (the value of option `what`, which the message names). Empty fields are
  /// skipped and an empty spec is the identity, as in fuse-overlayfs. Throws SetupError for a
  /// field that is not a decimal number below 2^32, a number of fields that is not a multiple of
  /// three, or a range that runs past id 2^32 - 1.
  static IdMapping parse(std::string_view spec, std::string_view what);

  [[nodiscard]] bool identity() const { return ranges_.empty(); }
  [[nodiscard]] const std::vector<IdRange>& ranges() const { return ranges_; }
  /// The id the mount shows for `id` stored in a layer; nullopt if no range holds it.
  [[nodiscard]] std::optional<uint32_t> to_host(uint32_t id) const { return find(id, true); }
  /// The id to store in the upper layer for `id` as the mount shows it; nullopt if no range
  /// holds it.
  [[nodiscard]] std::optional<uint32_t> to_container(uint32_t id) const { return find(id, false); }

 private:
  [[nodiscard]] std::optional<uint32_t> find(uint32_t id, bool to_host) const;

  std::vector<IdRange> ranges_;  // in the order given; searched from the last
};

/// Everything the mount options say about owners. Ids that no range holds become the overflow
/// ids (/proc/sys/kernel/overflow{u,g}id, 65534 by default), in both directions, as in
/// fuse-overlayfs. Squashing changes only what the mount shows, never what is stored.
struct IdMap {
  IdMapping uids, gids;
  std::optional<uint32_t> squash_uid, squash_gid;  ///< squash_to_uid=, squash_to_gid=
  bool squash_to_root = false;                     ///< shows 0 where no squash_to_{u,g}id= is set
  uint32_t overflow_uid = 65534, overflow_gid = 65534;

  /// Takes `opt` if it is one of the five options, and returns whether it did. Throws SetupError
  /// for a bad value (a squash id must be a decimal number from 0 to 4294967294).
  bool parse_option(std::string_view opt);

  /// Whether any squash_to_* option is set: then a failed chown is not an error (fuse-overlayfs's
  /// do_fchown), since the owners shown do not follow it anyway.
  [[nodiscard]] bool squashes() const { return squash_to_root || squash_uid || squash_gid; }
  /// Whether the map changes nothing.
  [[nodiscard]] bool identity() const { return !squashes() && uids.identity() && gids.identity(); }

  /// Rewrites st_uid and st_gid, read from a layer, into what the mount shows.
  void to_host(struct stat& st) const;
  /// The owner to store for an id the mount shows (the caller of a create, the new owner of a
  /// chown); squashing does not apply.
  [[nodiscard]] uid_t container_uid(uid_t host) const {
    return uids.to_container(host).value_or(overflow_uid);
  }
  [[nodiscard]] gid_t container_gid(gid_t host) const {
    return gids.to_container(host).value_or(overflow_gid);
  }

 private:
  [[nodiscard]] uint32_t shown(uint32_t id, const std::optional<uint32_t>& squash,
                               const IdMapping& m, uint32_t overflow) const;
};

}  // namespace unionfs
