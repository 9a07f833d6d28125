// A small JSON reader (RFC 8259) for image archives: docker's manifest.json, OCI's index.json,
// image manifests and configs. Parses into a tree; no writer (tools/ prints its own JSON).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace unionfs {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  /// Parses a whole document (nesting up to 128 deep). EINVAL with `*why` naming the byte
  /// offset and what was expected.
  static Result<Json> parse(std::string_view text, std::string* why = nullptr);

  [[nodiscard]] Type type() const { return type_; }
  [[nodiscard]] bool is_string() const { return type_ == Type::kString; }
  [[nodiscard]] bool is_array() const { return type_ == Type::kArray; }
  [[nodiscard]] bool is_object() const { return type_ == Type::kObject; }
  [[nodiscard]] bool is_number() const { return type_ == Type::kNumber; }

  /// The string value ("" for other types); strings are UTF-8 with escapes decoded.
  [[nodiscard]] const std::string& str() const { return text_; }
  [[nodiscard]] bool boolean() const { return bool_; }
  /// A number that is a non-negative integer (sizes): false for fractions, exponents, signs.
  [[nodiscard]] bool as_uint(uint64_t* out) const;
  /// Array items (empty for other types).
  [[nodiscard]] const std::vector<Json>& items() const { return items_; }
  /// Object members in document order (empty for other types).
  [[nodiscard]] const std::vector<std::pair<std::string, Json>>& members() const {
    return members_;
  }
  /// The member `key` of an object (the last one if repeated), or nullptr.
  [[nodiscard]] const Json* get(std::string_view key) const;
  /// get(key)'s string, or "" when absent or not a string.
  [[nodiscard]] std::string get_str(std::string_view key) const;

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool bool_ = false;
  std::string text_;  // string value, or the number as written
  std::vector<Json> items_;
  std::vector<std::pair<std::string, Json>> members_;
};

}  // namespace unionfs
