// Recursive-descent JSON parser: strict RFC 8259 (no comments, no trailing commas), strings
// validated as UTF-8 with \u escapes and surrogate pairs decoded.
#include "core/json.h"

#include <cerrno>
#include <cstdint>

namespace unionfs {

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}

  bool document(Json& out) {
    if (!value(out, 0)) return false;
    ws();
    return pos_ == s_.size() || fail("end of document");
  }
  std::string why() const { return why_; }

 private:
  static constexpr int kMaxDepth = 128;

  bool fail(const char* expected) {
    if (why_.empty()) {
      why_ = "JSON: expected " + std::string(expected) + " at byte " + std::to_string(pos_);
    }
    return false;
  }
  void ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return fail("a value");
    pos_ += word.size();
    return true;
  }

  bool value(Json& out, int depth) {
    ws();
    if (depth > kMaxDepth) return fail("less nesting");
    if (pos_ >= s_.size()) return fail("a value");
    switch (s_[pos_]) {
      case '{':
        return object(out, depth);
      case '[':
        return array(out, depth);
      case '"':
        out.type_ = Json::Type::kString;
        return string(out.text_);
      case 't':
        out.type_ = Json::Type::kBool;
        out.bool_ = true;
        return literal("true");
      case 'f':
        out.type_ = Json::Type::kBool;
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number(out);
    }
  }

  bool object(Json& out, int depth) {
    out.type_ = Json::Type::kObject;
    ++pos_;
    ws();
    if (pos_ < s_.size() && s_[pos_] == '}') return ++pos_, true;
    for (;;) {
      ws();
      std::string key;
      if (pos_ >= s_.size() || s_[pos_] != '"' || !string(key)) return fail("a member name");
      ws();
      if (pos_ >= s_.size() || s_[pos_++] != ':') return fail("':'");
      out.members_.emplace_back(std::move(key), Json());
      if (!value(out.members_.back().second, depth + 1)) return false;
      ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') return ++pos_, true;
      return fail("',' or '}'");
    }
  }

  bool array(Json& out, int depth) {
    out.type_ = Json::Type::kArray;
    ++pos_;
    ws();
    if (pos_ < s_.size() && s_[pos_] == ']') return ++pos_, true;
    for (;;) {
      out.items_.emplace_back();
      if (!value(out.items_.back(), depth + 1)) return false;
      ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') return ++pos_, true;
      return fail("',' or ']'");
    }
  }

  bool digits() {
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }

  bool number(Json& out) {
    const size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return fail("a value");
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digits()) return fail("digits after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digits()) return fail("digits in the exponent");
    }
    out.type_ = Json::Type::kNumber;
    out.text_ = std::string(s_.substr(start, pos_ - start));
    return true;
  }

  bool hex4(uint32_t& cp) {
    if (pos_ + 4 > s_.size()) return fail("4 hex digits");
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      const int v = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (v < 0) return fail("4 hex digits");
      cp = cp * 16 + static_cast<uint32_t>(v);
    }
    return true;
  }

  static void utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  bool escape(std::string& out) {
    if (pos_ >= s_.size()) return fail("an escape");
    const char c = s_[pos_++];
    switch (c) {
      case '"':
      case '\\':
      case '/':
        out += c;
        return true;
      case 'b':
        out += '\b';
        return true;
      case 'f':
        out += '\f';
        return true;
      case 'n':
        out += '\n';
        return true;
      case 'r':
        out += '\r';
        return true;
      case 't':
        out += '\t';
        return true;
      case 'u':
        break;
      default:
        return fail("a valid escape");
    }
    uint32_t cp = 0;
    if (!hex4(cp)) return false;
    if (cp >= 0xdc00 && cp <= 0xdfff) return fail("a high surrogate first");
    if (cp >= 0xd800 && cp <= 0xdbff) {
      uint32_t lo = 0;
      if (s_.substr(pos_, 2) != "\\u") return fail("a low surrogate");
      pos_ += 2;
      if (!hex4(lo)) return false;
      if (lo < 0xdc00 || lo > 0xdfff) return fail("a low surrogate");
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    utf8(out, cp);
    return true;
  }

  // One UTF-8 sequence of raw text (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
  bool raw_utf8(std::string& out) {
    const auto c = static_cast<unsigned char>(s_[pos_]);
    const size_t len = c < 0x80                ? 1
                       : c >= 0xc2 && c < 0xe0 ? 2
                       : c >= 0xe0 && c < 0xf0 ? 3
                       : c >= 0xf0 && c < 0xf5 ? 4
                                               : 0;
    if (len == 0 || pos_ + len > s_.size()) return fail("valid UTF-8");
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s_[pos_ + k]);
      if ((b & 0xc0) != 0x80) return fail("valid UTF-8");
      cp = (cp << 6) | (b & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return fail("valid UTF-8");
    out.append(s_.substr(pos_, len));
    pos_ += len;
    return true;
  }

  bool string(std::string& out) {
    ++pos_;  // the opening quote
    for (;;) {
      if (pos_ >= s_.size()) return fail("'\"'");
      const char c = s_[pos_];
      if (c == '"') return ++pos_, true;
      if (static_cast<unsigned char>(c) < 0x20) return fail("no control character in a string");
      if (c == '\\') {
        ++pos_;
        if (!escape(out)) return false;
      } else if (!raw_utf8(out)) {
        return false;
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string why_;
};

Result<Json> Json::parse(std::string_view text, std::string* why) {
  JsonParser p(text);
  Json out;
  if (!p.document(out)) {
    if (why) *why = p.why();
    return Errno{EINVAL};
  }
  return out;
}

bool Json::as_uint(uint64_t* out) const {
  if (type_ != Type::kNumber || text_.empty()) return false;
  uint64_t v = 0;
  for (char c : text_) {
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;  // overflow
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

const Json* Json::get(std::string_view key) const {
  const Json* found = nullptr;
  for (const auto& [k, v] : members_) {
    if (k == key) found = &v;
  }
  return found;
}

std::string Json::get_str(std::string_view key) const {
  const Json* v = get(key);
  return v && v->is_string() ? v->str() : std::string();
}

}  // namespace unionfs
