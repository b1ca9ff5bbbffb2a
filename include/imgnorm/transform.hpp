#pragma once
/// \file transform.hpp
/// Normalization of u8 images into float32/float16 tensors. Every mode is, per image and channel,
///
///     y = t + g · ((x / d − m) / s)          (x the u8 value, 0–255; each step in double)
///
/// rounded once to the output type; mean-image mode uses a per-pixel m. The exact parameters of
/// each mode are in docs/normalize.md. For u8 input each channel's map is a 256-entry table, so the
/// fast kernel gives the same bits as evaluating the formula in double and rounding once.
///
///     imgnorm::TransformSpec spec;
///     spec.mode = imgnorm::Mode::standardize;
///     spec.mean = {124.0, 116.8, 104.1};  // dataset stats, 0–255 units, input channel order
///     spec.std = {58.4, 57.1, 57.4};
///     imgnorm::Normalizer norm(spec, imgnorm::ChannelOrder::rgb, {});
///     int constant = norm.apply(image.view(), slot);  // slot: H·W·C floats

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "imgnorm/dtype.hpp"
#include "imgnorm/export.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/recipe.hpp"

namespace imgnorm {

/// Memory order of one output image: NHWC (channels last, as numpy/cv2/TF) or NCHW (planes, as
/// PyTorch).
enum class Layout { nhwc, nchw };

/// How pixel values are mapped. Dataset constants (mean, std, min, max, mean image) are in 0–255
/// units, as in stats.json.
enum class Mode {
  scale,              ///< lo + (hi − lo) · x/255; default range [0, 1]
  center,             ///< x − mean_c (unit 255) or x/255 − mean_c/255 (unit 1)
  standardize,        ///< (x − mean_c) / std_c in the chosen unit
  mean_image,         ///< x − M[h,w,c] (optionally / std_c) in the chosen unit
  minmax,             ///< per image and channel: lo + (hi − lo) · (x − min)/(max − min)
  minmax_dataset,     ///< the same with the dataset's min and max
  per_image,          ///< tf.image.per_image_standardization: (x − μ) / max(σ, 1/√(H·W·C))
  per_image_channel,  ///< per channel: (x − μ_c) / max(σ_c, 1/√(H·W))
  imagenet,           ///< (x/255 − m) / s, torchvision's ImageNet mean/std (RGB)
  caffe,              ///< x − m, Caffe/Keras BGR means 103.939, 116.779, 123.68
  inception,          ///< x/127.5 − 1 (Keras "tf" mode)
  clip,               ///< (x/255 − m) / s, OpenAI CLIP's mean/std (RGB)
  custom,             ///< (x − mean_c) / std_c with user constants in the chosen unit
  zca_channels,  ///< y = U·diag(1/√(λ+ε))·Uᵀ·(x − μ) per pixel: channels decorrelated
  pca_channels,  ///< y = diag(1/√(λ+ε))·Uᵀ·(x − μ): the principal components, by variance
  /// Patch (convolutional) ZCA: y[h,w,c] = Σ W_patch[(centre,c),(o,c')]·(x[(h,w)+o,c'] − μ[o,c'])
  /// over the K×K patch around (h, w), positions outside the image contributing 0; W_patch =
  /// U·diag(1/√(λ+ε))·Uᵀ of the K²C×K²C patch covariance. docs/whitening.md.
  zca_patch,
  /// Full-image ZCA: y = W·(x − μ) over the D = H·W·C values of the image, W =
  /// U·diag(1/√(λ+ε))·Uᵀ of the D×D pixel covariance (`stats --pixel-covariance`), μ the
  /// per-pixel mean. Output shape unchanged. docs/whitening.md.
  zca,
  /// Full-image PCA: y = diag(1/√(λ_k+ε))·U_Kᵀ·(x − μ), the first K principal components of the
  /// D×D pixel covariance (`components`, default all D), whitened unless `whiten` is false. The
  /// output of an image is K values (shape N×K).
  pca,
};

/// The modes of the whole-image pixel covariance: zca and pca.
inline bool is_full_image(Mode m) noexcept { return m == Mode::zca || m == Mode::pca; }

/// K of zca_patch when TransformSpec::patch is 0.
inline constexpr int kDefaultPatch = 3;

/// ε of the whitening modes when TransformSpec::eps is unset, in 0–1 units (added to the
/// eigenvalues of the covariance of x/255).
inline constexpr double kDefaultWhiteningEps = 1e-5;

IMGNORM_API const char* to_string(Layout v) noexcept;
/// Mode names as the CLI spells them: "scale", "mean-image", "per-image-channel", "imagenet", ...
IMGNORM_API const char* to_string(Mode v) noexcept;
/// Parsers for the names above; '_' is accepted for '-'. Throw Error(invalid_argument).
IMGNORM_API Layout parse_layout(const std::string& s);
IMGNORM_API Mode parse_mode(const std::string& s);

/// True for modes whose map depends on the image itself (minmax, per_image, per_image_channel).
IMGNORM_API bool is_per_image(Mode mode) noexcept;
/// The channel order a preset's network expects: bgr for caffe, rgb for imagenet, inception and
/// clip; nullopt for the other modes. A caller's default for --channels.
IMGNORM_API std::optional<ChannelOrder> preset_channel_order(Mode mode) noexcept;

struct TransformSpec;
/// True when the spec's mode needs the dataset statistics (mean/std, min/max): center,
/// standardize, minmax_dataset, and mean_image with mean_image_std.
IMGNORM_API bool needs_dataset_stats(const TransformSpec& spec) noexcept;

/// Everything a mode needs besides the pixels.
struct TransformSpec {
  Mode mode = Mode::scale;
  /// Output range [lo, hi] of scale, minmax, minmax_dataset; default [0, 1]. Other modes refuse it.
  std::optional<std::pair<double, double>> range;
  /// Unit of the formula for center, standardize, mean_image, minmax_dataset, per_image,
  /// per_image_channel and custom: 255 (x in 0–255) or 1 (x/255, constants / 255). Other modes have
  /// fixed formulas and ignore it.
  int unit = 255;
  /// Dataset per-channel mean and std (standardize, center, mean_image with mean_image_std) in
  /// 0–255 units, input channel order. For custom: the user's constants in the chosen unit and in
  /// the *output* channel order (the order of the tensor); custom std defaults to 1.
  std::vector<double> mean, std;
  /// Dataset per-channel min and max (minmax_dataset), 0–255 units, input channel order.
  std::vector<double> min, max;
  /// Dataset mean image (mean_image): H×W×C row-major, 0–255 units, input channel order.
  std::vector<double> mean_image;
  Size mean_image_size{};
  /// mean_image: also divide by the dataset std of the channel.
  bool mean_image_std = false;
  /// Floor for a dataset std (or max − min) in the chosen unit; without it a zero is an error.
  /// For zca_channels and pca_channels: the regularizer ε added to every eigenvalue, in 0–1
  /// units whatever `unit` is (default kDefaultWhiteningEps; 0 allowed for a regular covariance).
  std::optional<double> eps;
  /// zca_channels, pca_channels: the dataset's C×C channel covariance (row-major, 0–255 units,
  /// input channel order, as Summary::covariance); `mean` gives μ. The output does not depend on
  /// `unit` (whitening is scale-free once ε is scaled with the data).
  std::vector<double> covariance;
  /// Optional C×C channel-mixing matrix (row-major, input channel order) applied after the
  /// per-channel map of a dataset-level mode: the map becomes a PixelMap with this matrix (the
  /// whitening modes build one). Not for per-image modes or mean_image.
  std::vector<double> matrix;
  /// zca_patch: K, the patch side (odd, 1 to Accumulator::kMaxPatch; 0: kDefaultPatch). Other
  /// modes refuse it.
  int patch = 0;
  /// zca_patch: the per-(offset, channel) patch mean (K²·C values, index (dy·K + dx)·C + c) and
  /// the K²C×K²C patch covariance (row-major), 0–255 units, input channel order, as
  /// PatchSummary. ε is `eps`, as for zca_channels.
  std::vector<double> patch_mean, patch_covariance;
  /// zca: the per-pixel mean μ (D = H·W·C values, index (h·W + w)·C + c) and the D×D pixel
  /// covariance (row-major), 0–255 units, input channel order, as pixel_moments() gives them.
  /// ε is `eps`, as for zca_channels. The Normalizer consumes pixel_covariance (see its
  /// constructor).
  std::vector<double> pixel_mean, pixel_covariance;
  /// zca, pca: the width × height the pixel statistics were computed at (stats.json's size);
  /// images of another size are refused even when H·W·C equals D (6×8 is not 8×6). {0, 0}:
  /// unknown, only D is compared.
  Size pixel_size{};
  /// pca: K, the number of components (0: all D); other modes refuse it.
  int components = 0;
  /// pca: divide each component by √(λ+ε) (false: `--no-whiten`, U_Kᵀ·(x − μ)); other modes
  /// refuse false.
  bool whiten = true;
  /// zca, pca: the whitening matrix already computed, as Normalizer::whitening() gives it (D×D,
  /// or K×D for pca with `components` K; 0–1 units), e.g. by another process of the run
  /// (`mpirun`: rank 0's, broadcast). When set, `pixel_covariance` is not needed (nor
  /// decomposed): `pixel_mean` and this matrix define the map. The Normalizer moves it into
  /// whitening() (spec().whitening is then empty). Other modes refuse it.
  std::vector<double> whitening;
};

/// One channel's map, y = t + g · ((x / d − m) / s), evaluated in double in exactly this order.
struct ChannelMap {
  double d = 1, m = 0, s = 1, g = 1, t = 0;
  /// The formula, in double.
  double operator()(double x) const { return t + g * ((x / d - m) / s); }
  /// Slope and intercept of the same map (y ≈ a·x + b; for the manifest and inversion).
  double a() const { return g / (d * s); }
  double b() const { return t - g * m / s; }
};

/// The per-channel maps of one image, indexed by *input* channel.
struct Affine {
  int channels = 0;
  std::array<ChannelMap, 3> ch{};
};

struct Table;  // the 256-entry tables of a map (src/transform_kernels.hpp)

/// The map of one image. Per channel (an Affine), or with a C×C channel-mixing `matrix` (input
/// channel order, row-major): y_k = t_k + g_k · Σ_c matrix[k][c] · ((x_c / d_c − m_c) / s_c),
/// evaluated in double and rounded once. The identity matrix gives the Affine's values.
struct PixelMap {
  Affine affine;
  std::vector<double> matrix;  ///< empty (per-channel map) or channels × channels
  bool is_linear() const { return !matrix.empty(); }
};

/// Output format of the kernel.
struct OutputFormat {
  Layout layout = Layout::nhwc;
  DType dtype = DType::float32;
  /// rgb or bgr: order of the output channels (ignored for gray input). Swaps R and B when it
  /// differs from the input order.
  ChannelOrder channels = ChannelOrder::rgb;
};

/// Per-channel exact moments of one image (integers; 0–255 units).
struct ImageMoments {
  int channels = 0;
  std::uint64_t n = 0;  ///< pixels per channel
  std::array<std::uint64_t, 3> sum{}, sum_sq{};
  std::array<int, 3> min{}, max{};
};
IMGNORM_API ImageMoments image_moments(const ImageView& img);

/// Inverse of a PixelMap: per-channel maps as the Affine overload; with a matrix, z = M⁻¹ ·
/// ((y − t) / g) per pixel, then x = round(d · (m + s · z)), clamped. Throws
/// Error(invalid_argument) for a singular matrix.
IMGNORM_API void invert(const void* in, Layout layout, DType dtype, bool swap_rb,
                        const PixelMap& map, int width, int height, std::uint8_t* out,
                        const double* mean_image = nullptr);

/// Inverse map back to u8: x = round(d · (m + s · (y − t) / g)), clamped to 0–255 (NaN → 0).
/// `in` is in the kernel's output format; `out` receives width·height·channels u8 values in input
/// channel order, packed. `mean_image` (H×W×C, 0–255, input order) is for mean_image mode and
/// replaces m by mean_image[i] / d. A channel with g = 0 (a constant channel of minmax, whose map
/// keeps the constant in m) gives round(d · m). Throws Error(invalid_argument) when d or s is 0.
IMGNORM_API void invert(const void* in, Layout layout, DType dtype, bool swap_rb,
                        const Affine& affine, int width, int height, std::uint8_t* out,
                        const double* mean_image = nullptr);

namespace detail {
class WhiteningKernel;
struct FullImageAccess;
}  // namespace detail

/// A prepared normalization for one run: validated spec, dataset-level tables, the mean image.
/// Thread-safe: apply() is const.
class IMGNORM_API Normalizer {
 public:
  /// `input` is the channel order of the u8 images apply() will see (the recipe's). Throws
  /// Error(invalid_argument) for a bad spec: wrong number of constants, std 0 without eps, NaN,
  /// range lo >= hi, a preset with 3 constants on gray input, mean image of the wrong size; and
  /// for a map that gives a value the output dtype cannot hold (inf or NaN) for some input 0–255:
  /// every value of a per-channel map, the corners of the pixel cube for a channel matrix, the
  /// extremes of the mean image, minmax's range. The message names the mode, the channel, the
  /// input, the value and the flags to check, e.g. "--mode custom would write non-finite values:
  /// channel R maps x = 255 to 255000, beyond float16's largest finite value 65504 (...); check
  /// --mean/--std and --unit, or use --dtype float32".
  ///
  /// zca/pca: the D×D `pixel_covariance` is consumed to build the whitening matrix (pass the spec
  /// with std::move to avoid a copy): afterwards spec().pixel_covariance is empty.
  Normalizer(TransformSpec spec, ChannelOrder input, const OutputFormat& format);

  /// The per-image standardizations (per_image, per_image_channel) reach |y| = √(n − 1) for an
  /// image of n values with one value apart from the others: throws Error(invalid_argument) as the
  /// constructor does when that is not finite in the output dtype for images of `size` (float16
  /// from about 65520² pixels on). Other modes: nothing to check (the constructor did).
  void check_image_size(Size size) const;

  /// Normalizes one image into `out` (width·height·channels elements of the output dtype). Returns
  /// the number of constant channels that were mapped to a constant (per-image modes; else 0).
  int apply(const ImageView& img, void* out) const;

  /// Normalizes one image given as doubles in 0–255 units (H×W×C, input channel order, e.g. a
  /// float .npy input): the same maps as apply(), evaluated per element in double and rounded once
  /// (for whole values and dataset-level modes the result equals apply() bit for bit). Per-image
  /// modes take the moments of these values, in long double. `used` receives the map applied.
  /// Throws Error(invalid_argument) for a non-finite value. Returns the number of constant
  /// channels, as apply().
  int apply_values(const double* values, int width, int height, void* out,
                   Affine* used = nullptr) const;

  /// Per-image modes: normalizes `img` into `out` with its own map and returns that map;
  /// `constant` receives the number of constant channels. Dataset-level modes: as apply().
  Affine apply_per_image(const ImageView& img, void* out, int* constant) const;

  /// The dataset-level map (per-channel, or with the spec's matrix). For mean_image, m is 0.
  PixelMap pixel_map() const;

  /// The map applied to `img` (for per-image modes computed from its moments); `constant` receives
  /// the number of constant channels. For mean_image, m is 0 and the mean image is subtracted too.
  Affine affine_for(const ImageView& img, int* constant = nullptr) const;

  const TransformSpec& spec() const { return spec_; }
  int channels() const { return channels_; }
  bool swap_rb() const { return swap_rb_; }
  const OutputFormat& format() const { return format_; }
  /// Human-readable formula of the mode in the chosen unit, e.g. "y = (x - mean_c) / std_c".
  std::string formula() const;
  /// mean_image mode: the mean image divided by d (the per-pixel m of the formula), else empty.
  const std::vector<double>& mean_image_scaled() const { return mean_scaled_; }
  /// zca_patch: the C rows of W_patch for the patch centre (C × K²C, row-major, input channel
  /// order): output channel c of a pixel is row c applied to its centred patch. Else empty.
  const std::vector<double>& patch_filter() const { return patch_filter_; }
  /// zca: W = U·diag(1/√(λ+ε))·Uᵀ (D×D, row-major, input channel order) in 0–1 units: the output
  /// is W·(x/255 − μ/255) (the same values as in 0–255 units with ε·255²). pca: the K×D matrix
  /// diag(1/√(λ_k+ε))·U_Kᵀ (or U_Kᵀ without whiten), applied the same way. Else empty.
  const std::vector<double>& whitening() const { return whitening_; }

 private:
  TransformSpec spec_;
  ChannelOrder input_;
  OutputFormat format_;
  int channels_;
  bool swap_rb_;
  Affine fixed_;                        // dataset-level modes
  std::shared_ptr<const Table> table_;  // dataset-level modes (not mean_image)
  std::vector<double> mean_scaled_;
  std::vector<double> matrix_;  // the channel-mixing matrix: spec.matrix, or the whitening one
  std::vector<double> patch_filter_;  // zca_patch
  std::vector<double> whitening_;     // zca: W in 0–1 units (D×D); pca: K×D
  // zca, pca: W packed for the batched kernel (src/whitening_kernel.hpp), shared by copies.
  std::shared_ptr<const detail::WhiteningKernel> kernel_;
  friend struct detail::FullImageAccess;

  void init_full();
  void init_full_given();
  template <typename Get>
  void centre_full(Get get, int width, int height, double* z) const;
  void store_full(const double* y, int width, int height, void* out) const;
  template <typename Get>
  void apply_full(Get get, int width, int height, void* out) const;

  void init_patch();
  template <typename Get>
  void apply_patch(Get get, int width, int height, void* out) const;

  void check_finite_outputs() const;
  [[noreturn]] void refuse_non_finite(int channel, const std::string& input, double value) const;
};

/// IEEE binary16 bits to float (exact), for reading float16 tensors.
IMGNORM_API float half_to_float(std::uint16_t bits) noexcept;

}  // namespace imgnorm
