#include "imgnorm/recipe.hpp"

#include <charconv>

#include "enum_names.hpp"
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
  return detail::parse_enum(s, kAll, "channel order");
}

ResizeMode parse_resize_mode(const std::string& s) {
  static constexpr ResizeMode kAll[] = {ResizeMode::stretch, ResizeMode::crop, ResizeMode::pad,
                                        ResizeMode::none};
  return detail::parse_enum(s, kAll, "resize mode");
}

Interp parse_interp(const std::string& s) {
  static constexpr Interp kAll[] = {Interp::linear, Interp::area, Interp::nearest, Interp::cubic,
                                    Interp::lanczos};
  return detail::parse_enum(s, kAll, "interpolation");
}

Size parse_size(const std::string& s) {
  auto x = s.find_first_of("xX");
  if (x == std::string::npos) {
    int n = parse_dim(s, s);
    return {n, n};
  }
  return {parse_dim(s.substr(0, x), s), parse_dim(s.substr(x + 1), s)};
}

Alpha parse_alpha(const std::string& s) {
  Alpha a;
  if (s == "drop") return a;
  a.composite = true;
  if (s == "white") {
    a.background = {255, 255, 255};
    return a;
  }
  if (s == "black") return a;
  const char* p = s.data();
  const char* end = s.data() + s.size();
  for (int c = 0; c < 3; ++c) {
    unsigned v = 256;
    auto r = std::from_chars(p, end, v);
    p = r.ptr;
    const bool separator_ok = c < 2 ? (p != end && *p == ',') : p == end;
    if (r.ec != std::errc() || v > 255 || !separator_ok)
      throw Error(ErrorCode::invalid_argument,
                  "invalid alpha '" + s + "' (expected drop|white|black|R,G,B with 0-255)");
    a.background[c] = static_cast<std::uint8_t>(v);
    if (c < 2) ++p;
  }
  return a;
}

std::string to_string(const Alpha& a) {
  if (!a.composite) return "drop";
  const auto& b = a.background;
  if (b[0] == 255 && b[1] == 255 && b[2] == 255) return "white";
  if (b[0] == 0 && b[1] == 0 && b[2] == 0) return "black";
  return std::to_string(b[0]) + "," + std::to_string(b[1]) + "," + std::to_string(b[2]);
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

Recipe RecipeOverrides::apply(Recipe r) const {
  if (channels) r.channels = *channels;
  // --resize none without --size: the images' own size (found by with_image_size), not the
  // base's 224x224 that no image of another size could match.
  if (resize && *resize == ResizeMode::none && !size && r.resize != ResizeMode::none)
    r.size = {0, 0};
  if (size) r.size = *size;
  if (resize) r.resize = *resize;
  if (interp) r.interp = *interp;
  if (pad_value) r.pad_value = *pad_value;
  if (exact_decode) r.exact_decode = *exact_decode;
  if (max_pixels) r.max_pixels = *max_pixels;
  if (alpha) r.alpha = *alpha;
  return r;
}

std::string recipe_differences(const Recipe& a, const Recipe& b) {
  std::string d;
  auto add = [&](const std::string& what) { d += (d.empty() ? "" : ", ") + what; };
  auto bools = [](bool v) { return v ? "true" : "false"; };
  auto size = [](Size s) {
    return s.width == 0 ? std::string("the images' own")
                        : std::to_string(s.width) + "x" + std::to_string(s.height);
  };
  if (!(a.size == b.size)) add("size " + size(b.size) + " vs " + size(a.size));
  if (a.resize != b.resize)
    add(std::string("resize ") + to_string(b.resize) + " vs " + to_string(a.resize));
  if (a.interp != b.interp)
    add(std::string("interp ") + to_string(b.interp) + " vs " + to_string(a.interp));
  if (a.pad_value != b.pad_value) add("pad value");
  if (a.exact_decode != b.exact_decode)
    add(std::string("exact_decode ") + bools(b.exact_decode) + " vs " + bools(a.exact_decode));
  if (a.max_pixels != b.max_pixels) add("max pixels");
  if (a.alpha != b.alpha) add("alpha " + to_string(b.alpha) + " vs " + to_string(a.alpha));
  return d;
}

}  // namespace imgnorm
