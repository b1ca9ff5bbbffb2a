#include "imgnorm/transform.hpp"

#include "transform_kernels.hpp"

#include <cblas.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "blas_threads.hpp"
#include "enum_names.hpp"
#include "half.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/pixel_covariance.hpp"
#include "imgnorm/stats.hpp"
#include "whitening_kernel.hpp"

// Bit-exact agreement between the table, the mean-image path and the reference relies on each
// evaluating ChannelMap's formula with the same double operations: no FMA contraction (off by
// default in ISO C++ mode, which the build uses) and no -ffast-math.

namespace imgnorm {

namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorCode::invalid_argument, what);
}

// Every mode's properties, in one place: its name (as the CLI, stats and manifest spell it),
// whether its map depends on the image, whether it needs the dataset statistics, whether it takes
// a --range, and the channel order its network expects. A new mode adds a row here, a case in
// Normalizer's constructor (its map) and in formula(), and its docs and tests.
enum class Needs { nothing, dataset_stats, dataset_stats_if_divided };
struct ModeTraits {
  Mode mode;
  const char* name;
  bool per_image;
  Needs needs;
  bool has_range;
  std::optional<ChannelOrder> preset;
};
constexpr ModeTraits kModeTable[] = {
    {Mode::scale, "scale", false, Needs::nothing, true, std::nullopt},
    {Mode::center, "center", false, Needs::dataset_stats, false, std::nullopt},
    {Mode::standardize, "standardize", false, Needs::dataset_stats, false, std::nullopt},
    {Mode::mean_image, "mean-image", false, Needs::dataset_stats_if_divided, false, std::nullopt},
    {Mode::minmax, "minmax", true, Needs::nothing, true, std::nullopt},
    {Mode::minmax_dataset, "minmax-dataset", false, Needs::dataset_stats, true, std::nullopt},
    {Mode::per_image, "per-image", true, Needs::nothing, false, std::nullopt},
    {Mode::per_image_channel, "per-image-channel", true, Needs::nothing, false, std::nullopt},
    {Mode::imagenet, "imagenet", false, Needs::nothing, false, ChannelOrder::rgb},
    {Mode::caffe, "caffe", false, Needs::nothing, false, ChannelOrder::bgr},
    {Mode::inception, "inception", false, Needs::nothing, false, ChannelOrder::rgb},
    {Mode::clip, "clip", false, Needs::nothing, false, ChannelOrder::rgb},
    {Mode::custom, "custom", false, Needs::nothing, false, std::nullopt},
    {Mode::zca_channels, "zca-channels", false, Needs::dataset_stats, false, std::nullopt},
    {Mode::pca_channels, "pca-channels", false, Needs::dataset_stats, false, std::nullopt},
    {Mode::zca_patch, "zca-patch", false, Needs::dataset_stats, false, std::nullopt},
    {Mode::zca, "zca", false, Needs::dataset_stats, false, std::nullopt},
    {Mode::pca, "pca", false, Needs::dataset_stats, false, std::nullopt},
};

const ModeTraits& traits(Mode m) {
  for (const ModeTraits& t : kModeTable)
    if (t.mode == m) return t;
  assert(false && "a Mode without a row in kModeTable");
  return kModeTable[0];
}

// Name of input channel c, for messages.
const char* channel_name(ChannelOrder order, int c) {
  if (order == ChannelOrder::gray) return "gray";
  static const char* kRgb[] = {"R", "G", "B"};
  return kRgb[order == ChannelOrder::bgr ? 2 - c : c];
}

// Output channel k is input channel perm(k).
inline int perm(bool swap_rb, int k) { return swap_rb ? 2 - k : k; }

template <typename T>
struct Out;
template <>
struct Out<float> {
  static float from(double v) { return static_cast<float>(v); }
};
template <>
struct Out<std::uint16_t> {
  static std::uint16_t from(double v) { return detail::double_to_half(v); }
};

// The fused kernel. `tab[k]` is the table of *output* channel k; `src_c[k]` its input channel.
template <typename T, int C, bool kPlanar>
void run_kernel(const ImageView& src, const T* const* tab, const int* src_c, T* out) {
  const std::size_t w = static_cast<std::size_t>(src.width);
  const std::size_t plane = w * static_cast<std::size_t>(src.height);
  if constexpr (C == 1) {
    const T* t0 = tab[0];
    for (int y = 0; y < src.height; ++y) {
      const std::uint8_t* p = src.row(y);
      T* o = out + y * w;
      for (std::size_t x = 0; x < w; ++x) o[x] = t0[p[x]];
    }
  } else {
    const T* t0 = tab[0];
    const T* t1 = tab[1];
    const T* t2 = tab[2];
    const int i0 = src_c[0], i2 = src_c[2];
    for (int y = 0; y < src.height; ++y) {
      const std::uint8_t* p = src.row(y);
      if constexpr (kPlanar) {
        T* o0 = out + y * w;
        T* o1 = o0 + plane;
        T* o2 = o1 + plane;
        for (std::size_t x = 0; x < w; ++x, p += 3) {
          o0[x] = t0[p[i0]];
          o1[x] = t1[p[1]];
          o2[x] = t2[p[i2]];
        }
      } else {
        T* o = out + y * w * 3;
        for (std::size_t x = 0; x < w; ++x, p += 3, o += 3) {
          o[0] = t0[p[i0]];
          o[1] = t1[p[1]];
          o[2] = t2[p[i2]];
        }
      }
    }
  }
}

template <typename T>
void dispatch_kernel(const ImageView& src, const T (*tables)[256], bool swap_rb, Layout layout,
                     void* out) {
  const T* tab[3];
  int src_c[3];
  for (int k = 0; k < src.channels; ++k) {
    src_c[k] = src.channels == 3 ? perm(swap_rb, k) : k;
    tab[k] = tables[src_c[k]];
  }
  T* o = static_cast<T*>(out);
  if (src.channels == 1) return run_kernel<T, 1, false>(src, tab, src_c, o);
  if (layout == Layout::nchw) return run_kernel<T, 3, true>(src, tab, src_c, o);
  run_kernel<T, 3, false>(src, tab, src_c, o);
}

// Index of output element (x, y, output channel k).
inline std::size_t out_index(Layout layout, int c, std::size_t w, std::size_t h, int x, int y,
                             int k) {
  return layout == Layout::nchw ? (static_cast<std::size_t>(k) * h + y) * w + x
                                : (static_cast<std::size_t>(y) * w + x) * c + k;
}

template <typename T>
void mean_image_kernel(const ImageView& src, const Affine& affine, const double* mean_scaled,
                       bool swap_rb, Layout layout, T* out) {
  const int c = src.channels;
  const std::size_t w = static_cast<std::size_t>(src.width),
                    h = static_cast<std::size_t>(src.height);
  // x / d for every u8 value: the same double the formula computes, looked up instead of divided.
  double xd[3][256];
  for (int ch = 0; ch < c; ++ch)
    for (int v = 0; v < 256; ++v) xd[ch][v] = v / affine.ch[ch].d;
  for (int y = 0; y < src.height; ++y) {
    const std::uint8_t* p = src.row(y);
    const double* m = mean_scaled + static_cast<std::size_t>(y) * w * c;
    for (int x = 0; x < src.width; ++x, p += c, m += c) {
      for (int k = 0; k < c; ++k) {
        int ic = c == 3 ? perm(swap_rb, k) : k;
        const ChannelMap& f = affine.ch[ic];
        double v = f.t + f.g * ((xd[ic][p[ic]] - m[ic]) / f.s);
        out[out_index(layout, c, w, h, x, y, k)] = Out<T>::from(v);
      }
    }
  }
}

void check_finite(const std::vector<double>& v, const char* what) {
  for (double x : v)
    if (!std::isfinite(x)) invalid(std::string(what) + " contains a non-finite value");
}

// A double as %g prints it (6 significant digits), for messages.
std::string fmt_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Dataset constant (0–255 units) in the chosen unit.
double in_unit(double v, int unit) { return unit == 1 ? v / 255.0 : v; }

ChannelMap divisor_map(int unit) {
  ChannelMap f;
  f.d = unit == 1 ? 255.0 : 1.0;
  return f;
}

}  // namespace

const char* to_string(Layout v) noexcept { return v == Layout::nchw ? "nchw" : "nhwc"; }

const char* to_string(Mode v) noexcept { return traits(v).name; }

Layout parse_layout(const std::string& s) {
  static constexpr Layout kAll[] = {Layout::nhwc, Layout::nchw};
  return detail::parse_enum(s, kAll, "layout");
}
Mode parse_mode(const std::string& s) {
  static constexpr auto kModes = [] {
    std::array<Mode, std::size(kModeTable)> all{};
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = kModeTable[i].mode;
    return all;
  }();
  return detail::parse_enum(s, kModes, "mode");
}

bool is_per_image(Mode mode) noexcept { return traits(mode).per_image; }

std::optional<ChannelOrder> preset_channel_order(Mode mode) noexcept { return traits(mode).preset; }

bool needs_dataset_stats(const TransformSpec& spec) noexcept {
  const Needs n = traits(spec.mode).needs;
  return n == Needs::dataset_stats || (n == Needs::dataset_stats_if_divided && spec.mean_image_std);
}

Table make_table(const Affine& affine) {
  Table t;
  t.channels = affine.channels;
  for (int c = 0; c < affine.channels; ++c) {
    for (int x = 0; x < 256; ++x) {
      double v = affine.ch[c](x);
      t.f32[c][x] = static_cast<float>(v);
      t.f16[c][x] = detail::double_to_half(v);
    }
  }
  return t;
}

ImageMoments image_moments(const ImageView& img) {
  assert(img.channels >= 1 && img.channels <= 3);
  ImageMoments m;
  m.channels = img.channels;
  m.n = static_cast<std::uint64_t>(img.width) * static_cast<std::uint64_t>(img.height);
  // Histograms: exact, and cheaper than squaring every pixel.
  std::array<std::array<std::uint64_t, 256>, 3> hist{};
  for (int y = 0; y < img.height; ++y) {
    const std::uint8_t* p = img.row(y);
    std::size_t n = static_cast<std::size_t>(img.width) * img.channels;
    if (img.channels == 1) {
      for (std::size_t i = 0; i < n; ++i) ++hist[0][p[i]];
    } else {
      for (std::size_t i = 0; i < n; i += 3) {
        ++hist[0][p[i]];
        ++hist[1][p[i + 1]];
        ++hist[2][p[i + 2]];
      }
    }
  }
  for (int c = 0; c < img.channels; ++c) {
    m.min[c] = 255;
    m.max[c] = 0;
    for (int v = 0; v < 256; ++v) {
      std::uint64_t k = hist[c][v];
      if (!k) continue;
      m.sum[c] += k * v;
      m.sum_sq[c] += k * v * v;
      m.min[c] = std::min(m.min[c], v);
      m.max[c] = std::max(m.max[c], v);
    }
  }
  return m;
}

void apply(const ImageView& src, const Table& table, bool swap_rb, Layout layout, DType dtype,
           void* out) {
  assert(src.channels == table.channels && (src.channels == 1 || src.channels == 3));
  if (dtype == DType::float32)
    dispatch_kernel<float>(src, table.f32, swap_rb, layout, out);
  else
    dispatch_kernel<std::uint16_t>(src, table.f16, swap_rb, layout, out);
}

void invert(const void* in, Layout layout, DType dtype, bool swap_rb, const Affine& affine,
            int width, int height, std::uint8_t* out, const double* mean_image) {
  const int c = affine.channels;
  for (int k = 0; k < c; ++k)
    if (affine.ch[k].s == 0 || affine.ch[k].d == 0 || !std::isfinite(affine.ch[k].g))
      invalid("cannot invert: channel " + std::to_string(k) + " has d, s = 0 or g not finite");
  const std::size_t w = static_cast<std::size_t>(width), h = static_cast<std::size_t>(height);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int k = 0; k < c; ++k) {
        int ic = c == 3 ? perm(swap_rb, k) : k;
        std::size_t o = out_index(layout, c, w, h, x, y, k);
        double v = dtype == DType::float32
                       ? static_cast<const float*>(in)[o]
                       : detail::half_to_float(static_cast<const std::uint16_t*>(in)[o]);
        const ChannelMap& f = affine.ch[ic];
        std::size_t i = (static_cast<std::size_t>(y) * w + x) * c + ic;
        double m = mean_image ? mean_image[i] / f.d : f.m;
        // g = 0: a constant channel, whose map keeps the constant value in m.
        double r =
            f.g == 0 ? std::nearbyint(f.d * m) : std::nearbyint(f.d * (m + f.s * (v - f.t) / f.g));
        out[i] = std::isnan(r) ? 0 : static_cast<std::uint8_t>(std::clamp(r, 0.0, 255.0));
      }
    }
  }
}

namespace {

// Inverse of a C×C matrix (C = 1 or 3) by the adjugate; false when singular.
bool invert_matrix(const std::vector<double>& m, int c, double* inv) {
  if (c == 1) {
    if (m[0] == 0 || !std::isfinite(1 / m[0])) return false;
    inv[0] = 1 / m[0];
    return true;
  }
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  if (det == 0 || !std::isfinite(1 / det)) return false;
  inv[0] = (m[4] * m[8] - m[5] * m[7]) / det;
  inv[1] = (m[2] * m[7] - m[1] * m[8]) / det;
  inv[2] = (m[1] * m[5] - m[2] * m[4]) / det;
  inv[3] = (m[5] * m[6] - m[3] * m[8]) / det;
  inv[4] = (m[0] * m[8] - m[2] * m[6]) / det;
  inv[5] = (m[2] * m[3] - m[0] * m[5]) / det;
  inv[6] = (m[3] * m[7] - m[4] * m[6]) / det;
  inv[7] = (m[1] * m[6] - m[0] * m[7]) / det;
  inv[8] = (m[0] * m[4] - m[1] * m[3]) / det;
  return true;
}

}  // namespace

void invert(const void* in, Layout layout, DType dtype, bool swap_rb, const PixelMap& map,
            int width, int height, std::uint8_t* out, const double* mean_image) {
  if (!map.is_linear())
    return invert(in, layout, dtype, swap_rb, map.affine, width, height, out, mean_image);
  const Affine& a = map.affine;
  const int c = a.channels;
  double inv[9];
  if (static_cast<int>(map.matrix.size()) != c * c || !invert_matrix(map.matrix, c, inv))
    invalid("cannot invert: the channel matrix is singular");
  for (int k = 0; k < c; ++k)
    if (a.ch[k].s == 0 || a.ch[k].d == 0 || a.ch[k].g == 0 || !std::isfinite(a.ch[k].g))
      invalid("cannot invert: channel " + std::to_string(k) + " has d, s or g = 0");
  const std::size_t w = static_cast<std::size_t>(width), h = static_cast<std::size_t>(height);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      double v[3];
      for (int k = 0; k < c; ++k) {
        const int ic = c == 3 ? perm(swap_rb, k) : k;
        const std::size_t o = out_index(layout, c, w, h, x, y, k);
        const double yv = dtype == DType::float32
                              ? static_cast<const float*>(in)[o]
                              : detail::half_to_float(static_cast<const std::uint16_t*>(in)[o]);
        v[ic] = (yv - a.ch[ic].t) / a.ch[ic].g;
      }
      for (int ic = 0; ic < c; ++ic) {
        double z = 0;
        for (int j = 0; j < c; ++j) z += inv[ic * c + j] * v[j];
        const ChannelMap& f = a.ch[ic];
        const double r = std::nearbyint(f.d * (f.m + f.s * z));
        const std::size_t i = (static_cast<std::size_t>(y) * w + x) * c + ic;
        out[i] = std::isnan(r) ? 0 : static_cast<std::uint8_t>(std::clamp(r, 0.0, 255.0));
      }
    }
}

float half_to_float(std::uint16_t bits) noexcept { return detail::half_to_float(bits); }

namespace detail {

void apply_linear(const ImageView& src, const PixelMap& map, bool swap_rb, Layout layout,
                  DType dtype, void* out) {
  const int c = src.channels;
  const Affine& a = map.affine;
  const std::size_t w = static_cast<std::size_t>(src.width),
                    h = static_cast<std::size_t>(src.height);
  for (int y = 0; y < src.height; ++y) {
    const std::uint8_t* row = src.row(y);
    for (int x = 0; x < src.width; ++x) {
      double z[3];
      for (int ic = 0; ic < c; ++ic) {
        const ChannelMap& f = a.ch[ic];
        z[ic] = (row[x * c + ic] / f.d - f.m) / f.s;
      }
      for (int k = 0; k < c; ++k) {
        const int ic = c == 3 ? perm(swap_rb, k) : k;
        double acc = 0;
        for (int j = 0; j < c; ++j) acc += map.matrix[ic * c + j] * z[j];
        const double v = a.ch[ic].t + a.ch[ic].g * acc;
        const std::size_t o = out_index(layout, c, w, h, x, y, k);
        if (dtype == DType::float32)
          static_cast<float*>(out)[o] = static_cast<float>(v);
        else
          static_cast<std::uint16_t*>(out)[o] = double_to_half(v);
      }
    }
  }
}

void apply_reference(const ImageView& src, const Affine& affine, bool swap_rb, Layout layout,
                     DType dtype, void* out, const double* mean_image) {
  const int c = src.channels;
  const std::size_t w = static_cast<std::size_t>(src.width),
                    h = static_cast<std::size_t>(src.height);
  for (int y = 0; y < src.height; ++y) {
    for (int x = 0; x < src.width; ++x) {
      for (int k = 0; k < c; ++k) {
        int ic = c == 3 ? perm(swap_rb, k) : k;
        ChannelMap f = affine.ch[ic];
        if (mean_image) f.m = mean_image[(static_cast<std::size_t>(y) * w + x) * c + ic] / f.d;
        double v = f(src.row(y)[x * c + ic]);
        std::size_t o = out_index(layout, c, w, h, x, y, k);
        if (dtype == DType::float32)
          static_cast<float*>(out)[o] = static_cast<float>(v);
        else
          static_cast<std::uint16_t*>(out)[o] = double_to_half(v);
      }
    }
  }
}

void apply_mean_image(const ImageView& src, const Affine& affine, const double* mean_scaled,
                      bool swap_rb, Layout layout, DType dtype, void* out) {
  if (dtype == DType::float32)
    mean_image_kernel(src, affine, mean_scaled, swap_rb, layout, static_cast<float*>(out));
  else
    mean_image_kernel(src, affine, mean_scaled, swap_rb, layout, static_cast<std::uint16_t*>(out));
}

}  // namespace detail

Normalizer::Normalizer(TransformSpec spec_in, ChannelOrder input, const OutputFormat& format)
    : spec_(std::move(spec_in)), input_(input), format_(format), channels_(channel_count(input)) {
  const TransformSpec& spec = spec_;
  const Mode mode = spec.mode;
  const int nc = channels_;
  if (format.channels == ChannelOrder::gray && nc == 3)
    invalid("output channel order gray needs gray input");
  swap_rb_ = nc == 3 && format.channels != input;
  if (format.dtype != DType::float32 && format.dtype != DType::float16)
    invalid(std::string("invalid dtype '") + to_string(format.dtype) +
            "' (expected float32|float16)");
  if (spec.unit != 1 && spec.unit != 255) invalid("unit must be 1 or 255");
  const bool whitening = mode == Mode::zca_channels || mode == Mode::pca_channels ||
                         mode == Mode::zca_patch || is_full_image(mode);
  if (spec.components != 0 && mode != Mode::pca)
    invalid(std::string("--components applies to --mode pca, not ") + to_string(mode));
  if (!spec.whiten && mode != Mode::pca)
    invalid(std::string("--no-whiten applies to --mode pca, not ") + to_string(mode));
  if (spec.patch != 0 && mode != Mode::zca_patch)
    invalid(std::string("--patch applies to --mode zca-patch, not ") + to_string(mode));
  if (!spec.whitening.empty() && !is_full_image(mode))
    invalid(std::string("a whitening matrix applies to --mode zca and pca, not ") +
            to_string(mode));
  if (spec.eps && !(std::isfinite(*spec.eps) && (*spec.eps > 0 || (whitening && *spec.eps == 0))))
    invalid(whitening ? "eps must be a number >= 0" : "eps must be a positive number");
  const bool has_range = traits(mode).has_range;
  if (spec.range && !has_range)
    invalid(std::string("--range applies to scale, minmax and minmax-dataset, not ") +
            to_string(mode));
  const double lo = spec.range ? spec.range->first : 0.0;
  const double hi = spec.range ? spec.range->second : 1.0;
  if (!(std::isfinite(lo) && std::isfinite(hi) && lo < hi))
    invalid("range lo,hi must be finite with lo < hi");

  auto need = [&](const std::vector<double>& v, const char* what) {
    if (static_cast<int>(v.size()) != nc)
      invalid(std::string(to_string(mode)) + " needs " + std::to_string(nc) + " " + what +
              " value(s), got " + std::to_string(v.size()));
    check_finite(v, what);
  };
  // A dataset std (or max − min) in the chosen unit, floored by eps; zero without eps is an error.
  auto divisor = [&](double s, int c, const char* what) {
    if (s < 0)
      invalid(std::string(what) + " of channel " + channel_name(input, c) + " is negative");
    if (spec.eps) return std::max(s, *spec.eps);
    if (s == 0)
      invalid(std::string(what) + " of channel " + channel_name(input, c) +
              " is 0; pass --eps to divide by max(" + what + ", eps)");
    return s;
  };
  auto preset = [&](const double(&m)[3], const double(&s)[3], bool bgr_constants, double d) {
    if (nc != 3) invalid(std::string("preset ") + to_string(mode) + " needs 3-channel input");
    bool input_bgr = input == ChannelOrder::bgr;
    for (int c = 0; c < 3; ++c) {
      int j = input_bgr == bgr_constants ? c : 2 - c;
      ChannelMap& f = fixed_.ch[c];
      f.d = d;
      f.m = m[j];
      f.s = s[j];
    }
  };

  fixed_.channels = nc;
  switch (mode) {
    case Mode::scale:
      for (int c = 0; c < nc; ++c) fixed_.ch[c] = {255.0, 0.0, 1.0, hi - lo, lo};
      break;
    case Mode::center:
      need(spec.mean, "mean");
      for (int c = 0; c < nc; ++c) {
        fixed_.ch[c] = divisor_map(spec.unit);
        fixed_.ch[c].m = in_unit(spec.mean[c], spec.unit);
      }
      break;
    case Mode::standardize:
      need(spec.mean, "mean");
      need(spec.std, "std");
      for (int c = 0; c < nc; ++c) {
        fixed_.ch[c] = divisor_map(spec.unit);
        fixed_.ch[c].m = in_unit(spec.mean[c], spec.unit);
        fixed_.ch[c].s = divisor(in_unit(spec.std[c], spec.unit), c, "std");
      }
      break;
    case Mode::mean_image: {
      std::uint64_t n = static_cast<std::uint64_t>(spec.mean_image_size.width) *
                        static_cast<std::uint64_t>(spec.mean_image_size.height) * nc;
      if (spec.mean_image_size.width <= 0 || spec.mean_image_size.height <= 0 ||
          spec.mean_image.size() != n)
        invalid("mean-image needs a mean image of " + std::to_string(nc) + " channels");
      check_finite(spec.mean_image, "mean image");
      if (spec.mean_image_std) need(spec.std, "std");
      for (int c = 0; c < nc; ++c) {
        fixed_.ch[c] = divisor_map(spec.unit);
        if (spec.mean_image_std)
          fixed_.ch[c].s = divisor(in_unit(spec.std[c], spec.unit), c, "std");
      }
      mean_scaled_.resize(spec.mean_image.size());
      for (std::size_t i = 0; i < spec.mean_image.size(); ++i)
        mean_scaled_[i] = spec.mean_image[i] / fixed_.ch[i % nc].d;
      break;
    }
    case Mode::minmax_dataset:
      need(spec.min, "min");
      need(spec.max, "max");
      for (int c = 0; c < nc; ++c) {
        if (spec.min[c] > spec.max[c])
          invalid(std::string("min > max for channel ") + channel_name(input, c));
        fixed_.ch[c] = divisor_map(spec.unit);
        fixed_.ch[c].m = in_unit(spec.min[c], spec.unit);
        fixed_.ch[c].s = divisor(in_unit(spec.max[c], spec.unit) - in_unit(spec.min[c], spec.unit),
                                 c, "max - min");
        fixed_.ch[c].g = hi - lo;
        fixed_.ch[c].t = lo;
      }
      break;
    case Mode::imagenet: {
      static constexpr double kM[3] = {0.485, 0.456, 0.406}, kS[3] = {0.229, 0.224, 0.225};
      preset(kM, kS, false, 255.0);
      break;
    }
    case Mode::clip: {
      static constexpr double kM[3] = {0.48145466, 0.4578275, 0.40821073};
      static constexpr double kS[3] = {0.26862954, 0.26130258, 0.27577711};
      preset(kM, kS, false, 255.0);
      break;
    }
    case Mode::caffe: {
      static constexpr double kM[3] = {103.939, 116.779, 123.68}, kS[3] = {1, 1, 1};
      preset(kM, kS, true, 1.0);
      break;
    }
    case Mode::inception:
      for (int c = 0; c < nc; ++c) fixed_.ch[c] = {127.5, 1.0, 1.0, 1.0, 0.0};
      break;
    case Mode::custom: {
      need(spec.mean, "mean");
      std::vector<double> sd = spec.std.empty() ? std::vector<double>(nc, 1.0) : spec.std;
      need(sd, "std");
      // Custom constants are in output channel order.
      for (int c = 0; c < nc; ++c) {
        int k = nc == 3 ? perm(swap_rb_, c) : c;
        fixed_.ch[c] = divisor_map(spec.unit);
        fixed_.ch[c].m = spec.mean[k];
        fixed_.ch[c].s = divisor(sd[k], c, "std");
      }
      break;
    }
    case Mode::zca_channels:
    case Mode::pca_channels: {
      need(spec.mean, "mean");
      if (static_cast<int>(spec.covariance.size()) != nc * nc)
        invalid(std::string(to_string(mode)) + " needs the " + std::to_string(nc) + "x" +
                std::to_string(nc) + " channel covariance of the statistics");
      check_finite(spec.covariance, "covariance");
      if (!spec.matrix.empty())
        invalid(std::string("a channel matrix does not apply to mode ") + to_string(mode));
      const double eps = (spec.eps ? *spec.eps : kDefaultWhiteningEps) * 255.0 * 255.0;
      std::vector<double> values, vectors;
      symmetric_eigen(spec.covariance, nc, values, vectors);
      for (int k = 0; k < nc; ++k)
        if (!(values[k] + eps > 0))
          invalid("the channel covariance is singular (eigenvalue " + std::to_string(k) + " is " +
                  std::to_string(values[k]) + "); pass --eps");
      for (int c = 0; c < nc; ++c) fixed_.ch[c] = {1.0, spec.mean[c], 1.0, 1.0, 0.0};
      const std::size_t n = static_cast<std::size_t>(nc);
      matrix_.assign(n * n, 0.0);
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j)
          for (std::size_t k = 0; k < n; ++k) {
            const double scale = 1.0 / std::sqrt(values[k] + eps);
            if (mode == Mode::pca_channels) {
              // Row k is component k: Uᵀ's row k (U's column k), scaled.
              if (i == k) matrix_[i * n + j] = vectors[j * n + k] * scale;
            } else {
              matrix_[i * n + j] += vectors[i * n + k] * scale * vectors[j * n + k];
            }
          }
      // Principal components are not colour channels: no R/B swap of the output.
      if (mode == Mode::pca_channels) swap_rb_ = false;
      break;
    }
    case Mode::zca_patch:
      init_patch();
      break;
    case Mode::zca:
    case Mode::pca:
      if (spec_.whitening.empty())
        init_full();
      else
        init_full_given();
      if (mode == Mode::pca) swap_rb_ = false;  // components, not colour channels
      break;
    case Mode::minmax:
    case Mode::per_image:
    case Mode::per_image_channel:
      break;
  }
  if (!spec.matrix.empty()) {
    if (is_per_image(mode) || mode == Mode::mean_image)
      invalid(std::string("a channel matrix does not apply to mode ") + to_string(mode));
    if (static_cast<int>(spec.matrix.size()) != nc * nc)
      invalid("the channel matrix needs " + std::to_string(nc * nc) + " values, got " +
              std::to_string(spec.matrix.size()));
    check_finite(spec.matrix, "channel matrix");
    matrix_ = spec.matrix;
  }
  if (!is_per_image(mode) && mode != Mode::mean_image)
    table_ = std::make_shared<const Table>(make_table(fixed_));
  check_finite_outputs();
}

namespace {

// Which user-given parameters decide the size of a mode's outputs, for the message of a
// transform whose output is not finite.
std::string culprits(const TransformSpec& spec) {
  switch (spec.mode) {
    case Mode::scale:
    case Mode::minmax:
      return "--range";
    case Mode::minmax_dataset:
      return spec.eps ? "--range and --eps" : "--range (and the statistics' min and max)";
    case Mode::custom:
      return "--mean/--std and --unit";
    case Mode::standardize:
    case Mode::center:
      return spec.eps ? "--eps" : "the statistics' std";
    case Mode::mean_image:
      return spec.eps ? "--eps" : "the statistics' std";
    case Mode::per_image:
    case Mode::per_image_channel:
      return "--size (the bound grows with the square root of the pixels of an image)";
    case Mode::zca_channels:
    case Mode::pca_channels:
    case Mode::zca_patch:
    case Mode::zca:
    case Mode::pca:
      return "--eps";
    case Mode::imagenet:
    case Mode::caffe:
    case Mode::inception:
    case Mode::clip:
      break;
  }
  return spec.matrix.empty() ? "--mode" : "the channel matrix";
}

// The value as the output type holds it (what the kernels write), as a double.
double as_output(double v, DType dtype) {
  return dtype == DType::float32
             ? static_cast<double>(static_cast<float>(v))
             : static_cast<double>(detail::half_to_float(detail::double_to_half(v)));
}

}  // namespace

void Normalizer::refuse_non_finite(int channel, const std::string& input, double value) const {
  const bool half = format_.dtype == DType::float16;
  const std::string what = std::isnan(value)
                               ? "nan"
                               : fmt_double(value) + ", beyond " + to_string(format_.dtype) +
                                     "'s largest finite value " + (half ? "65504" : "3.40282e+38");
  invalid("--mode " + std::string(to_string(spec_.mode)) + " would write non-finite values: " +
          (channel >= 0 ? std::string("channel ") + channel_name(input_, channel) + " maps "
                        : std::string("it maps ")) +
          input + " to " + what + " (" + formula() + "); check " + culprits(spec_) +
          (half ? ", or use --dtype float32" : ""));
}

void Normalizer::check_finite_outputs() const {
  const int nc = channels_;
  const DType dtype = format_.dtype;
  auto check = [&](int c, double x, double v, const char* x_name = "x") {
    if (!std::isfinite(as_output(v, dtype)))
      refuse_non_finite(c, std::string(x_name) + " = " + fmt_double(x), v);
  };
  const Mode mode = spec_.mode;
  if (is_full_image(mode)) {
    // y_i = Σ_j W[i][j]·(x_j − μ_j), x in 0–1 units: |y_i| ≤ Σ_j |W[i][j]|·max(μ_j, 1 − μ_j).
    const std::size_t dims = spec_.pixel_mean.size();
    for (std::size_t i = 0; i < whitening_.size() / dims; ++i) {
      double bound = 0;
      for (std::size_t j = 0; j < dims; ++j) {
        const double m = spec_.pixel_mean[j] / 255.0;
        bound += std::fabs(whitening_[i * dims + j]) * std::max(m, 1.0 - m);
      }
      if (!std::isfinite(as_output(bound, dtype)))
        refuse_non_finite(static_cast<int>(i % static_cast<std::size_t>(nc)),
                          "the image farthest from the mean", bound);
    }
    return;
  }
  if (mode == Mode::zca_patch) {
    // y_c = Σ_j F[c][j]·(x_j − μ_j) over the patch positions inside the image: |y_c| is at most
    // Σ_j |F[c][j]|·max(μ_j, 255 − μ_j), reached when every position is inside.
    const std::size_t dims = spec_.patch_mean.size();
    for (int c = 0; c < nc; ++c) {
      double bound = 0;
      for (std::size_t j = 0; j < dims; ++j)
        bound += std::fabs(patch_filter_[c * dims + j]) *
                 std::max(spec_.patch_mean[j], 255.0 - spec_.patch_mean[j]);
      if (!std::isfinite(as_output(bound, dtype)))
        refuse_non_finite(c, "the patch farthest from the mean", bound);
    }
    return;
  }
  if (mode == Mode::mean_image) {
    // y = t + g·((x/d − m)/s) is monotonic in x and in m: the extremes are at x ∈ {0, 255} and the
    // smallest and largest m of each channel.
    for (int c = 0; c < nc; ++c) {
      double lo = INFINITY, hi = -INFINITY;
      for (std::size_t i = c; i < mean_scaled_.size(); i += nc) {
        lo = std::min(lo, mean_scaled_[i]);
        hi = std::max(hi, mean_scaled_[i]);
      }
      const ChannelMap& f = fixed_.ch[c];
      for (double x : {0.0, 255.0})
        for (double m : {lo, hi}) check(c, x, f.t + f.g * ((x / f.d - m) / f.s));
    }
    return;
  }
  if (mode == Mode::minmax) {
    // lo + (hi − lo)·r with r = (x − min)/(max − min) in [0, 1] (a constant channel gives lo).
    const double lo = spec_.range ? spec_.range->first : 0.0;
    const double hi = spec_.range ? spec_.range->second : 1.0;
    const ChannelMap f{1.0, 0.0, 1.0, hi - lo, lo};
    for (double r : {0.0, 1.0}) check(-1, r, f(r), "(x - min) / (max - min)");
    return;
  }
  if (is_per_image(mode)) return;  // the moments' modes depend on the size: check_image_size()
  if (matrix_.empty()) {
    // The tables hold every output value, exactly as the kernels write them.
    for (int c = 0; c < nc; ++c)
      for (int x = 0; x < 256; ++x) {
        const double v = dtype == DType::float32 ? static_cast<double>(table_->f32[c][x])
                                                 : detail::half_to_float(table_->f16[c][x]);
        if (!std::isfinite(v)) refuse_non_finite(c, "x = " + std::to_string(x), fixed_.ch[c](x));
      }
    return;
  }
  // A channel-mixing map is affine in the pixel: its extremes over the cube [0, 255]^C are at the
  // corners, evaluated as detail::apply_linear does.
  for (int corner = 0; corner < (1 << nc); ++corner) {
    double px[3], z[3];
    for (int c = 0; c < nc; ++c) {
      px[c] = (corner >> c) & 1 ? 255.0 : 0.0;
      const ChannelMap& f = fixed_.ch[c];
      z[c] = (px[c] / f.d - f.m) / f.s;
    }
    for (int k = 0; k < nc; ++k) {
      double acc = 0;
      for (int j = 0; j < nc; ++j) acc += matrix_[k * nc + j] * z[j];
      const double v = fixed_.ch[k].t + fixed_.ch[k].g * acc;
      if (!std::isfinite(as_output(v, dtype))) {
        std::string at = "pixel (";
        for (int c = 0; c < nc; ++c) at += (c ? ", " : "") + fmt_double(px[c]);
        refuse_non_finite(k, at + ")", v);
      }
    }
  }
}

void Normalizer::check_image_size(Size size) const {
  const Mode mode = spec_.mode;
  if (mode != Mode::per_image && mode != Mode::per_image_channel) return;
  // |x − μ| / σ ≤ √(n − 1) over the n values of a population (one value apart from all others
  // reaches it); when σ is below the floor 1/√n the divisor is the floor and |y| stays below
  // √(n − 1) too (in either unit).
  const double n = static_cast<double>(size.width) * static_cast<double>(size.height) *
                   (mode == Mode::per_image ? channels_ : 1);
  const double bound = std::sqrt(std::max(n - 1, 0.0));
  if (!std::isfinite(as_output(bound, format_.dtype)))
    refuse_non_finite(-1,
                      "an image of " + std::to_string(size.width) + "x" +
                          std::to_string(size.height) + " with one pixel apart from the others",
                      bound);
}

PixelMap Normalizer::pixel_map() const { return {fixed_, matrix_}; }

void Normalizer::init_patch() {
  const int nc = channels_;
  const int k = spec_.patch ? spec_.patch : kDefaultPatch;
  if (k < 1 || k > Accumulator::kMaxPatch || k % 2 == 0)
    invalid("--patch " + std::to_string(k) + ": the patch side must be odd, 1 to " +
            std::to_string(Accumulator::kMaxPatch));
  spec_.patch = k;
  const std::size_t dims = static_cast<std::size_t>(k * k * nc);
  if (spec_.patch_mean.size() != dims || spec_.patch_covariance.size() != dims * dims)
    invalid("zca-patch --patch " + std::to_string(k) + " needs the " + std::to_string(k) + "x" +
            std::to_string(k) + " patch moments of the statistics (" + std::to_string(dims) +
            " means, a " + std::to_string(dims) + "x" + std::to_string(dims) + " covariance)");
  check_finite(spec_.patch_mean, "patch mean");
  check_finite(spec_.patch_covariance, "patch covariance");
  if (!spec_.matrix.empty()) invalid("a channel matrix does not apply to mode zca-patch");
  const double eps = (spec_.eps ? *spec_.eps : kDefaultWhiteningEps) * 255.0 * 255.0;
  std::vector<double> values, vectors;
  symmetric_eigen(spec_.patch_covariance, static_cast<int>(dims), values, vectors);
  for (std::size_t i = 0; i < dims; ++i)
    if (!(values[i] + eps > 0))
      invalid("the patch covariance is singular (eigenvalue " + std::to_string(i) + " is " +
              std::to_string(values[i]) + "); pass --eps");
  // Only the rows of W_patch = U·diag(1/√(λ+ε))·Uᵀ for the centre pixel's channels are used.
  const std::size_t centre = static_cast<std::size_t>(((k / 2) * k + k / 2) * nc);
  patch_filter_.assign(static_cast<std::size_t>(nc) * dims, 0.0);
  for (int c = 0; c < nc; ++c)
    for (std::size_t j = 0; j < dims; ++j) {
      double w = 0;
      for (std::size_t i = 0; i < dims; ++i)
        w += vectors[(centre + c) * dims + i] / std::sqrt(values[i] + eps) * vectors[j * dims + i];
      patch_filter_[c * dims + j] = w;
    }
}

// zca, pca with TransformSpec::whitening: the matrix of another process (its rows checked
// against μ and --components), no decomposition.
void Normalizer::init_full_given() {
  const std::size_t dims = spec_.pixel_mean.size();
  const std::size_t rows = spec_.mode == Mode::pca && spec_.components != 0
                               ? static_cast<std::size_t>(spec_.components)
                               : dims;
  if (dims == 0 || dims % static_cast<std::size_t>(channels_) != 0 ||
      spec_.whitening.size() != rows * dims)
    invalid(std::string("--mode ") + to_string(spec_.mode) + ": a given whitening matrix of " +
            std::to_string(spec_.whitening.size()) + " values, not the " + std::to_string(rows) +
            " x D = " + std::to_string(dims) + " the per-pixel mean and --components give");
  check_finite(spec_.pixel_mean, "pixel mean");
  check_finite(spec_.whitening, "whitening matrix");
  if (!spec_.matrix.empty())
    invalid(std::string("a channel matrix does not apply to mode ") + to_string(spec_.mode));
  whitening_ = std::move(spec_.whitening);
  spec_.whitening.clear();
  kernel_ = std::make_shared<const detail::WhiteningKernel>(whitening_.data(), rows, dims);
}

void Normalizer::init_full() {
  const std::size_t dims = spec_.pixel_mean.size();
  if (dims == 0 || dims % static_cast<std::size_t>(channels_) != 0 ||
      spec_.pixel_covariance.size() != dims * dims)
    invalid(std::string("--mode ") + to_string(spec_.mode) +
            " needs the per-pixel mean and the D x D pixel covariance of the statistics "
            "(imgnorm stats --pixel-covariance)");
  check_finite(spec_.pixel_mean, "pixel mean");
  check_finite(spec_.pixel_covariance, "pixel covariance");
  if (!spec_.matrix.empty())
    invalid(std::string("a channel matrix does not apply to mode ") + to_string(spec_.mode));
  const bool pca = spec_.mode == Mode::pca;
  const std::size_t rows =
      pca && spec_.components != 0 ? static_cast<std::size_t>(spec_.components) : dims;
  if (pca && (spec_.components < 0 || rows > dims))
    invalid("--components " + std::to_string(spec_.components) +
            ": between 1 and D = " + std::to_string(dims) + " (the values per image)");
  // In 0–1 units: Σ₁ = Σ/255², W₁ = U·diag(1/√(λ₁+ε))·Uᵀ. One LAPACK thread: the same bits on
  // every machine setting. The covariance is decomposed in its own storage and gone afterwards
  // (full_fit_bytes counts this sequence: docs/design.md, "Memory and eigen-solver of the
  // full-image fit").
  const double eps = spec_.eps ? *spec_.eps : kDefaultWhiteningEps;
  std::vector<double> cov = std::move(spec_.pixel_covariance);
  spec_.pixel_covariance = {};
  for (double& v : cov) v /= 255.0 * 255.0;
  std::vector<double> values, vectors;  // vectors: rows = eigenvectors, descending
  symmetric_eigen_top(cov, static_cast<int>(dims), static_cast<int>(rows), values, vectors, 1);
  for (std::size_t k = 0; k < rows; ++k)
    if ((!pca || spec_.whiten) && !(values[k] + eps > 0))
      invalid("the pixel covariance is singular (eigenvalue " + std::to_string(k) + " is " +
              std::to_string(values[k]) + " in 0-1 units); pass --eps" +
              (pca ? " or fewer --components" : ""));
  if (pca) {
    // Row k: component k, divided by √(λ_k+ε) when whitening; in place.
    if (spec_.whiten)
      for (std::size_t k = 0; k < rows; ++k) {
        const double s = 1.0 / std::sqrt(values[k] + eps);
        for (std::size_t j = 0; j < dims; ++j) vectors[k * dims + j] *= s;
      }
    whitening_ = std::move(vectors);
    kernel_ = std::make_shared<const detail::WhiteningKernel>(whitening_.data(), rows, dims);
    return;
  }
  // W = Bᵀ·B with B's row k = u_kᵀ·(λ_k+ε)^(−¼) (scaled in place): one dsyrk, the upper triangle
  // mirrored, so W is exactly symmetric; U's storage is the only D×D matrix besides W.
  for (std::size_t k = 0; k < dims; ++k) {
    const double s = 1.0 / std::sqrt(std::sqrt(values[k] + eps));
    for (std::size_t j = 0; j < dims; ++j) vectors[k * dims + j] *= s;
  }
  whitening_.assign(dims * dims, 0.0);
  const int n = static_cast<int>(dims);
  {
    detail::BlasThreads serial(1);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, n, 1.0, vectors.data(), n, 0.0,
                whitening_.data(), n);
  }
  std::vector<double>().swap(vectors);
  for (std::size_t i = 0; i < dims; ++i)
    for (std::size_t j = 0; j < i; ++j) whitening_[i * dims + j] = whitening_[j * dims + i];
  kernel_ = std::make_shared<const detail::WhiteningKernel>(whitening_.data(), dims, dims);
}

// Full-image ZCA and PCA: z = x/255 − μ/255 (D values, HWC, input order), y = W·z by the
// whitening kernel (src/whitening_kernel.hpp: one fixed fma sequence per output, the same bits
// alone or in any batch), then stored in the output layout, channel order and dtype.
template <typename Get>
void Normalizer::centre_full(Get get, int width, int height, double* z) const {
  const int nc = channels_;
  const std::size_t dims = spec_.pixel_mean.size();
  const std::size_t w = static_cast<std::size_t>(width), h = static_cast<std::size_t>(height);
  if (w * h * static_cast<std::size_t>(nc) != dims)
    invalid("image is " + std::to_string(width) + "x" + std::to_string(height) + "x" +
            std::to_string(nc) + " = " + std::to_string(w * h * nc) +
            " values, but the whitening matrix of --mode " + to_string(spec_.mode) + " is for " +
            std::to_string(dims));
  // The same D is not enough: 6x8 is not the 8x6 the statistics are about.
  const Size ps = spec_.pixel_size;
  if (ps.width > 0 && (ps.width != width || ps.height != height))
    invalid("image is " + std::to_string(width) + "x" + std::to_string(height) +
            ", but the whitening matrix of --mode " + to_string(spec_.mode) + " is for " +
            std::to_string(ps.width) + "x" + std::to_string(ps.height) +
            " images (the size of the statistics)");
  for (int yy = 0; yy < height; ++yy)
    for (int xx = 0; xx < width; ++xx)
      for (int c = 0; c < nc; ++c) {
        const std::size_t j = (static_cast<std::size_t>(yy) * w + xx) * nc + c;
        z[j] = get(yy, xx, c) / 255.0 - spec_.pixel_mean[j] / 255.0;
      }
}

void Normalizer::store_full(const double* y, int width, int height, void* out) const {
  const int nc = channels_;
  const std::size_t w = static_cast<std::size_t>(width), h = static_cast<std::size_t>(height);
  if (spec_.mode == Mode::pca) {  // K values, in component order
    const std::size_t rows = kernel_->rows();
    for (std::size_t k = 0; k < rows; ++k) {
      if (format_.dtype == DType::float32)
        static_cast<float*>(out)[k] = static_cast<float>(y[k]);
      else
        static_cast<std::uint16_t*>(out)[k] = detail::double_to_half(y[k]);
    }
    return;
  }
  for (int yy = 0; yy < height; ++yy)
    for (int xx = 0; xx < width; ++xx)
      for (int o = 0; o < nc; ++o) {
        const int ic = nc == 3 ? perm(swap_rb_, o) : o;
        const double v = y[(static_cast<std::size_t>(yy) * w + xx) * nc + ic];
        const std::size_t oi = out_index(format_.layout, nc, w, h, xx, yy, o);
        if (format_.dtype == DType::float32)
          static_cast<float*>(out)[oi] = static_cast<float>(v);
        else
          static_cast<std::uint16_t*>(out)[oi] = detail::double_to_half(v);
      }
}

// One image: a batch of one on the calling thread (the batched paths give the same bits).
template <typename Get>
void Normalizer::apply_full(Get get, int width, int height, void* out) const {
  const std::size_t dims = kernel_->dims();
  std::vector<double> z(dims), zp(detail::WhiteningKernel::packed_size(1, dims)),
      y(kernel_->stride());
  centre_full(get, width, height, z.data());
  detail::WhiteningKernel::pack_row(z.data(), 0, dims, zp.data());
  kernel_->run(zp.data(), 1, y.data());
  store_full(y.data(), width, height, out);
}

namespace detail {

const WhiteningKernel& FullImageAccess::kernel(const Normalizer& n) {
  if (!n.kernel_)
    invalid(std::string("mode ") + to_string(n.spec_.mode) + " has no whitening matrix");
  return *n.kernel_;
}

void FullImageAccess::centre(const Normalizer& n, const ImageView& img, double* z) {
  if (img.channels != n.channels_)
    invalid("image has " + std::to_string(img.channels) + " channels, expected " +
            std::to_string(n.channels_));
  n.centre_full(
      [&](int y, int x, int c) {
        return static_cast<double>(img.row(y)[static_cast<std::size_t>(x) * n.channels_ + c]);
      },
      img.width, img.height, z);
}

void FullImageAccess::centre_values(const Normalizer& n, const double* values, int width,
                                    int height, double* z) {
  const std::size_t w = static_cast<std::size_t>(width);
  const int nc = n.channels_;
  for (std::size_t i = 0; i < w * static_cast<std::size_t>(height) * nc; ++i)
    if (!std::isfinite(values[i]))
      invalid("input value " + std::to_string(values[i]) + " is not finite");
  n.centre_full([&](int y, int x, int c) { return values[(y * w + x) * nc + c]; }, width, height,
                z);
}

void FullImageAccess::store(const Normalizer& n, const double* y, int width, int height,
                            void* out) {
  n.store_full(y, width, height, out);
}

}  // namespace detail

// The K×K×C → C convolution of zca_patch: get(y, x, c) is the input value (0–255). Each output is
// Σ_j F[c][j]·(x_j − μ_j) over the patch dimensions j = (dy, dx, c') inside the image, in that
// order, in double, rounded once to the output type.
template <typename Get>
void Normalizer::apply_patch(Get get, int width, int height, void* out) const {
  const int nc = channels_;
  const int k = spec_.patch, r = k / 2;
  if (width < k || height < k)
    invalid("image is " + std::to_string(width) + "x" + std::to_string(height) +
            ", smaller than the " + std::to_string(k) + "x" + std::to_string(k) +
            " patch of --mode zca-patch");
  const std::size_t dims = spec_.patch_mean.size();
  const std::size_t w = static_cast<std::size_t>(width), h = static_cast<std::size_t>(height);
  std::vector<double> z(dims);
  std::vector<unsigned char> inside(dims);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      for (int dy = 0; dy < k; ++dy)
        for (int dx = 0; dx < k; ++dx) {
          const int yy = y + dy - r, xx = x + dx - r;
          const bool in = yy >= 0 && yy < height && xx >= 0 && xx < width;
          for (int c = 0; c < nc; ++c) {
            const std::size_t j = static_cast<std::size_t>((dy * k + dx) * nc + c);
            z[j] = in ? get(yy, xx, c) - spec_.patch_mean[j] : 0.0;
            inside[j] = in;
          }
        }
      for (int o = 0; o < nc; ++o) {
        const int ic = nc == 3 ? perm(swap_rb_, o) : o;
        const double* f = patch_filter_.data() + static_cast<std::size_t>(ic) * dims;
        double acc = 0;
        for (std::size_t j = 0; j < dims; ++j)
          if (inside[j]) acc += f[j] * z[j];
        const std::size_t oi = out_index(format_.layout, nc, w, h, x, y, o);
        if (format_.dtype == DType::float32)
          static_cast<float*>(out)[oi] = static_cast<float>(acc);
        else
          static_cast<std::uint16_t*>(out)[oi] = detail::double_to_half(acc);
      }
    }
}

Affine Normalizer::apply_per_image(const ImageView& img, void* out, int* constant) const {
  if (!is_per_image(spec_.mode)) {
    *constant = apply(img, out);
    return fixed_;
  }
  Affine a = affine_for(img, constant);
  imgnorm::apply(img, make_table(a), swap_rb_, format_.layout, format_.dtype, out);
  return a;
}

Affine Normalizer::affine_for(const ImageView& img, int* constant) const {
  if (constant) *constant = 0;
  const Mode mode = spec_.mode;
  if (!is_per_image(mode)) return fixed_;
  ImageMoments mo = image_moments(img);
  Affine a;
  a.channels = mo.channels;
  const double d = spec_.unit == 1 ? 255.0 : 1.0;
  int flat = 0;
  if (mode == Mode::minmax) {
    const double lo = spec_.range ? spec_.range->first : 0.0;
    const double hi = spec_.range ? spec_.range->second : 1.0;
    for (int c = 0; c < mo.channels; ++c) {
      if (mo.max[c] == mo.min[c]) {
        // Constant channel: every value maps to lo; m keeps the value, so invert() recovers it.
        a.ch[c] = {1.0, double(mo.min[c]), 1.0, 0.0, lo};
        ++flat;
      } else {
        a.ch[c] = {1.0, double(mo.min[c]), double(mo.max[c] - mo.min[c]), hi - lo, lo};
      }
    }
  } else {
    // Moments over all channels (per_image) or per channel, from exact integer sums.
    auto set = [&](unsigned __int128 n, unsigned __int128 s, unsigned __int128 q, int c0, int c1,
                   bool is_flat) {
      double nd = static_cast<double>(n);
      double mean = static_cast<double>(s) / nd;
      double var = static_cast<double>(n * q - s * s) / nd / nd;
      double sd = std::sqrt(var) / d;
      double floor = 1.0 / std::sqrt(nd);
      for (int c = c0; c < c1; ++c) a.ch[c] = {d, mean / d, std::max(sd, floor), 1.0, 0.0};
      if (is_flat) flat += c1 - c0;
    };
    if (mode == Mode::per_image) {
      unsigned __int128 s = 0, q = 0;
      bool is_flat = true;
      for (int c = 0; c < mo.channels; ++c) {
        s += mo.sum[c];
        q += mo.sum_sq[c];
        is_flat = is_flat && mo.min[c] == mo.max[c] && mo.min[c] == mo.min[0];
      }
      set(static_cast<unsigned __int128>(mo.n) * mo.channels, s, q, 0, mo.channels, is_flat);
    } else {
      for (int c = 0; c < mo.channels; ++c)
        set(mo.n, mo.sum[c], mo.sum_sq[c], c, c + 1, mo.min[c] == mo.max[c]);
    }
  }
  if (constant) *constant = flat;
  return a;
}

int Normalizer::apply(const ImageView& img, void* out) const {
  if (img.channels != channels_)
    invalid("image has " + std::to_string(img.channels) + " channels, expected " +
            std::to_string(channels_));
  if (img.empty()) return 0;
  if (is_full_image(spec_.mode)) {
    apply_full(
        [&](int y, int x, int c) {
          return static_cast<double>(img.row(y)[static_cast<std::size_t>(x) * channels_ + c]);
        },
        img.width, img.height, out);
    return 0;
  }
  if (spec_.mode == Mode::zca_patch) {
    apply_patch(
        [&](int y, int x, int c) {
          return static_cast<double>(img.row(y)[static_cast<std::size_t>(x) * channels_ + c]);
        },
        img.width, img.height, out);
    return 0;
  }
  if (spec_.mode == Mode::mean_image) {
    if (img.width != spec_.mean_image_size.width || img.height != spec_.mean_image_size.height)
      invalid("image is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
              " but the mean image is " + std::to_string(spec_.mean_image_size.width) + "x" +
              std::to_string(spec_.mean_image_size.height));
    detail::apply_mean_image(img, fixed_, mean_scaled_.data(), swap_rb_, format_.layout,
                             format_.dtype, out);
    return 0;
  }
  if (!matrix_.empty()) {
    detail::apply_linear(img, pixel_map(), swap_rb_, format_.layout, format_.dtype, out);
    return 0;
  }
  if (!is_per_image(spec_.mode)) {
    imgnorm::apply(img, *table_, swap_rb_, format_.layout, format_.dtype, out);
    return 0;
  }
  int constant = 0;
  Affine a = affine_for(img, &constant);
  Table t = make_table(a);
  imgnorm::apply(img, t, swap_rb_, format_.layout, format_.dtype, out);
  return constant;
}

int Normalizer::apply_values(const double* values, int width, int height, void* out,
                             Affine* used) const {
  const int nc = channels_;
  const std::size_t w = static_cast<std::size_t>(width), h = static_cast<std::size_t>(height);
  const std::size_t pixels = w * h;
  const Mode mode = spec_.mode;
  if (mode == Mode::mean_image &&
      (width != spec_.mean_image_size.width || height != spec_.mean_image_size.height))
    invalid("image is " + std::to_string(width) + "x" + std::to_string(height) +
            " but the mean image is " + std::to_string(spec_.mean_image_size.width) + "x" +
            std::to_string(spec_.mean_image_size.height));
  std::array<long double, 3> sum{}, sq{};
  std::array<double, 3> lo{INFINITY, INFINITY, INFINITY}, hi{-INFINITY, -INFINITY, -INFINITY};
  for (std::size_t i = 0; i < pixels * nc; ++i) {
    const double x = values[i];
    if (!std::isfinite(x)) invalid("input value " + std::to_string(x) + " is not finite");
    const int c = static_cast<int>(i % nc);
    sum[c] += x;
    sq[c] += static_cast<long double>(x) * x;
    lo[c] = std::min(lo[c], x);
    hi[c] = std::max(hi[c], x);
  }
  if (is_full_image(mode)) {
    apply_full([&](int y, int x, int c) { return values[(y * w + x) * nc + c]; }, width, height,
               out);
    if (used) *used = fixed_;
    return 0;
  }
  if (mode == Mode::zca_patch) {
    apply_patch([&](int y, int x, int c) { return values[(y * w + x) * nc + c]; }, width, height,
                out);
    if (used) *used = fixed_;
    return 0;
  }
  Affine a = fixed_;
  int flat = 0;
  if (is_per_image(mode)) {
    a.channels = nc;
    const double d = spec_.unit == 1 ? 255.0 : 1.0;
    if (mode == Mode::minmax) {
      const double rlo = spec_.range ? spec_.range->first : 0.0;
      const double rhi = spec_.range ? spec_.range->second : 1.0;
      for (int c = 0; c < nc; ++c) {
        if (hi[c] == lo[c]) {
          a.ch[c] = {1.0, lo[c], 1.0, 0.0, rlo};
          ++flat;
        } else {
          a.ch[c] = {1.0, lo[c], hi[c] - lo[c], rhi - rlo, rlo};
        }
      }
    } else {
      // Moments in long double; the variance is clamped at 0 against cancellation.
      auto set = [&](long double n, long double s, long double q, int c0, int c1, bool is_flat) {
        const double mean = static_cast<double>(s / n);
        const double var = static_cast<double>(std::max<long double>(q / n - (s / n) * (s / n), 0));
        const double sd = is_flat ? 0.0 : std::sqrt(var) / d;
        const double floor = 1.0 / std::sqrt(static_cast<double>(n));
        for (int c = c0; c < c1; ++c) a.ch[c] = {d, mean / d, std::max(sd, floor), 1.0, 0.0};
        if (is_flat) flat += c1 - c0;
      };
      if (mode == Mode::per_image) {
        long double s = 0, q = 0;
        bool is_flat = true;
        for (int c = 0; c < nc; ++c) {
          s += sum[c];
          q += sq[c];
          is_flat = is_flat && lo[c] == hi[c] && lo[c] == lo[0];
        }
        set(static_cast<long double>(pixels) * nc, s, q, 0, nc, is_flat);
      } else {
        for (int c = 0; c < nc; ++c)
          set(static_cast<long double>(pixels), sum[c], sq[c], c, c + 1, lo[c] == hi[c]);
      }
    }
  }
  for (std::size_t y = 0; y < h; ++y)
    for (std::size_t x = 0; x < w; ++x)
      for (int k = 0; k < nc; ++k) {
        const int ic = nc == 3 ? perm(swap_rb_, k) : k;
        const std::size_t i = (y * w + x) * nc + ic;
        ChannelMap f = a.ch[ic];
        if (mode == Mode::mean_image) f.m = mean_scaled_[i];
        double v = f(values[i]);
        if (!matrix_.empty()) {  // the same order of operations as detail::apply_linear
          double acc = 0;
          for (int j = 0; j < nc; ++j) {
            const ChannelMap& g = a.ch[j];
            acc += matrix_[ic * nc + j] * ((values[(y * w + x) * nc + j] / g.d - g.m) / g.s);
          }
          v = f.t + f.g * acc;
        }
        const std::size_t o =
            out_index(format_.layout, nc, w, h, static_cast<int>(x), static_cast<int>(y), k);
        if (format_.dtype == DType::float32)
          static_cast<float*>(out)[o] = static_cast<float>(v);
        else
          static_cast<std::uint16_t*>(out)[o] = detail::double_to_half(v);
      }
  if (used) *used = a;
  return flat;
}

std::string Normalizer::formula() const {
  const bool u1 = spec_.unit == 1;
  switch (spec_.mode) {
    case Mode::scale:
      return "y = lo + (hi - lo) * (x / 255)";
    case Mode::center:
      return u1 ? "y = x / 255 - mean_c / 255" : "y = x - mean_c";
    case Mode::standardize:
      return u1 ? "y = (x / 255 - mean_c / 255) / (std_c / 255)" : "y = (x - mean_c) / std_c";
    case Mode::mean_image: {
      std::string m = u1 ? "(x / 255 - M[h,w,c] / 255)" : "(x - M[h,w,c])";
      if (!spec_.mean_image_std) return "y = " + m;
      return "y = " + m + (u1 ? " / (std_c / 255)" : " / std_c");
    }
    case Mode::minmax:
      return "y = lo + (hi - lo) * ((x - min_c) / (max_c - min_c)), min/max of this image; "
             "lo for a constant channel";
    case Mode::minmax_dataset:
      return u1 ? "y = lo + (hi - lo) * ((x / 255 - min_c / 255) / (max_c / 255 - min_c / 255))"
                : "y = lo + (hi - lo) * ((x - min_c) / (max_c - min_c))";
    case Mode::per_image:
      return u1 ? "y = (x / 255 - mean / 255) / max(std / 255, 1 / sqrt(H * W * C)), "
                  "mean/std over this image"
                : "y = (x - mean) / max(std, 1 / sqrt(H * W * C)), mean/std over this image";
    case Mode::per_image_channel:
      return u1 ? "y = (x / 255 - mean_c / 255) / max(std_c / 255, 1 / sqrt(H * W)), "
                  "mean_c/std_c over this image"
                : "y = (x - mean_c) / max(std_c, 1 / sqrt(H * W)), mean_c/std_c over this image";
    case Mode::imagenet:
    case Mode::clip:
      return "y = (x / 255 - mean_c) / std_c";
    case Mode::caffe:
      return "y = x - mean_c";
    case Mode::inception:
      return "y = x / 127.5 - 1";
    case Mode::custom:
      return u1 ? "y = (x / 255 - mean_c) / std_c" : "y = (x - mean_c) / std_c";
    case Mode::zca_channels:
      return "y = U diag(1 / sqrt(lambda + eps)) U^T (x - mean), per pixel (channel ZCA; U, "
             "lambda of the channel covariance, eps in 0-1 units)";
    case Mode::pca_channels:
      return "y = diag(1 / sqrt(lambda + eps)) U^T (x - mean), per pixel (channel k = principal "
             "component k, by variance; eps in 0-1 units)";
    case Mode::zca_patch:
      return "y[h,w,c] = sum over the " + std::to_string(spec_.patch) + "x" +
             std::to_string(spec_.patch) +
             " patch around (h,w), positions inside the image, of W[(centre,c),(o,c')] * "
             "(x[(h,w)+o,c'] - mean[o,c']); W = U diag(1 / sqrt(lambda + eps)) U^T of the patch "
             "covariance (patch ZCA; eps in 0-1 units)";
    case Mode::zca:
      return "y = W (x / 255 - mean / 255) over the H*W*C values of the image; W = U diag(1 / "
             "sqrt(lambda + eps)) U^T of the pixel covariance in 0-1 units (full-image ZCA; W "
             "and mean in whitening.npy)";
    case Mode::pca:
      return std::string("y_k = ") +
             (spec_.whiten ? "u_k^T (x / 255 - mean / 255) / sqrt(lambda_k + eps)"
                           : "u_k^T (x / 255 - mean / 255)") +
             ", k = 1.." +
             std::to_string(whitening_.size() / std::max<std::size_t>(spec_.pixel_mean.size(), 1)) +
             ": the principal components of the pixel covariance in 0-1 units, by variance "
             "(full-image PCA; the rows and the mean in whitening.npy)";
  }
  return "";
}

}  // namespace imgnorm
