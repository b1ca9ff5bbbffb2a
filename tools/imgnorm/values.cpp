#include "values.hpp"

#include <cmath>
#include <optional>
#include <stdexcept>

#include "imgnorm/error.hpp"

namespace imgnorm::cli {

void parse_shard(const std::string& text, int& index, int& count) {
  auto slash = text.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument("");
    std::size_t a = 0, b = 0;
    index = std::stoi(text.substr(0, slash), &a);
    count = std::stoi(text.substr(slash + 1), &b);
    if (a != slash || b != text.size() - slash - 1 || count < 1 || index < 0 || index >= count)
      throw std::invalid_argument("");
  } catch (const std::logic_error&) {
    throw Error(ErrorCode::invalid_argument,
                "invalid --shard '" + text + "' (expected I/N with 0 <= I < N)");
  }
}

std::vector<double> parse_numbers(const std::string& text, const char* flag) {
  std::vector<double> v;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    std::string item =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    std::size_t used = 0;
    double d = 0;
    try {
      d = std::stod(item, &used);
    } catch (const std::logic_error&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || !std::isfinite(d))
      throw Error(ErrorCode::invalid_argument,
                  std::string("invalid ") + flag + " '" + text + "' (expected numbers a,b,c)");
    v.push_back(d);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return v;
}

Mode parse_mode_flag(const std::string& text) {
  // The presets are spelled as every other mode (imagenet, as the manifest, the summary and Python
  // spell them); "preset:NAME", the older spelling, is still accepted.
  if (text.rfind("preset:", 0) == 0) {
    const std::string s = text.substr(7);
    std::optional<Mode> m;
    try {
      m = parse_mode(s);
    } catch (const Error&) {
    }
    if (!m || !preset_channel_order(*m))
      throw Error(ErrorCode::invalid_argument,
                  "unknown preset '" + s + "' (expected imagenet|caffe|inception|clip)");
    return *m;
  }
  return parse_mode(text);
}

}  // namespace imgnorm::cli
