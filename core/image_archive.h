// Reading image archives: `docker save`/`podman save` (docker-archive: manifest.json, config,
// layer tars) and OCI image layouts in a tar (`podman save --format oci-archive`: oci-layout,
// index.json, blobs/sha256/...). Finds the image's layers and the digests to check them by.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/unique_fd.h"

namespace unionfs {

/// A file of the archive: where its bytes are in the archive file.
struct ArchiveMember {
  uint64_t offset = 0;
  uint64_t size = 0;
  char type = '0';   ///< '0' file, '5' dir, '2' symlink, '1' hard link
  std::string link;  ///< symlink or hard-link target
};

/// The files of an (uncompressed) image archive, by cleaned path.
class ArchiveIndex {
 public:
  /// Reads every header of the tar file `fd`, which the index keeps (data is skipped, not
  /// read). EBADMSG and the like with `*why`, as TarReader reports them.
  static Result<ArchiveIndex> read(UniqueFd fd, std::string* why);

  /// The member at `path`, symlinks and hard links inside the archive followed; nullptr if
  /// absent or not a regular file.
  [[nodiscard]] const ArchiveMember* file(const std::string& path) const;
  /// A small member (JSON) read whole. ENOENT/EFBIG with `*why`.
  Result<std::string> slurp(const std::string& path, std::string* why) const;
  [[nodiscard]] bool has(const std::string& path) const { return members_.contains(path); }
  /// The archive file, for reading members' bytes.
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::map<std::string, ArchiveMember> members_;
};

/// One layer of the image to import, bottom first.
struct LayerRef {
  std::string path;         ///< member of the archive holding the layer (maybe compressed)
  std::string blob_sha256;  ///< hex digest of the member's bytes, when the format names one
  uint64_t blob_size = 0;   ///< size the manifest gives (0: not given)
  std::string diff_id;      ///< hex sha256 of the uncompressed layer tar (from the config)
  std::string media_type;   ///< OCI only
};

struct ImagePlan {
  std::string format;  ///< "docker-archive" or "oci-archive"
  std::string name;    ///< the image's name or tag ("" if it has none)
  std::vector<LayerRef> layers;
};

/// Picks the image of the archive (the one named `want`, or the only one) and its layers, with
/// every digest the format gives checked on the way (config, manifest) and the others left to
/// the caller (layer blobs, diff_ids). EINVAL with `*why` for an unknown format, several images
/// and no `want` (listing their names), a name not found, missing members, bad JSON, a digest
/// mismatch, or diff_ids that do not match the layers in number.
Result<ImagePlan> plan_image(const ArchiveIndex& index, const std::string& want, std::string* why);

/// Whether the image reference `have` (as an archive names it) is the one the user asked for
/// as `want`: equal once a "docker.io/library/", "docker.io/" or "localhost/" prefix is removed
/// and ":latest" is added to a name without a tag.
bool image_name_matches(const std::string& have, const std::string& want);

/// The hex of "sha256:<hex>", or "" for another form.
std::string sha256_of_digest(const std::string& digest);

}  // namespace unionfs
