// Alpha compositing (--alpha): the recipe field, its JSON, and the decoder's arithmetic on PNGs
// made here. The pixels against cv2 are in tests/ref/test_alpha.py.

#include <gtest/gtest.h>
#include <spng.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "imgnorm/decode.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/manifest.hpp"
#include "imgnorm/recipe.hpp"
#include "imgnorm/stats.hpp"

using namespace imgnorm;

namespace {

/// An RGBA PNG (8 or 16 bits, samples given in host order) with an optional eXIf orientation.
std::vector<std::uint8_t> rgba_png(int w, int h, int depth, const std::vector<std::uint16_t>& s,
                                   int orientation = 1) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = static_cast<std::uint32_t>(w);
  ihdr.height = static_cast<std::uint32_t>(h);
  ihdr.bit_depth = static_cast<std::uint8_t>(depth);
  ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR_ALPHA;
  EXPECT_EQ(spng_set_ihdr(ctx, &ihdr), 0);
  // Little-endian TIFF, one IFD entry: 0x0112 SHORT 1 = orientation.
  std::uint8_t tiff[] = {'I',
                         'I',
                         42,
                         0,
                         8,
                         0,
                         0,
                         0,
                         1,
                         0,
                         0x12,
                         0x01,
                         3,
                         0,
                         1,
                         0,
                         0,
                         0,
                         static_cast<std::uint8_t>(orientation),
                         0,
                         0,
                         0,
                         0,
                         0,
                         0,
                         0,
                         0,
                         0};
  if (orientation != 1) {
    spng_exif exif{sizeof tiff, reinterpret_cast<char*>(tiff)};
    EXPECT_EQ(spng_set_exif(ctx, &exif), 0);
  }
  std::vector<std::uint8_t> px;
  for (std::uint16_t v : s) {
    if (depth == 16) {
      px.push_back(static_cast<std::uint8_t>(v & 0xFF));  // SPNG_FMT_PNG is host order
      px.push_back(static_cast<std::uint8_t>(v >> 8));
    } else {
      px.push_back(static_cast<std::uint8_t>(v));
    }
  }
  EXPECT_EQ(spng_encode_image(ctx, px.data(), px.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
  std::size_t len = 0;
  int err = 0;
  auto* buf = static_cast<std::uint8_t*>(spng_get_png_buffer(ctx, &len, &err));
  std::vector<std::uint8_t> out(buf, buf + len);
  std::free(buf);
  spng_ctx_free(ctx);
  return out;
}

Image decode(const std::vector<std::uint8_t>& png, const std::string& alpha,
             ChannelOrder order = ChannelOrder::rgb, bool orient = true) {
  DecodeOptions o;
  o.alpha = parse_alpha(alpha);
  o.channels = order;
  o.apply_orientation = orient;
  Decoder d;
  Image img;
  d.decode(png.data(), png.size(), o, img);
  return img;
}

}  // namespace

TEST(alpha, parse_and_canonical_names) {
  EXPECT_FALSE(parse_alpha("drop").composite);
  EXPECT_EQ(to_string(parse_alpha("drop")), "drop");
  EXPECT_EQ(to_string(parse_alpha("white")), "white");
  EXPECT_EQ(to_string(parse_alpha("255,255,255")), "white");
  EXPECT_EQ(to_string(parse_alpha("0,0,0")), "black");
  EXPECT_EQ(to_string(parse_alpha("1,2,3")), "1,2,3");
  EXPECT_EQ(parse_alpha("1,2,3").background, (std::array<std::uint8_t, 3>{1, 2, 3}));
  // A dropped alpha has no background: equal whatever is stored there.
  EXPECT_EQ((Alpha{false, {1, 2, 3}}), Alpha{});
  for (const char* bad : {"", "grey", "1,2", "1,2,3,", "1,,3", "256,0,0", " 1,2,3", "+1,2,3"}) {
    try {
      parse_alpha(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_EQ(std::string(e.what()), std::string("invalid alpha '") + bad +
                                           "' (expected drop|white|black|R,G,B with 0-255)");
    }
  }
}

TEST(alpha, recipe_json_and_differences) {
  // The default writes no key (files as before); a composite writes its canonical name.
  EXPECT_EQ(to_json(Recipe{}).find("alpha"), std::string::npos);
  Recipe r;
  r.alpha = parse_alpha("10,20,30");
  EXPECT_NE(to_json(r).find("\"alpha\":\"10,20,30\""), std::string::npos);
  EXPECT_EQ(recipe_differences(r, Recipe{}), "alpha drop vs 10,20,30");
  RecipeOverrides o;
  o.alpha = parse_alpha("white");
  EXPECT_EQ(to_string(o.apply(Recipe{}).alpha), "white");

  Manifest m;
  m.recipe = r;
  EXPECT_EQ(manifest_from_json(to_json(m)).recipe, r);
}

TEST(alpha, png8_composites_with_exact_rounding) {
  // Every alpha 0..255 for one colour: the integer formula, rounded to nearest.
  std::vector<std::uint16_t> s;
  for (int a = 0; a < 256; ++a) s.insert(s.end(), {200, 7, 100, static_cast<std::uint16_t>(a)});
  const auto png = rgba_png(256, 1, 8, s);
  const std::uint8_t bg[3] = {10, 250, 100};
  const Image img = decode(png, "10,250,100");
  for (int a = 0; a < 256; ++a)
    for (int c = 0; c < 3; ++c) {
      const int want = (s[4 * a + c] * a + bg[c] * (255 - a) + 127) / 255;
      ASSERT_EQ(img.data()[3 * a + c], want) << "alpha " << a << " channel " << c;
    }
  EXPECT_EQ(img.data()[0], 10);         // transparent: the background
  EXPECT_EQ(img.data()[3 * 255], 200);  // opaque: the colour
  // Dropped (the default): the stored colour whatever the alpha.
  const Image dropped = decode(png, "drop");
  for (int a = 0; a < 256; ++a) EXPECT_EQ(dropped.data()[3 * a], 200);
}

TEST(alpha, png16_composites_before_the_reduction) {
  // 16-bit: composited at 16 bits with the background x 257, then >> 8. c = 0x0304 at alpha 0x2B03
  // on black is 0x0082 -> 0; reducing to 8 bits first would give (3 * 43 + 127) / 255 = 1.
  const std::vector<std::uint16_t> s = {0x0304, 0xFFFF, 0, 0x2B03, 0x1234, 0, 0xFFFF, 0};
  const Image img = decode(rgba_png(2, 1, 16, s), "black");
  auto ref = [](std::uint32_t c, std::uint32_t a, std::uint32_t bg) {
    return ((c * a + bg * 257 * (65535 - a) + 32767) / 65535) >> 8;
  };
  for (int p = 0; p < 2; ++p)
    for (int c = 0; c < 3; ++c)
      EXPECT_EQ(img.data()[3 * p + c], ref(s[4 * p + c], s[4 * p + 3], 0));
  EXPECT_EQ(img.data()[0], 0);
  const Image white = decode(rgba_png(2, 1, 16, s), "white");
  EXPECT_EQ(white.data()[3], 0xFF);  // transparent pixel: white
  EXPECT_EQ(white.data()[2], ref(0, 0x2B03, 255));
}

TEST(alpha, orientation_and_channel_orders_follow_the_composite) {
  std::vector<std::uint16_t> s;
  for (int i = 0; i < 3 * 2; ++i)
    s.insert(s.end(),
             {static_cast<std::uint16_t>(40 * i), 90, 200, static_cast<std::uint16_t>(50 * i)});
  Image flat = decode(rgba_png(3, 2, 8, s), "1,2,3");
  Image rotated = decode(rgba_png(3, 2, 8, s, 6), "1,2,3");
  ASSERT_EQ(rotated.width(), 2);
  ASSERT_EQ(rotated.height(), 3);
  // Orientation 6: out(y, x) = in(h - 1 - x, y).
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 2; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(rotated.row(y)[3 * x + c], flat.row(1 - x)[3 * y + c]);
  const Image bgr = decode(rgba_png(3, 2, 8, s), "1,2,3", ChannelOrder::bgr);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(bgr.data()[3 * i], flat.data()[3 * i + 2]);
    EXPECT_EQ(bgr.data()[3 * i + 2], flat.data()[3 * i]);
  }
}
