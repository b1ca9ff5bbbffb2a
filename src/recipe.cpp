#include "imgnorm/recipe.hpp"

#include <charconv>

#include "imgnorm/error.hpp"

namespace imgnorm {

const char* to_string(ChannelOrder v) noexcept {
  switch (v) {
    case ChannelOrder::rgb:
      return "rgb";
    case ChannelOrder::bgr:
      return "bgr";
    case ChannelOrder::gray:
      return "gray";
  }
  return "?";
}

const char* to_string(ResizeMode v) noexcept {
  switch (v) {
    case ResizeMode::stretch:
      return "stretch";
    case ResizeMode::crop:
      return "crop";
    case ResizeMode::pad:
      return "pad";
    case ResizeMode::none:
      return "none";
  }
  return "?";
}

const char* to_string(Interp v) noexcept {
  switch (v) {
    case Interp::linear:
      return "linear";
    case Interp::area:
      return "area";
    case Interp::nearest:
      return "nearest";
    case Interp::cubic:
      return "cubic";
    case Interp::lanczos:
      return "lanczos";
  }
  return "?";
}

namespace {
template <typename E, std::size_t N>
E parse_enum(const std::string& s, const E (&values)[N], const char* what) {
  std::string names;
  for (E v : values) {
    if (s == to_string(v)) return v;
    names += names.empty() ? "" : "|";
    names += to_string(v);
  }
  throw Error(ErrorCode::invalid_argument,
              std::string("invalid ") + what + " '" + s + "' (expected " + names + ")");
}

int parse_dim(const std::string& text, const std::string& whole) {
  int v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 1 || v > 65535)
    throw Error(ErrorCode::invalid_argument,
                "invalid size '" + whole + "' (expected N or WxH, 1 to 65535 pixels)");
  return v;
}
}  // namespace

ChannelOrder parse_channel_order(const std::string& s) {
  static constexpr ChannelOrder kAll[] = {ChannelOrder::rgb, ChannelOrder::bgr, ChannelOrder::gray};
  return parse_enum(s, kAll, "channel order");
}

ResizeMode parse_resize_mode(const std::string& s) {
  static constexpr ResizeMode kAll[] = {ResizeMode::stretch, ResizeMode::crop, ResizeMode::pad,
                                        ResizeMode::none};
  return parse_enum(s, kAll, "resize mode");
}

Interp parse_interp(const std::string& s) {
  static constexpr Interp kAll[] = {Interp::linear, Interp::area, Interp::nearest, Interp::cubic,
                                    Interp::lanczos};
  return parse_enum(s, kAll, "interpolation");
}

Size parse_size(const std::string& s) {
  auto x = s.find_first_of("xX");
  if (x == std::string::npos) {
    int n = parse_dim(s, s);
    return {n, n};
  }
  return {parse_dim(s.substr(0, x), s), parse_dim(s.substr(x + 1), s)};
}

std::vector<std::string> channel_names(ChannelOrder order) {
  switch (order) {
    case ChannelOrder::rgb:
      return {"R", "G", "B"};
    case ChannelOrder::bgr:
      return {"B", "G", "R"};
    case ChannelOrder::gray:
      return {"Y"};
  }
  return {};
}

}  // namespace imgnorm
