#include "imgnorm/decode.hpp"
#include "exif.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "imgnorm/error.hpp"
#include "imgnorm/image.hpp"

// Counts operator new calls, to check that a warmed-up Decoder does not allocate. The replacement
// pairs malloc with free throughout, which GCC cannot see across the replaced operators.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<long> g_news{0};
void* operator new(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace imgnorm {
namespace {

namespace fs = std::filesystem;

std::string data_path(const std::string& name) {
  return std::string(IMGNORM_TEST_DATA) + "/" + name;
}

std::vector<std::uint8_t> bytes_of(const std::string& name) {
  std::vector<std::uint8_t> b;
  read_file(data_path(name), b);
  return b;
}

DecodeOptions with_channels(ChannelOrder c) {
  DecodeOptions o;
  o.channels = c;
  return o;
}

Image decode_named(const std::string& name, const DecodeOptions& o = {},
                   DecodeInfo* info = nullptr) {
  return decode_file(data_path(name), o, info);
}

std::vector<std::uint8_t> pixels(const Image& img) {
  return std::vector<std::uint8_t>(img.data(), img.data() + img.size_bytes());
}

::testing::AssertionResult same_image(const Image& a, const Image& b) {
  if (a.width() != b.width() || a.height() != b.height() || a.channels() != b.channels()) {
    return ::testing::AssertionFailure()
           << "shape " << a.width() << "x" << a.height() << "x" << a.channels() << " vs "
           << b.width() << "x" << b.height() << "x" << b.channels();
  }
  std::size_t differ = 0;
  for (std::size_t i = 0; i < a.size_bytes(); ++i) differ += a.data()[i] != b.data()[i];
  if (differ) return ::testing::AssertionFailure() << differ << " samples differ";
  return ::testing::AssertionSuccess();
}

template <typename F>
ErrorCode error_code_of(F&& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  ADD_FAILURE() << "no imgnorm::Error thrown";
  return ErrorCode::invalid_argument;
}

TEST(decode, sniff_format_uses_magic_bytes) {
  const std::uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0};
  const std::uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  const std::uint8_t webp[] = {'R', 'I', 'F', 'F', 1, 2, 3, 4, 'W', 'E', 'B', 'P'};
  const std::uint8_t riff_wav[] = {'R', 'I', 'F', 'F', 1, 2, 3, 4, 'W', 'A', 'V', 'E'};
  EXPECT_EQ(sniff_format(jpeg, sizeof jpeg), Format::jpeg);
  EXPECT_EQ(sniff_format(jpeg, 2), Format::unknown);
  EXPECT_EQ(sniff_format(png, sizeof png), Format::png);
  EXPECT_EQ(sniff_format(png, 7), Format::unknown);
  EXPECT_EQ(sniff_format(webp, sizeof webp), Format::webp);
  EXPECT_EQ(sniff_format(webp, 11), Format::unknown);
  EXPECT_EQ(sniff_format(riff_wav, sizeof riff_wav), Format::unknown);
  EXPECT_EQ(sniff_format(nullptr, 0), Format::unknown);
  EXPECT_STREQ(to_string(Format::jpeg), "jpeg");
  EXPECT_STREQ(to_string(Format::png), "png");
  EXPECT_STREQ(to_string(Format::webp), "webp");
  EXPECT_STREQ(to_string(Format::unknown), "unknown");
}

struct Variant {
  const char* file;
  Format format;
  int width, height, source_channels, bit_depth;
};

TEST(decode, every_variant_has_the_right_shape_and_channels) {
  const Variant variants[] = {
      {"jpeg_420.jpg", Format::jpeg, 41, 31, 3, 8},
      {"jpeg_422.jpg", Format::jpeg, 41, 31, 3, 8},
      {"jpeg_444.jpg", Format::jpeg, 33, 17, 3, 8},
      {"jpeg_progressive.jpg", Format::jpeg, 37, 23, 3, 8},
      {"jpeg_gray.jpg", Format::jpeg, 37, 23, 1, 8},
      {"jpeg_cmyk.jpg", Format::jpeg, 29, 19, 4, 8},
      {"jpeg_ycck.jpg", Format::jpeg, 29, 19, 4, 8},
      {"jpeg_arith.jpg", Format::jpeg, 41, 31, 3, 8},
      {"jpeg_1x1.jpg", Format::jpeg, 1, 1, 3, 8},
      {"png_rgb.png", Format::png, 41, 31, 3, 8},
      {"png_rgba.png", Format::png, 41, 31, 4, 8},
      {"png_gray.png", Format::png, 33, 17, 1, 8},
      {"png_gray_alpha.png", Format::png, 33, 17, 2, 8},
      {"png_palette.png", Format::png, 37, 23, 3, 8},
      {"png_palette_trns.png", Format::png, 37, 23, 3, 8},
      {"png_palette4.png", Format::png, 29, 19, 3, 4},
      {"png_gray1.png", Format::png, 33, 17, 1, 1},
      {"png_gray2.png", Format::png, 33, 17, 1, 2},
      {"png_gray4.png", Format::png, 33, 17, 1, 4},
      {"png_rgb16.png", Format::png, 41, 31, 3, 16},
      {"png_rgba16.png", Format::png, 41, 31, 4, 16},
      {"png_gray16.png", Format::png, 33, 17, 1, 16},
      {"png_gray_alpha16.png", Format::png, 33, 17, 2, 16},
      {"png_interlaced.png", Format::png, 41, 31, 3, 8},
      {"png_1x1.png", Format::png, 1, 1, 3, 8},
      {"webp_lossy.webp", Format::webp, 41, 31, 3, 8},
      {"webp_lossless.webp", Format::webp, 33, 17, 3, 8},
      {"webp_lossless_alpha.webp", Format::webp, 41, 31, 4, 8},
      {"webp_lossy_alpha.webp", Format::webp, 41, 31, 4, 8},
      {"webp_1x1.webp", Format::webp, 1, 1, 3, 8},
  };
  Decoder dec;
  Image img;
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.file);
    const auto bytes = bytes_of(v.file);
    EXPECT_EQ(sniff_format(bytes.data(), bytes.size()), v.format);
    Image rgb, bgr, gray;
    DecodeInfo info = dec.decode(bytes.data(), bytes.size(), {}, rgb);
    EXPECT_EQ(info.format, v.format);
    EXPECT_EQ(info.width, v.width);
    EXPECT_EQ(info.height, v.height);
    EXPECT_EQ(info.source_channels, v.source_channels);
    EXPECT_EQ(info.bit_depth, v.bit_depth);
    EXPECT_EQ(info.orientation, 1);
    EXPECT_EQ(info.scale_denom, 1);
    EXPECT_EQ(rgb.width(), v.width);
    EXPECT_EQ(rgb.height(), v.height);
    EXPECT_EQ(rgb.channels(), 3);
    dec.decode(bytes.data(), bytes.size(), with_channels(ChannelOrder::bgr), bgr);
    ASSERT_EQ(bgr.size_bytes(), rgb.size_bytes());
    for (std::size_t i = 0; i < rgb.size_bytes(); i += 3) {
      ASSERT_EQ(bgr.data()[i], rgb.data()[i + 2]);
      ASSERT_EQ(bgr.data()[i + 1], rgb.data()[i + 1]);
      ASSERT_EQ(bgr.data()[i + 2], rgb.data()[i]);
    }
    dec.decode(bytes.data(), bytes.size(), with_channels(ChannelOrder::gray), gray);
    EXPECT_EQ(gray.width(), v.width);
    EXPECT_EQ(gray.height(), v.height);
    EXPECT_EQ(gray.channels(), 1);
    if (v.source_channels <= 2) {  // gray files: replicated into colour, unchanged in gray
      for (std::size_t i = 0; i < gray.size_bytes(); ++i) {
        ASSERT_EQ(rgb.data()[3 * i], gray.data()[i]);
        ASSERT_EQ(rgb.data()[3 * i + 1], gray.data()[i]);
        ASSERT_EQ(rgb.data()[3 * i + 2], gray.data()[i]);
      }
    }
  }
}

TEST(decode, png_variants_equal_their_references) {
  struct Pair {
    const char* file;
    const char* reference;
  };
  // References written by make_test_images.py from the source pixels (see there).
  const Pair pairs[] = {
      {"png_palette.png", "png_palette_ref.png"},
      {"png_palette_trns.png", "png_palette_ref.png"},  // tRNS ignored, not composited
      {"png_palette4.png", "png_palette4_ref.png"},
      {"png_palette4_interlaced.png", "png_palette4_ref.png"},
      {"png_gray1.png", "png_gray1_ref.png"},
      {"png_gray1_trns.png", "png_gray1_ref.png"},
      {"png_gray2.png", "png_gray2_ref.png"},
      {"png_gray4.png", "png_gray4_ref.png"},
      {"png_rgb16.png", "png_rgb.png"},  // high byte = 8-bit image, low byte = noise
      {"png_rgba16.png", "png_rgb.png"},
      {"png_rgba.png", "png_rgb.png"},  // alpha dropped
      {"png_gray16.png", "png_gray.png"},
      {"png_gray_alpha16.png", "png_gray.png"},
      {"png_gray_alpha.png", "png_gray.png"},
      {"png_interlaced.png", "png_rgb.png"},
      {"png_rgb_gama.png", "png_rgb.png"},  // colour output is not gamma corrected
      {"png_bad_crc_ancillary.png", "png_rgb.png"},
      {"webp_lossless.webp", "webp_lossless_ref.png"},
      {"webp_lossless_alpha.webp", "png_rgb.png"},
      {"jpeg_arith.jpg", "jpeg_420.jpg"},  // lossless transcode by jpegtran -arithmetic
  };
  for (const Pair& p : pairs) {
    for (ChannelOrder c : {ChannelOrder::rgb, ChannelOrder::bgr}) {
      SCOPED_TRACE(std::string(p.file) + " " + to_string(c));
      EXPECT_TRUE(same_image(decode_named(p.file, with_channels(c)),
                             decode_named(p.reference, with_channels(c))));
    }
  }
  // Gray sources stay exact in gray output too.
  for (const char* f : {"png_gray16.png", "png_gray_alpha16.png", "png_gray_alpha.png"}) {
    SCOPED_TRACE(f);
    EXPECT_TRUE(same_image(decode_named(f, with_channels(ChannelOrder::gray)),
                           decode_named("png_gray.png", with_channels(ChannelOrder::gray))));
  }
}

// libpng's rgb_to_gray (the formula cv2.imread uses for PNG), written out independently.
TEST(decode, png_gray_from_colour_follows_libpng) {
  const Image rgb = decode_named("png_rgb.png");
  const Image gray = decode_named("png_rgb.png", with_channels(ChannelOrder::gray));
  const Image gray16 = decode_named("png_rgb16.png", with_channels(ChannelOrder::gray));
  const Image rgb16_high = decode_named("png_rgb16.png");
  ASSERT_TRUE(same_image(rgb, rgb16_high));
  int changed = 0;
  for (std::size_t i = 0; i < gray.size_bytes(); ++i) {
    const int r = rgb.data()[3 * i], g = rgb.data()[3 * i + 1], b = rgb.data()[3 * i + 2];
    const int expect = (r == g && r == b) ? r : (9797 * r + 19234 * g + 3737 * b) >> 15;
    ASSERT_EQ(gray.data()[i], expect) << i;
    changed += gray16.data()[i] != gray.data()[i];
  }
  // 16-bit data carries noise in the low byte, so its gray differs here and there.
  EXPECT_GT(changed, 0);
  // With gAMA the mix happens in linear light: same colours, different gray.
  const Image gama = decode_named("png_rgb_gama.png", with_channels(ChannelOrder::gray));
  EXPECT_NE(pixels(gama), pixels(gray));
}

TEST(decode, cmyk_and_ycck_give_nearly_the_same_colours) {
  const Image cmyk = decode_named("jpeg_cmyk.jpg");
  const Image ycck = decode_named("jpeg_ycck.jpg");
  ASSERT_EQ(cmyk.size_bytes(), ycck.size_bytes());
  int worst = 0;
  for (std::size_t i = 0; i < cmyk.size_bytes(); ++i) {
    worst = std::max(worst, std::abs(cmyk.data()[i] - ycck.data()[i]));
  }
  EXPECT_LE(worst, 8);  // two lossy encodings of the same pixels
  // Close to the source colours (the same crop quantized to 16 colours), not their negative.
  const Image source = decode_named("png_palette4_ref.png");
  ASSERT_EQ(source.size_bytes(), cmyk.size_bytes());
  long diff = 0;
  for (std::size_t i = 0; i < cmyk.size_bytes(); ++i)
    diff += std::abs(cmyk.data()[i] - source.data()[i]);
  EXPECT_LT(diff / static_cast<long>(cmyk.size_bytes()), 12);
  const Image cmyk_gray = decode_named("jpeg_cmyk.jpg", with_channels(ChannelOrder::gray));
  EXPECT_EQ(cmyk_gray.channels(), 1);
}

TEST(decode, exif_orientation_matches_the_oriented_reference) {
  for (int k = 1; k <= 8; ++k) {
    SCOPED_TRACE(k);
    const std::string file = "exif_" + std::to_string(k) + ".jpg";
    DecodeInfo info;
    for (ChannelOrder c : {ChannelOrder::rgb, ChannelOrder::bgr}) {
      const Image img = decode_named(file, with_channels(c), &info);
      EXPECT_EQ(info.orientation, k);
      EXPECT_EQ(info.width, 37);  // stored size, before orientation
      EXPECT_EQ(info.height, 23);
      EXPECT_TRUE(same_image(
          img, decode_named("exif_" + std::to_string(k) + "_ref.png", with_channels(c))));
    }
    // Gray goes through the same transform: compare with the oriented colour image's layout.
    const Image gray = decode_named(file, with_channels(ChannelOrder::gray));
    EXPECT_EQ(gray.width(), k >= 5 ? 23 : 37);
    EXPECT_EQ(gray.height(), k >= 5 ? 37 : 23);
    DecodeOptions keep;
    keep.apply_orientation = false;
    const Image stored = decode_named(file, keep, &info);
    EXPECT_EQ(info.orientation, k);  // reported even when not applied
    EXPECT_TRUE(same_image(stored, decode_named("exif_1_ref.png")));
  }
  DecodeInfo info;
  EXPECT_TRUE(
      same_image(decode_named("exif_bad_offset.jpg", {}, &info), decode_named("exif_none.jpg")));
  EXPECT_EQ(info.orientation, 1);
  // cv2 4.6 applies a PNG eXIf chunk (before IDAT) but ignores EXIF in WebP.
  const Image png6 = decode_named("png_exif6.png", {}, &info);
  EXPECT_EQ(info.orientation, 6);
  EXPECT_EQ(png6.width(), 31);
  EXPECT_EQ(png6.height(), 41);
  const Image webp6 = decode_named("webp_exif6.webp", {}, &info);
  EXPECT_EQ(webp6.width(), 41);
}

TEST(decode, pixel_limit_is_checked_before_allocating) {
  Decoder dec;
  for (const char* f : {"huge_header.jpg", "huge_header.png"}) {
    SCOPED_TRACE(f);
    const auto bytes = bytes_of(f);
    Image img;
    std::string msg;
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(error_code_of([&] { dec.decode(bytes.data(), bytes.size(), {}, img); }, &msg),
              ErrorCode::too_large);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
    EXPECT_NE(msg.find("60000x60000"), std::string::npos) << msg;
    EXPECT_EQ(img.data(), nullptr);  // nothing allocated
    // With a limit above 60000² the (short) data is simply corrupt.
    DecodeOptions big;
    big.max_pixels = std::uint64_t{1} << 40;
    EXPECT_EQ(error_code_of([&] { dec.decode(bytes.data(), bytes.size(), big, img); }),
              ErrorCode::corrupt);
  }
  // The limit is inclusive and applies to every format.
  for (const char* f : {"jpeg_420.jpg", "png_rgb.png", "webp_lossy.webp"}) {
    SCOPED_TRACE(f);
    const auto bytes = bytes_of(f);
    DecodeOptions o;
    o.max_pixels = 41 * 31;
    Image img;
    EXPECT_NO_THROW(dec.decode(bytes.data(), bytes.size(), o, img));
    o.max_pixels = 41 * 31 - 1;
    Image none;
    EXPECT_EQ(error_code_of([&] { dec.decode(bytes.data(), bytes.size(), o, none); }),
              ErrorCode::too_large);
    EXPECT_EQ(none.data(), nullptr);
  }
}

TEST(decode, truncated_jpeg_is_corrupt_unless_allowed) {
  Decoder dec;
  const auto good = bytes_of("jpeg_420.jpg");
  Image expected;
  Decoder().decode(good.data(), good.size(), {}, expected);
  for (const char* f : {"jpeg_truncated.jpg", "jpeg_truncated_progressive.jpg"}) {
    SCOPED_TRACE(f);
    const auto bytes = bytes_of(f);
    Image img;
    std::string msg;
    EXPECT_EQ(error_code_of([&] { dec.decode(bytes.data(), bytes.size(), {}, img); }, &msg),
              ErrorCode::corrupt);
    EXPECT_NE(msg.find("Premature end"), std::string::npos) << msg;
    // The decoder is still usable after the error.
    Image again;
    dec.decode(good.data(), good.size(), {}, again);
    EXPECT_TRUE(same_image(again, expected));
    DecodeOptions lenient;
    lenient.allow_truncated = true;
    dec.decode(bytes.data(), bytes.size(), lenient, img);
    EXPECT_EQ(img.width(), 203);
    EXPECT_EQ(img.height(), 157);
  }
  // Other corrupt files, every format.
  for (const char* f : {"png_truncated.png", "png_bad_crc.png", "webp_truncated.webp"}) {
    SCOPED_TRACE(f);
    const auto bytes = bytes_of(f);
    Image img;
    EXPECT_EQ(error_code_of([&] { dec.decode(bytes.data(), bytes.size(), {}, img); }),
              ErrorCode::corrupt);
  }
  // Every prefix of a JPEG and a PNG is refused or decoded, never a crash.
  for (const char* f : {"jpeg_progressive.jpg", "png_interlaced.png", "webp_lossy.webp"}) {
    const auto bytes = bytes_of(f);
    for (std::size_t n = 0; n < bytes.size(); n += 7) {
      std::vector<std::uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<long>(n));
      Image img;
      try {
        dec.decode(prefix.data(), prefix.size(), {}, img);
      } catch (const Error&) {
      }
    }
  }
}

TEST(decode, not_an_image_is_unsupported) {
  std::string msg;
  EXPECT_EQ(error_code_of([&] { decode_named("empty.jpg"); }, &msg), ErrorCode::unsupported);
  EXPECT_EQ(msg, data_path("empty.jpg") + ": empty file");
  EXPECT_EQ(error_code_of([&] { decode_named("text.jpg"); }, &msg), ErrorCode::unsupported);
  EXPECT_EQ(msg, data_path("text.jpg") + ": not a JPEG, PNG or WebP file");
  EXPECT_EQ(error_code_of([&] { decode_named("gif_as.png"); }), ErrorCode::unsupported);
  Decoder dec;
  Image img;
  EXPECT_EQ(error_code_of([&] { dec.decode(nullptr, 0, {}, img); }), ErrorCode::unsupported);
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/imgnorm_decode_test_XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, ec);
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

TEST(decode, read_file_errors_name_the_file) {
  TempDir dir;
  std::vector<std::uint8_t> out;
  std::string msg;
  const std::string missing = dir / "missing.jpg";
  EXPECT_EQ(error_code_of([&] { read_file(missing, out); }, &msg), ErrorCode::io);
  EXPECT_EQ(msg, missing + ": no such file");
  EXPECT_EQ(error_code_of([&] { read_file(dir / "", out); }, &msg), ErrorCode::io);
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
  const std::string loop = dir / "loop.jpg";
  fs::create_symlink(loop, loop);
  EXPECT_EQ(error_code_of([&] { read_file(loop, out); }, &msg), ErrorCode::io);
  EXPECT_EQ(msg, loop + ": symlink loop");
  const std::string fifo = dir / "fifo.jpg";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(error_code_of([&] { read_file(fifo, out); }, &msg), ErrorCode::io);
  EXPECT_EQ(msg, fifo + ": not a regular file");
  if (geteuid() != 0) {  // root reads anything
    const std::string locked = dir / "locked.jpg";
    std::ofstream(locked) << "x";
    fs::permissions(locked, fs::perms::none);
    EXPECT_EQ(error_code_of([&] { read_file(locked, out); }, &msg), ErrorCode::io);
    EXPECT_EQ(msg, locked + ": permission denied");
  }
  // An empty file reads as empty; decoding it says so.
  out.assign(10, 1);
  read_file(data_path("empty.jpg"), out);
  EXPECT_TRUE(out.empty());
  // Contents are read exactly, and the vector's storage is reused.
  read_file(data_path("png_rgb.png"), out);
  EXPECT_EQ(out.size(), fs::file_size(data_path("png_rgb.png")));
  const std::uint8_t* before = out.data();
  read_file(data_path("jpeg_420.jpg"), out);
  EXPECT_EQ(out.size(), fs::file_size(data_path("jpeg_420.jpg")));
  EXPECT_EQ(out.data(), before);
  EXPECT_EQ(out[0], 0xFF);
}

TEST(decode, prescale_picks_the_smallest_covering_factor) {
  const auto bytes = bytes_of("jpeg_prescale.jpg");  // 203 x 157
  Decoder dec;
  struct Case {
    Size need;
    int denom;
  };
  // ceil(203/d) x ceil(157/d): 1/2 -> 102x79, 1/4 -> 51x40, 1/8 -> 26x20.
  const Case cases[] = {{{0, 0}, 8},    {{26, 20}, 8}, {{27, 20}, 4},  {{26, 21}, 4},
                        {{51, 40}, 4},  {{52, 40}, 2}, {{102, 79}, 2}, {{103, 79}, 1},
                        {{102, 80}, 1}, {{500, 1}, 1}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.need.width) + "x" + std::to_string(c.need.height));
    DecodeOptions o;
    Size seen{};
    o.min_size = [&](Size full) {
      seen = full;
      return c.need;
    };
    Image img;
    const DecodeInfo info = dec.decode(bytes.data(), bytes.size(), o, img);
    EXPECT_EQ(seen, (Size{203, 157}));
    EXPECT_EQ(info.scale_denom, c.denom);
    EXPECT_EQ(img.width(), (203 + c.denom - 1) / c.denom);
    EXPECT_EQ(img.height(), (157 + c.denom - 1) / c.denom);
    EXPECT_EQ(info.width, 203);
  }
  // Orientation 6 swaps the axes: full size is 23x37 (from 37x23 stored).
  const auto rotated = bytes_of("exif_6.jpg");
  DecodeOptions o;
  Size seen{};
  Size need{3, 5};
  o.min_size = [&](Size full) {
    seen = full;
    return need;
  };
  Image img;
  DecodeInfo info = dec.decode(rotated.data(), rotated.size(), o, img);
  EXPECT_EQ(seen, (Size{23, 37}));
  EXPECT_EQ(info.scale_denom, 8);  // stored 5x3 -> oriented 3x5
  EXPECT_EQ(img.width(), 3);
  EXPECT_EQ(img.height(), 5);
  need = Size{5, 3};
  info = dec.decode(rotated.data(), rotated.size(), o, img);
  EXPECT_EQ(info.scale_denom, 4);  // 1/8 gives 3 columns, too narrow; 1/4 gives 6x10
  EXPECT_EQ(img.width(), 6);
  EXPECT_EQ(img.height(), 10);
  // Prescale never applies to PNG or WebP.
  const auto png = bytes_of("png_rgb.png");
  info = dec.decode(png.data(), png.size(), o, img);
  EXPECT_EQ(info.scale_denom, 1);
  EXPECT_EQ(img.width(), 41);
  // A callback that throws leaves the decoder usable.
  DecodeOptions bad;
  bad.min_size = [](Size) -> Size { throw Error(ErrorCode::invalid_argument, "nope"); };
  EXPECT_EQ(error_code_of([&] { dec.decode(bytes.data(), bytes.size(), bad, img); }),
            ErrorCode::invalid_argument);
  info = dec.decode(bytes.data(), bytes.size(), {}, img);
  EXPECT_EQ(img.width(), 203);
}

TEST(decode, reused_decoder_equals_fresh_decoders) {
  const char* files[] = {"jpeg_420.jpg",    "png_rgb16.png", "exif_6.jpg",    "jpeg_cmyk.jpg",
                         "webp_lossy.webp", "png_exif6.png", "jpeg_gray.jpg", "png_palette4.png"};
  Decoder shared;
  Decoder moved_to = std::move(shared);
  Image img;
  for (int round = 0; round < 2; ++round) {
    for (const char* f : files) {
      for (ChannelOrder c : {ChannelOrder::rgb, ChannelOrder::gray, ChannelOrder::bgr}) {
        SCOPED_TRACE(std::string(f) + " " + to_string(c));
        const auto bytes = bytes_of(f);
        moved_to.decode(bytes.data(), bytes.size(), with_channels(c), img);
        Image fresh;
        Decoder().decode(bytes.data(), bytes.size(), with_channels(c), fresh);
        EXPECT_TRUE(same_image(img, fresh));
      }
    }
  }
}

TEST(decode, warmed_up_decoder_does_not_allocate) {
  const char* files[] = {"jpeg_420.jpg",  "exif_6.jpg",  "jpeg_cmyk.jpg",  "png_rgb16.png",
                         "png_exif6.png", "png_rgb.png", "webp_lossy.webp"};
  std::vector<std::vector<std::uint8_t>> inputs;
  for (const char* f : files) inputs.push_back(bytes_of(f));
  Decoder dec;
  Image img;
  auto run = [&] {
    for (const auto& b : inputs) {
      for (ChannelOrder c : {ChannelOrder::rgb, ChannelOrder::gray}) {
        DecodeOptions o;
        o.channels = c;
        dec.decode(b.data(), b.size(), o, img);
      }
    }
  };
  run();
  const long before = g_news.load();
  run();
  EXPECT_EQ(g_news.load() - before, 0);
}

// ------------------------------------------------------------------------------------------------
// EXIF parser on hostile input.

std::vector<std::uint8_t> exif_blob(bool big_endian, std::uint16_t orientation) {
  std::vector<std::uint8_t> b = {'E', 'x', 'i', 'f', 0, 0};
  auto put16 = [&](std::uint32_t v) {
    if (big_endian) {
      b.push_back(v >> 8);
      b.push_back(v & 0xFF);
    } else {
      b.push_back(v & 0xFF);
      b.push_back(v >> 8);
    }
  };
  auto put32 = [&](std::uint32_t v) {
    if (big_endian) {
      put16(v >> 16);
      put16(v & 0xFFFF);
    } else {
      put16(v & 0xFFFF);
      put16(v >> 16);
    }
  };
  b.push_back(big_endian ? 'M' : 'I');
  b.push_back(big_endian ? 'M' : 'I');
  put16(42);
  put32(8);
  put16(2);                                      // two entries
  put16(0x011A), put16(5), put32(1), put32(38);  // XResolution, rational at 38
  put16(0x0112), put16(3), put32(1), put16(orientation), put16(0);
  put32(0);  // no next IFD
  put32(72), put32(1);
  return b;
}

int parse(const std::vector<std::uint8_t>& b) {
  // An exact-size heap copy, so that AddressSanitizer sees any read past the end.
  std::unique_ptr<std::uint8_t[]> copy(new std::uint8_t[b.size() + (b.empty() ? 1 : 0)]);
  if (!b.empty()) std::memcpy(copy.get(), b.data(), b.size());
  return detail::parse_exif_orientation(copy.get(), b.size());
}

TEST(decode, parse_exif_orientation_reads_both_byte_orders) {
  for (int k = 1; k <= 8; ++k) {
    EXPECT_EQ(parse(exif_blob(false, static_cast<std::uint16_t>(k))), k);
    EXPECT_EQ(parse(exif_blob(true, static_cast<std::uint16_t>(k))), k);
  }
  EXPECT_EQ(parse(exif_blob(false, 0)), 1);
  EXPECT_EQ(parse(exif_blob(true, 9)), 1);
  EXPECT_EQ(parse(exif_blob(false, 0xFFFF)), 1);
}

TEST(decode, parse_exif_orientation_survives_malformed_input) {
  EXPECT_EQ(detail::parse_exif_orientation(nullptr, 0), 1);
  EXPECT_EQ(parse({}), 1);
  EXPECT_EQ(parse({'E', 'x', 'i', 'f', 0, 0}), 1);
  auto good = exif_blob(false, 6);
  auto b = good;
  b[0] = 'X';  // not "Exif\0\0"
  EXPECT_EQ(parse(b), 1);
  b = good;
  b[6] = 'I', b[7] = 'M';  // mixed byte order mark
  EXPECT_EQ(parse(b), 1);
  b = good;
  b[8] = 43;  // not 42
  EXPECT_EQ(parse(b), 1);
  for (std::uint32_t off : {0xFFFFFFFFu, 0x7FFFFFFFu, 0xFFFFFFF8u, 34u, 35u, 36u, 37u, 1000u}) {
    b = good;
    std::memcpy(&b[10], &off, 4);  // IFD offset (little-endian blob)
    EXPECT_EQ(parse(b), 1) << off;
  }
  b = good;
  b[14] = 0xFF, b[15] = 0xFF;  // 65535 entries, orientation is the second: still found
  EXPECT_EQ(parse(b), 6);
  b = good;
  b[14] = 1;  // one entry: the orientation entry is not in the directory
  EXPECT_EQ(parse(b), 1);
  // An IFD pointing at itself (a loop for a parser that follows offsets) or at the header.
  b = good;
  b[10] = 0;
  EXPECT_EQ(parse(b), 1);
  // Every truncation of a valid blob.
  for (std::size_t n = 0; n <= good.size(); ++n) {
    std::vector<std::uint8_t> t(good.begin(), good.begin() + static_cast<long>(n));
    const int r = parse(t);
    // The orientation entry ends at 6 + 8 + 2 + 24 = 40 bytes.
    EXPECT_EQ(r, n >= 40 ? 6 : 1) << n;
  }
  // Random mutations: always 1..8, never out of bounds (run under ASan).
  std::mt19937 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    b = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) b[rng() % b.size()] = static_cast<std::uint8_t>(rng());
    b.resize(rng() % (b.size() + 1));
    const int r = parse(b);
    ASSERT_GE(r, 1);
    ASSERT_LE(r, 8);
  }
}

}  // namespace
}  // namespace imgnorm
