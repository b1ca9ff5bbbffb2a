#include "imgnorm/transform.hpp"

#include "transform_kernels.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "half.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/npy.hpp"

namespace fs = std::filesystem;
using imgnorm::ChannelOrder;
using imgnorm::DType;
using imgnorm::Layout;
using imgnorm::Mode;
using imgnorm::detail::double_to_half;
using imgnorm::detail::float_to_half;
using imgnorm::detail::half_to_float;

namespace {

struct TestImage {
  int width, height, channels;
  std::size_t stride;
  std::vector<std::uint8_t> bytes;
  imgnorm::ImageView view() const { return {bytes.data(), width, height, channels, stride}; }
};

// Deterministic random image; `pad` extra bytes per row exercise the stride.
TestImage random_image(int w, int h, int c, unsigned seed, int pad = 0) {
  std::mt19937 rng(seed);
  TestImage img{w, h, c, static_cast<std::size_t>(w * c + pad), {}};
  img.bytes.resize(img.stride * h);
  for (auto& b : img.bytes) b = static_cast<std::uint8_t>(rng());
  return img;
}

// The same image with channels 0 and 2 exchanged.
TestImage swapped(const TestImage& img) {
  TestImage s = img;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      std::swap(s.bytes[y * img.stride + x * 3], s.bytes[y * img.stride + x * 3 + 2]);
  return s;
}

int ulp_distance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return INT32_MAX;
  std::int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = INT32_MIN - ia;
  if (ib < 0) ib = INT32_MIN - ib;
  return std::abs(ia - ib);
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("imgnorm-transform-test-" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

int run_python(const TempDir& dir, const std::string& code) {
  std::string script = dir.file("ref.py");
  std::ofstream(script) << "import sys\nimport numpy as np\nd = sys.argv[1]\n" << code << "\n";
  std::string cmd = "/usr/bin/python3 " + script + " " + dir.file("");
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void write_image_npy(const std::string& path, const TestImage& img) {
  std::vector<std::uint8_t> packed;
  for (int y = 0; y < img.height; ++y)
    packed.insert(packed.end(), img.bytes.begin() + y * img.stride,
                  img.bytes.begin() + y * img.stride + img.width * img.channels);
  imgnorm::write_npy(
      path, imgnorm::DType::uint8,
      {std::uint64_t(img.height), std::uint64_t(img.width), std::uint64_t(img.channels)},
      packed.data());
}

std::vector<float> run(const imgnorm::Normalizer& n, const TestImage& img,
                       int* constant = nullptr) {
  std::vector<float> out(std::size_t(img.width) * img.height * img.channels);
  int k = n.apply(img.view(), out.data());
  if (constant) *constant = k;
  return out;
}

imgnorm::TransformSpec spec_of(Mode mode) {
  imgnorm::TransformSpec s;
  s.mode = mode;
  return s;
}

}  // namespace

// --- float16 -------------------------------------------------------------------------------------

TEST(transform, half_f16c_agrees_with_reference) {
  // Every sign/exponent/top-mantissa combination with the low bits that decide rounding: exact
  // ties (0x1000), just below and above, and the extremes; set IMGNORM_EXHAUSTIVE=1 for all 2^32.
  const bool all = std::getenv("IMGNORM_EXHAUSTIVE") != nullptr;
  const std::uint32_t lows[] = {0,      1,      0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x2001,
                                0x3000, 0x5555, 0x7fff, 0x8000, 0x9000, 0xaaaa, 0xefff, 0xffff};
  std::vector<std::uint32_t> bits;
  std::vector<float> in;
  std::vector<std::uint16_t> fast, ref;
  auto check = [&] {
    in.resize(bits.size());
    std::memcpy(in.data(), bits.data(), bits.size() * 4);
    fast.resize(in.size());
    ref.resize(in.size());
    imgnorm::detail::float_to_half_n(in.data(), fast.data(), in.size());
    imgnorm::detail::float_to_half_n_reference(in.data(), ref.data(), in.size());
    for (std::size_t i = 0; i < in.size(); ++i)
      ASSERT_EQ(fast[i], ref[i]) << std::hex << "float bits 0x" << bits[i];
  };
  if (all) {
    for (std::uint64_t hi = 0; hi < (1u << 16); ++hi) {
      bits.clear();
      for (std::uint32_t lo = 0; lo < (1u << 16); ++lo)
        bits.push_back(std::uint32_t(hi << 16) | lo);
      check();
    }
  } else {
    for (std::uint32_t hi = 0; hi < (1u << 16); ++hi)
      for (std::uint32_t lo : lows) bits.push_back(hi << 16 | lo);
    check();
  }
#ifdef IMGNORM_HAVE_F16C_DISPATCH
  if (!imgnorm::detail::cpu_has_f16c()) GTEST_SKIP() << "no F16C: only the reference ran";
#endif
}

TEST(transform, half_conversions_match_numpy) {
  // Values at and around every rounding boundary of binary16: each finite half, the midpoints to
  // its neighbour (ties), one double/float ulp either side, the subnormal and overflow ranges.
  std::vector<double> d;
  for (std::uint32_t h = 0; h < 0x7c00; ++h) {
    double v = half_to_float(static_cast<std::uint16_t>(h));
    double next = h + 1 < 0x7c00 ? half_to_float(static_cast<std::uint16_t>(h + 1)) : 65536.0;
    double mid = (v + next) / 2;
    for (double x :
         {v, mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e9),
          double(std::nextafter(float(mid), 0.0f)), double(std::nextafter(float(mid), 1e9f))}) {
      d.push_back(x);
      d.push_back(-x);
    }
  }
  for (double x :
       std::initializer_list<double>{65519.99, 65520.0, 65536.0, 1e300, 5e-324, 1e-30, 0x1p-25,
                                     0x1.0000000000001p-25, 0x1.8p-25, INFINITY, -INFINITY, NAN})
    d.push_back(x);
  std::vector<float> f(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) f[i] = static_cast<float>(d[i]);

  TempDir dir;
  imgnorm::write_npy(dir.file("d.npy"), imgnorm::DType::float64, {d.size()}, d.data());
  imgnorm::write_npy(dir.file("f.npy"), imgnorm::DType::float32, {f.size()}, f.data());
  ASSERT_EQ(run_python(dir,
                       "with np.errstate(over='ignore'):\n"
                       "  for n in ['d', 'f']:\n"
                       "    a = np.load(d + n + '.npy')\n"
                       "    np.save(d + n + '16.npy', a.astype(np.float16).view(np.uint16))\n"),
            0);
  auto d16 = imgnorm::read_npy(dir.file("d16.npy"));
  auto f16 = imgnorm::read_npy(dir.file("f16.npy"));
  for (std::size_t i = 0; i < d.size(); ++i) {
    std::uint16_t want_d = d16.as<std::uint16_t>()[i], want_f = f16.as<std::uint16_t>()[i];
    if (std::isnan(d[i])) {
      EXPECT_EQ(double_to_half(d[i]) & 0x7e00, 0x7e00);
      continue;
    }
    ASSERT_EQ(double_to_half(d[i]), want_d) << std::hexfloat << d[i];
    ASSERT_EQ(float_to_half(f[i]), want_f) << std::hexfloat << f[i];
  }
  // half → float is exact: back and forth gives the same bits for every non-NaN half.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;
    ASSERT_EQ(float_to_half(half_to_float(std::uint16_t(h))), h);
    ASSERT_EQ(double_to_half(half_to_float(std::uint16_t(h))), h);
  }
}

// --- tables --------------------------------------------------------------------------------------

TEST(transform, table_matches_formula_for_every_mode) {
  const std::vector<double> mean{124.5, 116.25, 104.0}, sd{58.4, 57.1, 57.4};
  const std::vector<double> mn{3, 0, 10}, mx{250, 255, 200};
  TestImage img = random_image(9, 7, 3, 42);
  img.bytes[0] = 0;  // channel 0 spans 0..255 exactly
  img.bytes[3] = 255;

  struct Case {
    std::string name;
    imgnorm::TransformSpec spec;
    ChannelOrder input;
    // Expected value of input channel c at x, the documented formula typed out again.
    std::function<double(int c, double x, const imgnorm::Affine& a)> f;
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, imgnorm::TransformSpec s, auto f,
                 ChannelOrder in = ChannelOrder::rgb) {
    cases.push_back({name, s, in, f});
  };

  add("scale", spec_of(Mode::scale), [](int, double x, auto&) { return x / 255; });
  {
    auto s = spec_of(Mode::scale);
    s.range = {{-1.0, 1.0}};
    add("scale range", s, [](int, double x, auto&) { return -1 + 2 * (x / 255); });
  }
  for (int unit : {255, 1}) {
    auto s = spec_of(Mode::center);
    s.unit = unit;
    s.mean = mean;
    add("center unit " + std::to_string(unit), s, [&, unit](int c, double x, auto&) {
      return unit == 1 ? x / 255 - mean[c] / 255 : x - mean[c];
    });
    s.mode = Mode::standardize;
    s.std = sd;
    add("standardize unit " + std::to_string(unit), s, [&, unit](int c, double x, auto&) {
      return unit == 1 ? (x / 255 - mean[c] / 255) / (sd[c] / 255) : (x - mean[c]) / sd[c];
    });
    s = spec_of(Mode::minmax_dataset);
    s.unit = unit;
    s.min = mn;
    s.max = mx;
    s.range = {{-1.0, 1.0}};
    add("minmax-dataset unit " + std::to_string(unit), s, [&, unit](int c, double x, auto&) {
      return unit == 1 ? -1 + 2 * ((x / 255 - mn[c] / 255) / (mx[c] / 255 - mn[c] / 255))
                       : -1 + 2 * ((x - mn[c]) / (mx[c] - mn[c]));
    });
  }
  const double in_m[] = {0.485, 0.456, 0.406}, in_s[] = {0.229, 0.224, 0.225};
  add("imagenet", spec_of(Mode::imagenet),
      [&](int c, double x, auto&) { return (x / 255 - in_m[c]) / in_s[c]; });
  add(
      "imagenet bgr input", spec_of(Mode::imagenet),
      [&](int c, double x, auto&) { return (x / 255 - in_m[2 - c]) / in_s[2 - c]; },
      ChannelOrder::bgr);
  const double cl_m[] = {0.48145466, 0.4578275, 0.40821073};
  const double cl_s[] = {0.26862954, 0.26130258, 0.27577711};
  add("clip", spec_of(Mode::clip),
      [&](int c, double x, auto&) { return (x / 255 - cl_m[c]) / cl_s[c]; });
  const double caffe_rgb[] = {123.68, 116.779, 103.939};
  add("caffe", spec_of(Mode::caffe), [&](int c, double x, auto&) { return x - caffe_rgb[c]; });
  add("inception", spec_of(Mode::inception), [](int, double x, auto&) { return x / 127.5 - 1; });
  {
    auto s = spec_of(Mode::custom);
    s.unit = 1;
    s.mean = {0.5, 0.25, 0.125};
    s.std = {0.5, 0.25, 2.0};
    add("custom unit 1", s, [](int c, double x, auto&) {
      const double m[] = {0.5, 0.25, 0.125}, d[] = {0.5, 0.25, 2.0};
      return (x / 255 - m[c]) / d[c];
    });
  }
  // Per-image modes: the parameters come from the image (checked separately below), the table
  // must follow the formula with them.
  // The image's own min/max per channel, for minmax.
  int imin[3] = {255, 255, 255}, imax[3] = {0, 0, 0};
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width * 3; ++x) {
      int v = img.bytes[y * img.stride + x];
      imin[x % 3] = std::min(imin[x % 3], v);
      imax[x % 3] = std::max(imax[x % 3], v);
    }
  add("minmax", spec_of(Mode::minmax),
      [&](int c, double x, auto&) { return 0 + 1 * ((x - imin[c]) / (imax[c] - imin[c])); });

  add("per-image", spec_of(Mode::per_image),
      [](int c, double x, const imgnorm::Affine& a) { return (x - a.ch[c].m) / a.ch[c].s; });
  {
    auto s = spec_of(Mode::per_image_channel);
    s.unit = 1;
    add("per-image-channel unit 1", s, [](int c, double x, const imgnorm::Affine& a) {
      return (x / 255 - a.ch[c].m) / a.ch[c].s;
    });
  }

  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    imgnorm::Normalizer n(k.spec, k.input, {});
    imgnorm::Affine a = n.affine_for(img.view());
    imgnorm::Table t = imgnorm::make_table(a);
    ASSERT_EQ(t.channels, 3);
    for (int c = 0; c < 3; ++c) {
      for (int x = 0; x < 256; ++x) {
        double want = k.f(c, x, a);
        ASSERT_EQ(t.f32[c][x], static_cast<float>(want)) << "channel " << c << " x " << x;
        ASSERT_EQ(t.f16[c][x], double_to_half(want)) << "channel " << c << " x " << x;
      }
    }
  }
}

TEST(transform, per_image_parameters_match_direct_moments) {
  TestImage img = random_image(13, 11, 3, 7);
  double n = 13 * 11 * 3, sum = 0;
  for (auto b : img.bytes) sum += b;
  double mean = sum / n, ss = 0;
  for (auto b : img.bytes) ss += (b - mean) * (b - mean);
  double sd = std::sqrt(ss / n);
  imgnorm::Normalizer norm(spec_of(Mode::per_image), ChannelOrder::rgb, {});
  imgnorm::Affine a = norm.affine_for(img.view());
  for (int c = 0; c < 3; ++c) {
    EXPECT_DOUBLE_EQ(a.ch[c].m, mean);
    EXPECT_NEAR(a.ch[c].s, sd, sd * 1e-14);
  }
}

// --- fast path vs reference ----------------------------------------------------------------------

TEST(transform, fast_path_equals_reference_bit_for_bit) {
  imgnorm::Affine a3;
  a3.channels = 3;
  a3.ch[0] = {255.0, 0.485, 0.229, 1.0, 0.0};
  a3.ch[1] = {1.0, 116.75, 57.1, 2.0, -1.0};
  a3.ch[2] = {127.5, 1.0, 1.0, 1.0, 0.0};
  imgnorm::Affine a1;
  a1.channels = 1;
  a1.ch[0] = {255.0, 0.43, 0.21, 1.0, 0.0};
  for (int channels : {1, 3}) {
    const imgnorm::Affine& a = channels == 3 ? a3 : a1;
    imgnorm::Table t = imgnorm::make_table(a);
    for (int h : {1, 3, 8}) {
      for (int w = 1; w <= 70; ++w) {
        TestImage img = random_image(w, h, channels, w * 131 + h, w % 5);
        std::vector<double> mean_image(std::size_t(w) * h * channels);
        for (std::size_t i = 0; i < mean_image.size(); ++i) mean_image[i] = (i * 37 % 256) + 0.25;
        std::vector<double> mean_scaled(mean_image.size());
        for (std::size_t i = 0; i < mean_image.size(); ++i)
          mean_scaled[i] = mean_image[i] / a.ch[i % channels].d;
        for (Layout layout : {Layout::nhwc, Layout::nchw}) {
          for (bool swap : {false, true}) {
            if (swap && channels == 1) continue;
            for (DType dtype : {DType::float32, DType::float16}) {
              std::size_t bytes = std::size_t(w) * h * channels * imgnorm::dtype_size(dtype);
              std::vector<std::uint8_t> fast(bytes, 0xcd), ref(bytes, 0xab);
              imgnorm::apply(img.view(), t, swap, layout, dtype, fast.data());
              imgnorm::detail::apply_reference(img.view(), a, swap, layout, dtype, ref.data());
              ASSERT_EQ(fast, ref) << "w " << w << " h " << h << " c " << channels << " layout "
                                   << int(layout) << " swap " << swap << " dtype " << int(dtype);
              std::fill(fast.begin(), fast.end(), 0xcd);
              std::fill(ref.begin(), ref.end(), 0xab);
              imgnorm::detail::apply_mean_image(img.view(), a, mean_scaled.data(), swap, layout,
                                                dtype, fast.data());
              imgnorm::detail::apply_reference(img.view(), a, swap, layout, dtype, ref.data(),
                                               mean_image.data());
              ASSERT_EQ(fast, ref) << "mean image: w " << w << " h " << h;
            }
          }
        }
      }
    }
  }
}

TEST(transform, layouts_and_channel_order) {
  TestImage img = random_image(4, 3, 3, 5);
  auto s = spec_of(Mode::caffe);
  // RGB input, BGR output (caffe's order): output channel 0 is B − 103.939.
  imgnorm::OutputFormat fmt{Layout::nchw, DType::float32, ChannelOrder::bgr};
  imgnorm::Normalizer n(s, ChannelOrder::rgb, fmt);
  EXPECT_TRUE(n.swap_rb());
  auto out = run(n, img);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 4; ++x) {
      const std::uint8_t* p = img.bytes.data() + y * img.stride + x * 3;
      EXPECT_EQ(out[0 * 12 + y * 4 + x], float(p[2] - 103.939));
      EXPECT_EQ(out[1 * 12 + y * 4 + x], float(p[1] - 116.779));
      EXPECT_EQ(out[2 * 12 + y * 4 + x], float(p[0] - 123.68));
    }
  // Custom constants are in output channel order.
  auto c = spec_of(Mode::custom);
  c.mean = {10, 20, 30};
  imgnorm::Normalizer nc(c, ChannelOrder::rgb, {Layout::nhwc, DType::float32, ChannelOrder::bgr});
  out = run(nc, img);
  EXPECT_EQ(out[0], float(img.bytes[2] - 10.0));
  EXPECT_EQ(out[1], float(img.bytes[1] - 20.0));
  EXPECT_EQ(out[2], float(img.bytes[0] - 30.0));
  EXPECT_EQ(imgnorm::preset_channel_order(Mode::caffe), ChannelOrder::bgr);
  EXPECT_EQ(imgnorm::preset_channel_order(Mode::imagenet), ChannelOrder::rgb);
  EXPECT_FALSE(imgnorm::preset_channel_order(Mode::standardize).has_value());
}

// --- constant images and zero std ----------------------------------------------------------------

TEST(transform, constant_image_gives_zeros_not_nan) {
  for (int c : {1, 3}) {
    TestImage img = random_image(5, 4, c, 1);
    std::fill(img.bytes.begin(), img.bytes.end(), 77);
    ChannelOrder in = c == 3 ? ChannelOrder::rgb : ChannelOrder::gray;
    for (Mode m : {Mode::per_image, Mode::per_image_channel, Mode::minmax}) {
      SCOPED_TRACE(imgnorm::to_string(m));
      for (DType dt : {DType::float32, DType::float16}) {
        imgnorm::Normalizer n(spec_of(m), in, {Layout::nhwc, dt, ChannelOrder::rgb});
        std::vector<std::uint16_t> out(5 * 4 * c * 2, 0xffff);
        EXPECT_EQ(n.apply(img.view(), out.data()), c);
        for (std::size_t i = 0; i < std::size_t(5 * 4 * c); ++i) {
          float v = dt == DType::float32 ? reinterpret_cast<float*>(out.data())[i]
                                         : half_to_float(out[i]);
          ASSERT_EQ(v, 0.0f);
        }
      }
    }
  }
  // minmax: a constant channel maps to lo; the other channels are unaffected.
  TestImage img = random_image(6, 6, 3, 9);
  for (int i = 1; i < 6 * 6 * 3; i += 3) img.bytes[i] = 200;
  auto s = spec_of(Mode::minmax);
  s.range = {{-1.0, 1.0}};
  imgnorm::Normalizer mm(s, ChannelOrder::rgb, {});
  int constant = 0;
  auto out = run(mm, img, &constant);
  EXPECT_EQ(constant, 1);
  for (int i = 0; i < 36; ++i) EXPECT_EQ(out[i * 3 + 1], -1.0f);
  for (float v : out) EXPECT_TRUE(v >= -1.0f && v <= 1.0f);
  // per-image-channel: only the constant channel is 0; per-image: the image is not constant.
  imgnorm::Normalizer pc(spec_of(Mode::per_image_channel), ChannelOrder::rgb, {});
  out = run(pc, img, &constant);
  EXPECT_EQ(constant, 1);
  for (int i = 0; i < 36; ++i) EXPECT_EQ(out[i * 3 + 1], 0.0f);
  imgnorm::Normalizer pi(spec_of(Mode::per_image), ChannelOrder::rgb, {});
  out = run(pi, img, &constant);
  EXPECT_EQ(constant, 0);
  for (float v : out) EXPECT_TRUE(std::isfinite(v));
  // A 1x1 image is constant in every sense.
  TestImage one = random_image(1, 1, 3, 3);
  out = run(pi, one, &constant);
  for (float v : out) EXPECT_TRUE(std::isfinite(v));
}

TEST(transform, zero_dataset_std_needs_eps) {
  auto s = spec_of(Mode::standardize);
  s.mean = {100, 100, 100};
  s.std = {50, 0, 40};
  try {
    imgnorm::Normalizer n(s, ChannelOrder::rgb, {});
    FAIL();
  } catch (const imgnorm::Error& e) {
    EXPECT_EQ(e.code(), imgnorm::ErrorCode::invalid_argument);
    EXPECT_EQ(std::string(e.what()),
              "std of channel G is 0; pass --eps to divide by max(std, eps)");
  }
  s.eps = 1e-3;
  imgnorm::Normalizer n(s, ChannelOrder::rgb, {});
  TestImage img = random_image(3, 3, 3, 2);
  auto out = run(n, img);
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(out[i * 3 + 1], float((img.bytes[i * 3 + 1] - 100.0) / 1e-3));
    EXPECT_EQ(out[i * 3], float((img.bytes[i * 3] - 100.0) / 50.0));
  }
  // Same policy for a dataset channel with max == min (B in BGR input is channel 0).
  auto m = spec_of(Mode::minmax_dataset);
  m.min = {5, 0, 0};
  m.max = {5, 255, 255};
  try {
    imgnorm::Normalizer bad(m, ChannelOrder::bgr, {});
    FAIL();
  } catch (const imgnorm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("max - min of channel B is 0; pass --eps"),
              std::string::npos)
        << e.what();
  }
}

TEST(transform, spec_validation) {
  EXPECT_EQ(imgnorm::parse_mode("per_image_channel"), Mode::per_image_channel);
  EXPECT_EQ(imgnorm::parse_mode("mean-image"), Mode::mean_image);
  EXPECT_EQ(imgnorm::parse_layout("nchw"), Layout::nchw);
  EXPECT_EQ(imgnorm::parse_dtype("float16"), DType::float16);
  for (Mode m : {Mode::scale, Mode::center, Mode::standardize, Mode::mean_image, Mode::minmax,
                 Mode::minmax_dataset, Mode::per_image, Mode::per_image_channel, Mode::imagenet,
                 Mode::caffe, Mode::inception, Mode::clip, Mode::custom})
    EXPECT_EQ(imgnorm::parse_mode(imgnorm::to_string(m)), m);
  try {
    imgnorm::parse_mode("zscore");
    FAIL();
  } catch (const imgnorm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid mode 'zscore' (expected scale|"),
              std::string::npos);
  }
  auto expect_invalid = [](const imgnorm::TransformSpec& s, ChannelOrder in, const char* msg) {
    try {
      imgnorm::Normalizer n(s, in, {});
      ADD_FAILURE() << "accepted: " << msg;
    } catch (const imgnorm::Error& e) {
      EXPECT_EQ(e.code(), imgnorm::ErrorCode::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
    }
  };
  auto s = spec_of(Mode::standardize);
  s.mean = {1, 2, 3};
  s.std = {1, 2, 3};
  s.range = {{0.0, 1.0}};
  expect_invalid(s, ChannelOrder::rgb, "--range applies to scale, minmax and minmax-dataset");
  s.range.reset();
  s.std = {1, 2};
  expect_invalid(s, ChannelOrder::rgb, "standardize needs 3 std value(s), got 2");
  s.std = {1, NAN, 3};
  expect_invalid(s, ChannelOrder::rgb, "non-finite");
  expect_invalid(spec_of(Mode::imagenet), ChannelOrder::gray, "needs 3-channel input");
  auto r = spec_of(Mode::scale);
  r.range = {{1.0, 1.0}};
  expect_invalid(r, ChannelOrder::rgb, "lo < hi");
  auto u = spec_of(Mode::center);
  u.mean = {1, 2, 3};
  u.unit = 100;
  expect_invalid(u, ChannelOrder::rgb, "unit must be 1 or 255");
  auto mi = spec_of(Mode::mean_image);
  mi.mean_image_size = {4, 4};
  mi.mean_image.assign(4 * 4 * 3 - 1, 0.0);
  expect_invalid(mi, ChannelOrder::rgb, "mean-image needs a mean image");
  // Images of the wrong shape are refused at apply time.
  mi.mean_image.assign(4 * 4 * 3, 0.0);
  imgnorm::Normalizer n(mi, ChannelOrder::rgb, {});
  TestImage img = random_image(5, 4, 3, 1);
  std::vector<float> out(5 * 4 * 3);
  EXPECT_THROW(n.apply(img.view(), out.data()), imgnorm::Error);
  TestImage gray = random_image(4, 4, 1, 1);
  EXPECT_THROW(n.apply(gray.view(), out.data()), imgnorm::Error);
  // inception has no per-channel constants: gray is fine.
  imgnorm::Normalizer inc(spec_of(Mode::inception), ChannelOrder::gray, {});
  EXPECT_EQ(run(inc, gray)[0], float(gray.bytes[0] / 127.5 - 1));
}

// --- references: torchvision, TensorFlow's formula -----------------------------------------------

TEST(transform, imagenet_matches_torchvision) {
  TempDir dir;
  TestImage img = random_image(16, 12, 3, 2024);
  write_image_npy(dir.file("img.npy"), img);
  // ref32: the usual float32 pipeline (ToTensor + Normalize). ref64: torchvision's Normalize on
  // float64 x/255, which evaluates our formula with the same double operations.
  ASSERT_EQ(run_python(dir,
                       "import torch\n"
                       "from torchvision import transforms as T\n"
                       "x = np.load(d + 'img.npy')\n"
                       "norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])\n"
                       "np.save(d + 'ref32.npy', norm(T.ToTensor()(x)).numpy())\n"
                       "x64 = torch.from_numpy(x).permute(2, 0, 1).double() / 255\n"
                       "np.save(d + 'ref64.npy', norm(x64).float().numpy())\n"),
            0);
  auto ref32 = imgnorm::read_npy(dir.file("ref32.npy"));
  auto ref64 = imgnorm::read_npy(dir.file("ref64.npy"));
  ASSERT_EQ(ref32.header.shape, (std::vector<std::uint64_t>{3, 12, 16}));
  ASSERT_EQ(ref64.header.dtype, imgnorm::DType::float32);
  imgnorm::OutputFormat fmt{Layout::nchw, DType::float32, ChannelOrder::rgb};
  // RGB input, and the same pixels decoded as BGR: the constants follow the channels.
  imgnorm::Normalizer rgb(spec_of(Mode::imagenet), ChannelOrder::rgb, fmt);
  imgnorm::Normalizer bgr(spec_of(Mode::imagenet), ChannelOrder::bgr, fmt);
  auto a = run(rgb, img), b = run(bgr, swapped(img));
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i], b[i]);
    ASSERT_EQ(a[i], ref64.as<float>()[i]) << i;
    // float32 torchvision rounds x/255, the mean and each result separately and the subtraction
    // cancels, so its error is absolute (several ulps of y even at |y| = 0.5), bounded by about
    // 2^-24 * (1 + 0.485) * 2 / 0.224 < 1e-6.
    float r = ref32.as<float>()[i];
    EXPECT_TRUE(ulp_distance(a[i], r) <= 1 || std::fabs(a[i] - r) <= 1e-6f) << a[i] << " vs " << r;
  }
}

TEST(transform, per_image_matches_tensorflow_formula) {
  TempDir dir;
  TestImage img = random_image(15, 9, 3, 77);
  write_image_npy(dir.file("img.npy"), img);
  // tf.image.per_image_standardization, transcribed in float64: mean and population std over
  // all values, adjusted_stddev = max(std, 1/sqrt(N)). The channel variant uses axes (0, 1).
  ASSERT_EQ(run_python(dir,
                       "x = np.load(d + 'img.npy').astype(np.float64)\n"
                       "def std(x, axes, n):\n"
                       "    m = x.mean(axis=axes, keepdims=True)\n"
                       "    s = np.maximum(x.std(axis=axes, keepdims=True), 1 / np.sqrt(n))\n"
                       "    return (x - m) / s\n"
                       "np.save(d + 'all.npy', std(x, (0, 1, 2), x.size))\n"
                       "np.save(d + 'chan.npy', std(x, (0, 1), x.shape[0] * x.shape[1]))\n"),
            0);
  for (auto [mode, file] :
       {std::pair{Mode::per_image, "all.npy"}, std::pair{Mode::per_image_channel, "chan.npy"}}) {
    SCOPED_TRACE(file);
    auto ref = imgnorm::read_npy(dir.file(file));
    imgnorm::Normalizer n(spec_of(mode), ChannelOrder::rgb, {});
    auto out = run(n, img);
    int worst = 0;
    for (std::size_t i = 0; i < out.size(); ++i)
      worst = std::max(worst, ulp_distance(out[i], static_cast<float>(ref.as<double>()[i])));
    EXPECT_LE(worst, 1);
  }
}

// --- inverse ----------------------------------------------------------------------------------

TEST(transform, invert_recovers_the_pixels) {
  TestImage img = random_image(17, 5, 3, 99);
  std::vector<double> mean_image(17 * 5 * 3);
  for (std::size_t i = 0; i < mean_image.size(); ++i) mean_image[i] = (i * 53 % 256) * 0.9;
  std::vector<imgnorm::TransformSpec> specs;
  for (Mode m : {Mode::scale, Mode::minmax, Mode::per_image, Mode::per_image_channel,
                 Mode::imagenet, Mode::caffe, Mode::inception, Mode::clip})
    specs.push_back(spec_of(m));
  for (int unit : {255, 1}) {
    auto s = spec_of(Mode::standardize);
    s.unit = unit;
    s.mean = {120, 110, 100};
    s.std = {60, 55, 50};
    specs.push_back(s);
    s.mode = Mode::center;
    specs.push_back(s);
    s.mode = Mode::mean_image;
    s.mean_image = mean_image;
    s.mean_image_size = {17, 5};
    s.mean_image_std = unit == 1;
    specs.push_back(s);
    s = spec_of(Mode::minmax_dataset);
    s.unit = unit;
    s.min = {0, 10, 20};
    s.max = {255, 250, 240};
    specs.push_back(s);
  }
  auto custom = spec_of(Mode::custom);
  custom.mean = {1, 2, 3};
  custom.std = {4, 5, 6};
  specs.push_back(custom);
  auto scale = spec_of(Mode::scale);
  scale.range = {{-1.0, 1.0}};
  specs.push_back(scale);

  for (const auto& s : specs) {
    for (Layout layout : {Layout::nhwc, Layout::nchw}) {
      for (DType dt : {DType::float32, DType::float16}) {
        for (ChannelOrder out_order : {ChannelOrder::rgb, ChannelOrder::bgr}) {
          SCOPED_TRACE(std::string(imgnorm::to_string(s.mode)) + " unit " + std::to_string(s.unit) +
                       " " + imgnorm::to_string(layout) + " " + imgnorm::to_string(dt) + " " +
                       imgnorm::to_string(out_order));
          imgnorm::Normalizer n(s, ChannelOrder::rgb, {layout, dt, out_order});
          std::vector<std::uint8_t> y(17 * 5 * 3 * imgnorm::dtype_size(dt));
          n.apply(img.view(), y.data());
          std::vector<std::uint8_t> back(17 * 5 * 3);
          imgnorm::invert(y.data(), layout, dt, n.swap_rb(), n.affine_for(img.view()), 17, 5,
                          back.data(), s.mode == Mode::mean_image ? mean_image.data() : nullptr);
          ASSERT_EQ(back, img.bytes);
        }
      }
    }
  }
  // A constant channel of minmax maps to lo and inverts to the value it had.
  TestImage flat_img = random_image(4, 3, 3, 5);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 4; ++x) flat_img.bytes[y * flat_img.stride + x * 3 + 1] = 77;
  imgnorm::TransformSpec mm;
  mm.mode = Mode::minmax;
  mm.range = std::make_pair(-1.0, 1.0);
  imgnorm::Normalizer n(mm, ChannelOrder::rgb, {});
  int constant = 0;
  imgnorm::Affine a = n.affine_for(flat_img.view(), &constant);
  EXPECT_EQ(constant, 1);
  std::vector<float> y(4 * 3 * 3);
  n.apply(flat_img.view(), y.data());
  for (int i = 0; i < 12; ++i) EXPECT_EQ(y[i * 3 + 1], -1.0f);
  std::vector<std::uint8_t> back(y.size());
  imgnorm::invert(y.data(), Layout::nhwc, DType::float32, false, a, 4, 3, back.data());
  EXPECT_EQ(back, flat_img.bytes);
  // A map with s = 0 cannot be inverted.
  imgnorm::Affine bad;
  bad.channels = 1;
  bad.ch[0] = {1.0, 0.0, 0.0, 1.0, 0.0};
  float y0 = 0;
  std::uint8_t x0;
  EXPECT_THROW(imgnorm::invert(&y0, Layout::nhwc, DType::float32, false, bad, 1, 1, &x0),
               imgnorm::Error);
}

// Float input (apply_values) against the u8 table path: the same bits for dataset-level modes on
// whole values, within 1 ulp for per-image modes (moments in long double instead of integers), and
// the formula in double for fractional values.
TEST(transform, apply_values_agrees_with_the_u8_path) {
  const int w = 13, h = 7;
  TestImage img = random_image(w, h, 3, 99);
  std::vector<double> values(std::size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w * 3; ++x)
      values[std::size_t(y) * w * 3 + x] = img.bytes[y * img.stride + x];
  std::vector<double> mean_image(values.size());
  for (std::size_t i = 0; i < mean_image.size(); ++i) mean_image[i] = (i * 53 % 256) + 0.5;
  for (Mode mode : {Mode::scale, Mode::standardize, Mode::mean_image, Mode::minmax, Mode::per_image,
                    Mode::per_image_channel, Mode::imagenet, Mode::caffe}) {
    for (Layout layout : {Layout::nhwc, Layout::nchw}) {
      imgnorm::TransformSpec spec;
      spec.mode = mode;
      spec.mean = {120.5, 110.25, 100.0};
      spec.std = {60.0, 55.5, 50.125};
      spec.mean_image = mean_image;
      spec.mean_image_size = {w, h};
      spec.mean_image_std = true;
      imgnorm::Normalizer norm(spec, ChannelOrder::rgb,
                               {layout, DType::float32, ChannelOrder::bgr});
      std::vector<float> a(values.size()), b(values.size());
      norm.apply(img.view(), a.data());
      norm.apply_values(values.data(), w, h, b.data());
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (imgnorm::is_per_image(mode))
          ASSERT_LE(ulp_distance(a[i], b[i]), 1) << imgnorm::to_string(mode) << " at " << i;
        else
          ASSERT_EQ(a[i], b[i]) << imgnorm::to_string(mode) << " at " << i;
      }
    }
  }
  // Fractional values: y = (x - mean_c) / std_c in double, rounded once; NaN is refused.
  imgnorm::TransformSpec spec;
  spec.mode = Mode::standardize;
  spec.mean = {100.0};
  spec.std = {3.0};
  imgnorm::Normalizer norm(spec, ChannelOrder::gray,
                           {Layout::nhwc, DType::float32, ChannelOrder::gray});
  std::vector<double> v = {0.5, 100.25, 254.75, -3.0};
  std::vector<float> out(4);
  norm.apply_values(v.data(), 2, 2, out.data());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], static_cast<float>((v[i] - 100.0) / 3.0));
  v[2] = NAN;
  EXPECT_THROW(norm.apply_values(v.data(), 2, 2, out.data()), imgnorm::Error);
}
