// JSON text for stats.json and manifest.json: strings of arbitrary bytes written losslessly
// (invalid UTF-8 as `\udcXX`), and a linear-time parser that reads them back. See
// json_internal.hpp.

#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "imgnorm/error.hpp"
#include "json_internal.hpp"

namespace imgnorm::detail {

namespace {

using ojson = nlohmann::ordered_json;

constexpr char kHex[] = "0123456789abcdef";

bool continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The code unit of the 4 hex digits at text[i..i+4), or -1.
long hex4(const std::string& text, std::size_t i) {
  if (i + 4 > text.size()) return -1;
  long v = 0;
  for (std::size_t k = i; k < i + 4; ++k) {
    const int d = hex_digit(text[k]);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

// nlohmann's lexer refuses lone surrogates, so before parsing, each lone `\udcXX` (XX >= 80) is
// rewritten as the two escapes `\u0000\u00XX`, and each `\u0000` as `\u0000\u0000`. A NUL in a
// parsed string therefore always starts one of these pairs, and restore_bytes undoes them. Outside
// strings JSON has no backslash, so no string context is needed: an escape is self-delimiting, and
// `\\` is skipped as a whole. Returns false (and leaves `out` alone) when nothing needs rewriting.
bool protect_lone_surrogates(const std::string& text, std::string& out) {
  std::size_t copied = 0;
  bool changed = false;
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] != '\\') continue;
    if (text[i + 1] != 'u') {
      ++i;  // `\\`, `\"`, ...: the next character is taken
      continue;
    }
    const long unit = hex4(text, i + 2);
    if (unit < 0) continue;  // malformed: the parser reports it
    if (unit >= 0xD800 && unit <= 0xDBFF) {
      // A high surrogate: with a low one after it, a pair to keep as it is.
      if (i + 12 <= text.size() && text[i + 6] == '\\' && text[i + 7] == 'u') {
        const long low = hex4(text, i + 8);
        if (low >= 0xDC00 && low <= 0xDFFF) i += 6;
      }
      i += 5;
      continue;
    }
    if (unit != 0 && !(unit >= 0xDC80 && unit <= 0xDCFF)) {
      i += 5;
      continue;
    }
    if (!changed) out.reserve(text.size() + 64);
    changed = true;
    out.append(text, copied, i - copied);
    out += "\\u0000\\u00";
    out += unit == 0 ? '0' : kHex[(unit >> 4) & 15];
    out += unit == 0 ? '0' : kHex[unit & 15];
    copied = i + 6;
    i += 5;
  }
  if (changed) out.append(text, copied, std::string::npos);
  return changed;
}

// Undoes protect_lone_surrogates in one parsed string: NUL NUL is a NUL, NUL + U+0080..U+00FF
// (C2/C3 xx in UTF-8) is that byte.
std::string restore_bytes(std::string s) {
  if (s.find('\0') == std::string::npos) return s;
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\0') {
      out += s[i];
    } else if (i + 1 < s.size() && s[i + 1] == '\0') {
      out += '\0';
      ++i;
    } else if (i + 2 < s.size() && (static_cast<unsigned char>(s[i + 1]) & 0xFE) == 0xC2) {
      out += static_cast<char>(((static_cast<unsigned char>(s[i + 1]) & 3) << 6) |
                               (static_cast<unsigned char>(s[i + 2]) & 0x3F));
      i += 2;
    } else {
      out += '\0';  // not reached: every NUL comes from protect_lone_surrogates
    }
  }
  return out;
}

// Builds the ordered_json tree from nlohmann's SAX events, appending each key to its object
// without the linear search ordered_map's insertion does (a hash set per open object finds keys
// that appear twice instead).
class DomBuilder {
 public:
  explicit DomBuilder(ojson& root) : root_(root) {}

  bool null() { return add(nullptr) != nullptr; }
  bool boolean(bool v) { return add(v) != nullptr; }
  bool number_integer(ojson::number_integer_t v) { return add(v) != nullptr; }
  bool number_unsigned(ojson::number_unsigned_t v) { return add(v) != nullptr; }
  bool number_float(ojson::number_float_t v, const std::string&) { return add(v) != nullptr; }
  bool string(std::string& v) { return add(restore_bytes(std::move(v))) != nullptr; }
  bool binary(ojson::binary_t& v) { return add(ojson::binary(std::move(v))) != nullptr; }
  bool start_object(std::size_t) {
    stack_.push_back(add(ojson::object()));
    keys_.emplace_back();
    return true;
  }
  bool key(std::string& k) {
    std::string name = restore_bytes(std::move(k));
    if (!keys_.back().insert(name).second) {
      error_ = "key ";
      append_json_string(error_, name);
      error_ += " appears twice in one object";
      return false;
    }
    auto& items =
        static_cast<ojson::object_t::Container&>(stack_.back()->get_ref<ojson::object_t&>());
    items.emplace_back(std::move(name), nullptr);
    slot_ = &items.back().second;
    return true;
  }
  bool end_object() {
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    stack_.push_back(add(ojson::array()));
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  template <typename Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& e) {
    throw e;
  }

  const std::string& error() const { return error_; }

 private:
  ojson* add(ojson v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    ojson& top = *stack_.back();
    if (top.is_array()) {
      auto& items = top.get_ref<ojson::array_t&>();
      items.push_back(std::move(v));
      return &items.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }

  ojson& root_;
  std::vector<ojson*> stack_;  // open arrays and objects; appending never moves an open one
  std::vector<std::unordered_set<std::string>> keys_;  // per open object
  ojson* slot_ = nullptr;                              // the value of the last key
  std::string error_;
};

}  // namespace

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto at = [&](std::size_t k) -> unsigned { return static_cast<unsigned char>(s[k]); };
  const unsigned c = at(i);
  if (c < 0x80) return 1;
  std::size_t n;
  unsigned lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlong forms
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // at most U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size() || at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (std::size_t k = i + 2; k < i + n; ++k)
    if (!continuation(static_cast<unsigned char>(at(k)))) return 0;
  return n;
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8_sequence_length(s, i);
      if (n == 0) {
        out += "\\udc";
        out += kHex[c >> 4];
        out += kHex[c & 15];
        i += 1;
      } else {
        out.append(s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

void append_json(std::string& out, const ojson& j) {
  if (j.is_string()) {
    append_json_string(out, j.get_ref<const std::string&>());
  } else if (j.is_array()) {
    out += '[';
    bool first = true;
    for (const ojson& e : j) {
      if (!first) out += ',';
      first = false;
      append_json(out, e);
    }
    out += ']';
  } else if (j.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!first) out += ',';
      first = false;
      append_json_string(out, it.key());
      out += ':';
      append_json(out, it.value());
    }
    out += '}';
  } else {
    out += j.dump();
  }
}

std::string dump_json(const ojson& j) {
  std::string out;
  append_json(out, j);
  return out;
}

ojson parse_json(const std::string& text) {
  std::string rewritten;
  const bool changed = protect_lone_surrogates(text, rewritten);
  ojson root;
  DomBuilder builder(root);
  try {
    if (!ojson::sax_parse(changed ? rewritten : text, &builder))
      throw Error(ErrorCode::format, "not valid JSON: " + builder.error());
  } catch (const ojson::exception& e) {
    // parse_error, or out_of_range for a number too large for a double ("1e999").
    // Drop nlohmann's "[json.exception.parse_error.101] " tag; keep the position and reason.
    std::string what = e.what();
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    throw Error(ErrorCode::format, "not valid JSON: " + what);
  }
  return root;
}

}  // namespace imgnorm::detail
