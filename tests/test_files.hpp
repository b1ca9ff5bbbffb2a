#pragma once
// Files for the job tests (normalize_test, loader_test): a temporary folder, byte I/O, and small
// deterministic PNGs written with libspng.

#include <gtest/gtest.h>
#include <spng.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace imgnorm::testing {

namespace fs = std::filesystem;

/// A fresh folder under /tmp, removed with everything in it at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/imgnorm-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str(const std::string& name) const { return (path / name).string(); }
};

inline void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

inline std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

/// Deterministic pixels: a gradient with noise, so resizing and the statistics are not trivial.
inline std::vector<std::uint8_t> test_pixels(int w, int h, int c, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> px(static_cast<std::size_t>(w) * h * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        px[(static_cast<std::size_t>(y) * w + x) * c + k] = static_cast<std::uint8_t>(
            (x * 17 + y * 29 + k * 70 + static_cast<int>(rng() % 48)) & 255);
  return px;
}

/// An 8-bit PNG (gray or RGB) of test_pixels, written with libspng.
inline void write_png(const fs::path& p, int w, int h, int c, unsigned seed) {
  std::vector<std::uint8_t> px = test_pixels(w, h, c, seed);
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  ASSERT_NE(ctx, nullptr);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = static_cast<std::uint32_t>(w);
  ihdr.height = static_cast<std::uint32_t>(h);
  ihdr.bit_depth = 8;
  ihdr.color_type = c == 3 ? SPNG_COLOR_TYPE_TRUECOLOR : SPNG_COLOR_TYPE_GRAYSCALE;
  ASSERT_EQ(spng_set_ihdr(ctx, &ihdr), 0);
  ASSERT_EQ(spng_encode_image(ctx, px.data(), px.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
  std::size_t len = 0;
  int err = 0;
  void* buf = spng_get_png_buffer(ctx, &len, &err);
  ASSERT_EQ(err, 0);
  write_bytes(p, std::string(static_cast<const char*>(buf), len));
  std::free(buf);
  spng_ctx_free(ctx);
}

}  // namespace imgnorm::testing
