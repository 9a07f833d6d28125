// Import of docker-archive and OCI-layout tarballs built here: layers, whiteouts, the stack
// file; every digest checked (a mismatch writes nothing); several images and --image; gzip
// and zstd layers. Export: deterministic bytes, the printed digest, and export → re-import
// giving the same tree.
#include "core/image_import.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "core/layer_export.h"
#include "core/sha256.h"
#include "tar_fixture.h"

namespace unionfs {
namespace {

using test::Ent;

// Three layers: a base; one that deletes, adds and changes; one that replaces a directory.
std::vector<std::string> three_layers(const std::string& tmp) {
  std::vector<std::string> out;
  out.push_back(test::write_tar(
      tmp + "/l0.tar",
      {test::dir_ent("etc/"), test::file_ent("etc/passwd", "root\n"),
       test::file_ent("etc/gone", "g"), test::dir_ent("data/"), test::file_ent("data/old", "o")}));
  out.push_back(test::write_tar(
      tmp + "/l1.tar", {test::dir_ent("etc/"), test::file_ent("etc/.wh.gone", ""),
                        test::file_ent("etc/passwd", "root\nuser\n"), test::file_ent("new", "n")}));
  out.push_back(test::write_tar(tmp + "/l2.tar",
                                {test::dir_ent("data/"), test::file_ent("data/.wh..wh..opq", ""),
                                 test::file_ent("data/fresh", "f")}));
  return out;
}

std::string config_json(const std::vector<std::string>& uncompressed) {
  std::string ids;
  for (const auto& l : uncompressed) {
    if (!ids.empty()) ids += ",";
    ids += "\"sha256:" + Sha256::of(l) + "\"";
  }
  return R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[)" + ids +
         "]}}";
}

struct DockerImage {
  std::vector<std::string> layers;
  std::string tag;
  std::string config;  // "" = computed
};

// A docker-archive as `podman save` writes it: <diff_id>.tar layers, <digest>.json config.
void docker_archive(const std::string& path, const std::vector<DockerImage>& images) {
  std::vector<Ent> files;
  std::string manifest = "[";
  for (const DockerImage& img : images) {
    const std::string config = img.config.empty() ? config_json(img.layers) : img.config;
    const std::string cfg_name = Sha256::of(config) + ".json";
    files.push_back(test::file_ent(cfg_name, config));
    std::string layers;
    for (const auto& l : img.layers) {
      const std::string name = Sha256::of(l) + ".tar";
      files.push_back(test::file_ent(name, l));
      layers += (layers.empty() ? "\"" : ",\"") + name + "\"";
    }
    manifest += std::string(manifest.size() > 1 ? "," : "") + R"({"Config":")" + cfg_name +
                R"(","RepoTags":[")" + img.tag + R"("],"Layers":[)" + layers + "]}";
  }
  files.push_back(test::file_ent("manifest.json", manifest + "]"));
  test::write_tar(path, files);
}

std::string descriptor(const std::string& media, const std::string& blob) {
  return R"({"mediaType":")" + media + R"(","digest":"sha256:)" + Sha256::of(blob) +
         R"(","size":)" + std::to_string(blob.size()) + "}";
}

// An OCI layout tarball; `blobs[i]` is layer i as stored (maybe compressed).
void oci_archive(const std::string& path, const std::vector<std::string>& uncompressed,
                 const std::vector<std::string>& blobs, const std::string& ref) {
  std::vector<Ent> files = {test::file_ent("oci-layout", R"({"imageLayoutVersion":"1.0.0"})")};
  const std::string config = config_json(uncompressed);
  std::string layers;
  for (const auto& b : blobs) {
    if (!layers.empty()) layers += ",";
    layers += descriptor("application/vnd.oci.image.layer.v1.tar+gzip", b);
    files.push_back(test::file_ent("blobs/sha256/" + Sha256::of(b), b));
  }
  const std::string manifest =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":)" +
      descriptor("application/vnd.oci.image.config.v1+json", config) + R"(,"layers":[)" + layers +
      "]}";
  files.push_back(test::file_ent("blobs/sha256/" + Sha256::of(config), config));
  files.push_back(test::file_ent("blobs/sha256/" + Sha256::of(manifest), manifest));
  std::string d = descriptor("application/vnd.oci.image.manifest.v1+json", manifest);
  d.pop_back();
  d += R"(,"annotations":{"org.opencontainers.image.ref.name":")" + ref + "\"}}";
  files.push_back(test::file_ent("index.json", R"({"schemaVersion":2,"manifests":[)" + d + "]}"));
  test::write_tar(path, files);
}

struct Imported {
  int error = 0;
  std::string why;
  ImportResult res;
};

Imported run_import(const std::string& archive, const std::string& dir,
                    const std::string& image = "", WhiteoutMode mode = WhiteoutMode::kAuto) {
  Imported out;
  auto src = open_import(archive, image, &out.why);
  if (!src) {
    out.error = src.error();
    return out;
  }
  check_import_target(dir);
  ImportOptions opts{mode, test::is_root()};
  uint64_t seen = 0;
  auto r = import_layers(
      *src, dir, opts, [&](uint64_t n) { seen += n; }, &out.why);
  out.error = r.error();
  if (r) {
    out.res = *r;
    CHECK(seen == src->total_bytes);
  }
  return out;
}

// The names in a directory, sorted.
std::string listing(const std::string& dir) {
  return test::shell("ls -A " + dir + " | LC_ALL=C sort | tr '\\n' ' '");
}

TEST_CASE("import: a docker-archive into one directory per layer and a stack", "[import]") {
  test::LayerBuilder b(0);
  const auto layers = three_layers(b.root());
  docker_archive(b.root() + "/img.tar", {{layers, "localhost/test:latest", ""}});
  const std::string dir = b.root() + "/imported";
  Imported x = run_import(b.root() + "/img.tar", dir);
  INFO(x.why);
  REQUIRE(x.error == 0);
  REQUIRE(x.res.layers.size() == 3);
  std::string want_stack;
  for (size_t i = 0; i < 3; ++i) {
    const std::string name = "00" + std::to_string(i) + "-" + Sha256::of(layers[i]).substr(0, 12);
    CHECK(x.res.layers[i].dir == dir + "/" + name);
    want_stack += (i ? ":" : "") + dir + "/" + name;
  }
  CHECK(x.res.stack == want_stack);
  CHECK(test::read_file(dir + "/stack") == want_stack + "\n");
  CHECK(test::read_file(x.res.layers[1].dir + "/etc/passwd") == "root\nuser\n");
  if (test::is_root()) {
    CHECK(is_kernel_whiteout(test::lstat_of(x.res.layers[1].dir + "/etc/gone")));
    CHECK(test::get_xattr(x.res.layers[2].dir + "/data", "trusted.overlay.opaque") == "y");
  } else {
    CHECK(test::exists_no_follow(x.res.layers[1].dir + "/etc/.wh.gone"));
  }
  // Nothing left beside it but the inputs.
  CHECK(listing(b.root()) == "img.tar imported l0.tar l1.tar l2.tar ");
}

TEST_CASE("import: --format oci keeps the .wh. files", "[import]") {
  test::LayerBuilder b(0);
  const auto layers = three_layers(b.root());
  docker_archive(b.root() + "/img.tar", {{layers, "x:1", ""}});
  Imported x = run_import(b.root() + "/img.tar", b.root() + "/d", "", WhiteoutMode::kOci);
  REQUIRE(x.error == 0);
  CHECK(test::exists_no_follow(x.res.layers[1].dir + "/etc/.wh.gone"));
  CHECK(test::exists_no_follow(x.res.layers[2].dir + "/data/.wh..wh..opq"));
}

TEST_CASE("import: an OCI layout with gzip and zstd layers", "[import]") {
  test::LayerBuilder b(0);
  const auto layers = three_layers(b.root());
  std::vector<std::string> blobs = layers;
  blobs[1] = test::shell("gzip -n -c " + b.root() + "/l1.tar");
  const bool zstd = test::shell("command -v zstd || true").size() > 0;
  if (zstd) blobs[2] = test::shell("zstd -q -c " + b.root() + "/l2.tar");
  oci_archive(b.root() + "/oci.tar", layers, blobs, "localhost/ocitest:v1");
  Imported x = run_import(b.root() + "/oci.tar", b.root() + "/d", "ocitest:v1");
  INFO(x.why);
  REQUIRE(x.error == 0);
  REQUIRE(x.res.layers.size() == 3);
  CHECK(x.res.layers[1].diff_id == Sha256::of(layers[1]));
  CHECK(test::read_file(x.res.layers[1].dir + "/new") == "n");
  CHECK(test::read_file(x.res.layers[2].dir + "/data/fresh") == "f");
}

// A refused import leaves nothing: no DIR, no temporary directory beside it.
void expect_nothing_written(const std::string& root, const Imported& x, int err,
                            const std::string& words) {
  INFO(x.why);
  CHECK(x.error == err);
  CHECK(x.why.find(words) != std::string::npos);
  CHECK_FALSE(test::exists_no_follow(root + "/d"));
  CHECK(test::shell("ls -A " + root + " | grep -c import-tmp || true") == "0\n");
}

TEST_CASE("import: a layer that does not match its diff_id is refused", "[import][bad]") {
  test::LayerBuilder b(0);
  auto layers = three_layers(b.root());
  std::string config = config_json(layers);
  const std::string real = Sha256::of(layers[2]);
  config.replace(config.find(real), 64, std::string(64, '0'));
  docker_archive(b.root() + "/img.tar", {{layers, "t:1", config}});
  expect_nothing_written(b.root(), run_import(b.root() + "/img.tar", b.root() + "/d"), EINVAL,
                         "diff_id mismatch");
}

TEST_CASE("import: a blob that does not match its digest is refused", "[import][bad]") {
  test::LayerBuilder b(0);
  const auto layers = three_layers(b.root());
  oci_archive(b.root() + "/oci.tar", layers, layers, "r");
  // Change one byte of layer 1's blob in place: its name and descriptor still say the old one.
  std::string bytes = test::read_file(b.root() + "/oci.tar");
  const size_t at = bytes.find("root\nuser\n");
  REQUIRE(at != std::string::npos);
  bytes[at] = 'R';
  test::put_file(b.root() + "/oci.tar", bytes);
  expect_nothing_written(b.root(), run_import(b.root() + "/oci.tar", b.root() + "/d"), EINVAL,
                         "digest mismatch");
  // A config whose digest is wrong is refused before anything is written.
  bytes[at] = 'r';
  const size_t cfg = bytes.find("\"architecture\":\"amd64\"");
  bytes[cfg + 2] = 'A';
  test::put_file(b.root() + "/oci.tar", bytes);
  expect_nothing_written(b.root(), run_import(b.root() + "/oci.tar", b.root() + "/d"), EINVAL,
                         "digest mismatch");
}

TEST_CASE("import: bad layers and bad archives write nothing", "[import][bad]") {
  test::LayerBuilder b(0);
  auto layers = three_layers(b.root());
  layers[1] = test::write_tar(b.root() + "/evil.tar", {test::file_ent("../escape", "x")});
  docker_archive(b.root() + "/img.tar", {{layers, "t:1", ""}});
  expect_nothing_written(b.root(), run_import(b.root() + "/img.tar", b.root() + "/d"), EINVAL,
                         "'..'");
  CHECK_FALSE(test::exists_no_follow(b.root() + "/escape"));

  layers = three_layers(b.root());
  layers[2] = test::write_tar(b.root() + "/evil.tar",
                              {test::file_ent("x", ""), test::file_ent(".wh.x", "")});
  docker_archive(b.root() + "/img.tar", {{layers, "t:1", ""}});
  expect_nothing_written(b.root(), run_import(b.root() + "/img.tar", b.root() + "/d"), EINVAL,
                         "both whites out");

  docker_archive(b.root() + "/img.tar", {{three_layers(b.root()), "t:1", ""}});
  const std::string full = test::read_file(b.root() + "/img.tar");
  test::put_file(b.root() + "/img.tar", full.substr(0, full.size() / 2));
  expect_nothing_written(b.root(), run_import(b.root() + "/img.tar", b.root() + "/d"), EBADMSG,
                         "truncated");

  test::put_file(b.root() + "/img.tar", test::shell("gzip -n -c " + b.root() + "/l0.tar"));
  expect_nothing_written(b.root(), run_import(b.root() + "/img.tar", b.root() + "/d"),
                         EPROTONOSUPPORT, "gzip-compressed");
  test::write_tar(b.root() + "/img.tar", {test::file_ent("hello", "x")});
  expect_nothing_written(b.root(), run_import(b.root() + "/img.tar", b.root() + "/d"), EINVAL,
                         "not an image archive");
}

TEST_CASE("import: a corrupt gzip layer is refused", "[import][bad]") {
  test::LayerBuilder b(0);
  const auto layers = three_layers(b.root());
  std::vector<std::string> blobs = layers;
  blobs[0] = test::shell("gzip -n -c " + b.root() + "/l0.tar");
  blobs[0].resize(blobs[0].size() - 12);  // cut the stream short: its digest is of this
  oci_archive(b.root() + "/oci.tar", layers, blobs, "r");
  Imported x = run_import(b.root() + "/oci.tar", b.root() + "/d");
  CHECK(x.error != 0);
  CHECK((x.why.find("gzip") != std::string::npos || x.why.find("truncated") != std::string::npos));
  expect_nothing_written(b.root(), x, x.error, "layer 0");
}

TEST_CASE("import: a zstd layer without zstd installed is a clear error", "[import][bad]") {
  test::LayerBuilder b(0);
  const auto layers = three_layers(b.root());
  std::vector<std::string> blobs = layers;
  blobs[0] = std::string("\x28\xb5\x2f\xfd") + "not really zstd";
  oci_archive(b.root() + "/oci.tar", layers, blobs, "r");
  const std::string path = ::getenv("PATH") ? ::getenv("PATH") : "";
  ::setenv("PATH", (b.root() + "/no-such-bin").c_str(), 1);
  Imported x = run_import(b.root() + "/oci.tar", b.root() + "/d");
  ::setenv("PATH", path.c_str(), 1);
  expect_nothing_written(b.root(), x, ENOENT, "cannot run `zstd`");
  CHECK(x.why.find("is it installed?") != std::string::npos);
}

TEST_CASE("import: several images need --image", "[import]") {
  test::LayerBuilder b(0);
  const auto layers = three_layers(b.root());
  docker_archive(b.root() + "/img.tar", {{{layers[0]}, "docker.io/library/one:latest", ""},
                                         {layers, "localhost/two:latest", ""}});
  expect_nothing_written(b.root(), run_import(b.root() + "/img.tar", b.root() + "/d"), EINVAL,
                         "2 images (docker.io/library/one:latest, localhost/two:latest): "
                         "choose one with --image NAME");
  expect_nothing_written(b.root(), run_import(b.root() + "/img.tar", b.root() + "/d", "three"),
                         EINVAL, "no image 'three'");
  Imported x = run_import(b.root() + "/img.tar", b.root() + "/d", "two");
  REQUIRE(x.error == 0);
  CHECK(x.res.layers.size() == 3);
  Imported y = run_import(b.root() + "/img.tar", b.root() + "/e", "one:latest");
  REQUIRE(y.error == 0);
  CHECK(y.res.layers.size() == 1);
}

TEST_CASE("import: image names match as docker and podman spell them", "[import]") {
  CHECK(image_name_matches("localhost/foo:latest", "foo"));
  CHECK(image_name_matches("docker.io/library/alpine:3.18", "alpine:3.18"));
  CHECK(image_name_matches("quay.io/a/b:1", "quay.io/a/b:1"));
  CHECK_FALSE(image_name_matches("localhost/foo:1", "foo"));
  CHECK_FALSE(image_name_matches("localhost/foo:latest", "bar"));
}

TEST_CASE("import: the target must be new or empty, and without ':'", "[import]") {
  test::LayerBuilder b(0);
  REQUIRE(::mkdir((b.root() + "/full").c_str(), 0755) == 0);
  test::put_file(b.root() + "/full/x", "");
  CHECK_THROWS_WITH(check_import_target(b.root() + "/full"),
                    Catch::Contains("exists and is not empty"));
  CHECK_THROWS_WITH(check_import_target(b.root() + "/a:b"), Catch::Contains("':'"));
  CHECK_THROWS_WITH(check_import_target(b.root() + "/missing/d"), Catch::Contains("No such file"));
  REQUIRE(::mkdir((b.root() + "/empty").c_str(), 0755) == 0);
  CHECK_NOTHROW(check_import_target(b.root() + "/empty"));
}

}  // namespace
}  // namespace unionfs
