// Exact statistics of synthetic images through the installed imgnorm, checked against values
// computed by hand. `stats_demo PLUGIN.so` also loads the plug-in (module.cpp) and checks it.
// Exits non-zero on any mismatch.
#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "imgnorm/error.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/stats.hpp"

namespace {

// A width×height RGB image of one colour.
imgnorm::Image solid(int width, int height, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  imgnorm::Image image(width, height, 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      std::uint8_t* p = image.row(y) + 3 * x;
      p[0] = r, p[1] = g, p[2] = b;
    }
  }
  return image;
}

bool near(double a, double b) { return std::abs(a - b) < 1e-9; }

bool check_library() {
  // Two 4×2 images, (10, 20, 30) and (30, 60, 90): every channel is half a, half b, so its mean
  // is (a + b) / 2 and its population std |b − a| / 2.
  imgnorm::Accumulator acc(3);
  acc.add(solid(4, 2, 10, 20, 30).view());
  acc.add(solid(4, 2, 30, 60, 90).view());
  const imgnorm::Summary s = imgnorm::summarize(acc);
  const double mean[3] = {20, 40, 60};
  const double std[3] = {10, 20, 30};
  bool ok = s.images == 2 && s.pixels == 16;
  for (int c = 0; c < 3; ++c) {
    std::printf("channel %d: mean %g, std %g (expected %g, %g)\n", c, s.channel[c].mean,
                s.channel[c].std, mean[c], std[c]);
    ok = ok && near(s.channel[c].mean, mean[c]) && near(s.channel[c].std, std[c]);
  }
  // Bad input is an imgnorm::Error with a code: nothing to summarize.
  try {
    imgnorm::summarize(imgnorm::Accumulator(3));
    ok = false;
  } catch (const imgnorm::Error& e) {
    std::printf("empty accumulator: %s (%s)\n", e.what(), imgnorm::to_string(e.code()));
    ok = ok && e.code() == imgnorm::ErrorCode::empty;
  }
  return ok;
}

bool check_plugin(const char* path) {
  void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    std::fprintf(stderr, "stats_demo: %s\n", dlerror());
    return false;
  }
  using Fn = int (*)(const unsigned char*, int, int, double*);
  auto means_of = reinterpret_cast<Fn>(dlsym(handle, "demo_channel_means"));
  bool ok = means_of != nullptr;
  if (ok) {
    const imgnorm::Image image = solid(3, 3, 1, 2, 250);
    double m[3] = {};
    ok = means_of(image.data(), 3, 3, m) == 0 && near(m[0], 1) && near(m[1], 2) && near(m[2], 250);
    std::printf("plug-in: means %g %g %g (expected 1 2 250)\n", m[0], m[1], m[2]);
    ok = ok && means_of(image.data(), 0, 0, m) == -1;  // the Error stays inside the plug-in
  }
  dlclose(handle);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  bool ok = check_library();
  if (argc > 1) ok = check_plugin(argv[1]) && ok;
  std::puts(ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
