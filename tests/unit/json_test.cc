// The JSON reader: the shapes image archives use, escapes and UTF-8, and strict refusal of
// malformed documents with the offset named.
#include "core/json.h"

#include <catch2/catch.hpp>
#include <string>

namespace unionfs {
namespace {

TEST_CASE("json: docker manifest.json shape", "[json]") {
  auto j = Json::parse(R"([{"Config":"abc.json","RepoTags":["localhost/x:latest"],
                            "Layers":["a/layer.tar","b.tar"]}])");
  REQUIRE(j.ok());
  REQUIRE(j->is_array());
  REQUIRE(j->items().size() == 1);
  const Json& m = j->items()[0];
  CHECK(m.get_str("Config") == "abc.json");
  REQUIRE(m.get("Layers")->items().size() == 2);
  CHECK(m.get("Layers")->items()[1].str() == "b.tar");
  CHECK(m.get("RepoTags")->items()[0].str() == "localhost/x:latest");
  CHECK(m.get("missing") == nullptr);
  CHECK(m.get_str("Layers").empty());
}

TEST_CASE("json: scalars, numbers and the last of repeated keys", "[json]") {
  auto j = Json::parse(R"( {"a": true, "b": false, "c": null, "n": 1234, "f": -1.5e3,
                            "big": 18446744073709551615, "a": 7} )");
  REQUIRE(j.ok());
  uint64_t v = 0;
  CHECK(j->get("a")->as_uint(&v));
  CHECK(v == 7);
  CHECK(j->get("b")->type() == Json::Type::kBool);
  CHECK_FALSE(j->get("b")->boolean());
  CHECK(j->get("c")->type() == Json::Type::kNull);
  CHECK(j->get("n")->as_uint(&v));
  CHECK(v == 1234);
  CHECK_FALSE(j->get("f")->as_uint(&v));
  CHECK(j->get("f")->str() == "-1.5e3");
  CHECK(j->get("big")->as_uint(&v));
}

TEST_CASE("json: string escapes and UTF-8", "[json]") {
  auto j = Json::parse(R"(["a\"b\\c\/d\n\t", "\u00e9\u20ac", "\ud83d\ude00", "é€"])");
  REQUIRE(j.ok());
  CHECK(j->items()[0].str() == "a\"b\\c/d\n\t");
  CHECK(j->items()[1].str() == "\xc3\xa9\xe2\x82\xac");
  CHECK(j->items()[2].str() == "\xf0\x9f\x98\x80");
  CHECK(j->items()[3].str() == "\xc3\xa9\xe2\x82\xac");
}

TEST_CASE("json: malformed documents are refused with a position", "[json]") {
  for (const char* bad : {"", "[1,]", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "\"abc", "[\"\\x\"]",
                          "[\"\\ud800\"]", "[\"\\udc00\"]", "tru", "01", "1.", "-", "[1]]", "{a:1}",
                          "[\"\x01\"]", "[\"\xff\"]", "[\"\xc0\xaf\"]", "nul"}) {
    std::string why;
    auto j = Json::parse(bad, &why);
    INFO(bad);
    CHECK_FALSE(j.ok());
    CHECK(j.error() == EINVAL);
    CHECK(why.find("at byte") != std::string::npos);
  }
  std::string deep(200, '[');
  deep += std::string(200, ']');
  CHECK_FALSE(Json::parse(deep).ok());
  std::string ok_deep(100, '[');
  ok_deep += std::string(100, ']');
  CHECK(Json::parse(ok_deep).ok());
}

}  // namespace
}  // namespace unionfs
