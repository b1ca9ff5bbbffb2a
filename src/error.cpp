#include "imgnorm/error.hpp"

#include "json_internal.hpp"

namespace imgnorm {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::io:
      return "io";
    case ErrorCode::unsupported:
      return "unsupported";
    case ErrorCode::corrupt:
      return "corrupt";
    case ErrorCode::too_large:
      return "too_large";
    case ErrorCode::format:
      return "format";
    case ErrorCode::empty:
      return "empty";
    case ErrorCode::interrupted:
      return "interrupted";
    case ErrorCode::out_of_memory:
      return "out_of_memory";
  }
  return "unknown";
}

Error with_path(const Error& e, const std::string& path) {
  std::string msg = e.what();
  if (msg.rfind(path + ": ", 0) == 0) return e;
  return Error(e.code(), path + ": " + msg);
}

std::string printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t n = detail::utf8_sequence_length(text, i);
    if (n == 0 || c < 0x20 || c == 0x7F) {
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c == '\r') {
        out += "\\r";
      } else {
        out += "\\x";
        out += kHex[c >> 4];
        out += kHex[c & 15];
      }
      ++i;
    } else if (n == 2 && c == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) {
      const auto u = static_cast<unsigned char>(text[i + 1]);  // C1 control U+0080..U+009F
      out += "\\u00";
      out += kHex[u >> 4];
      out += kHex[u & 15];
      i += 2;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace imgnorm
