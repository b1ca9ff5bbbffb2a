#pragma once
/// \file stats.hpp
/// Exact, mergeable per-channel statistics of u8 images (start / scan / merge, as libvips' stats,
/// but with integer sums so the result never depends on thread count, order or sharding).
///
///     imgnorm::Accumulator acc(3);
///     for (auto& img : images) acc.add(img.view());
///     imgnorm::Summary s = imgnorm::summarize(acc);
///     // s.channel[0].mean, s.channel[0].std — population std (ddof 0), as numpy

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imgnorm/dataset.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/export.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/pixel_covariance.hpp"
#include "imgnorm/recipe.hpp"
#include "imgnorm/select.hpp"

namespace imgnorm {

namespace detail {
struct AccumulatorAccess;  // src/accumulator_access.hpp: the exact sums, for stats.json and tests
}

/// Exact integer accumulator over u8 images with 1 or 3 channels.
class IMGNORM_API Accumulator {
 public:
  static constexpr int kMaxChannels = 3;

  explicit Accumulator(int channels = 3);

  /// Also keeps per-pixel sums (uint64) for the mean image; every added image must have `size`.
  void enable_mean_image(Size size);

  /// Largest patch side of enable_patch (D = K²·C = 243 dimensions at K = 9, C = 3).
  static constexpr int kMaxPatch = 9;
  /// Also keeps the exact moments of every K×K patch (`stats --patch K`, for `--mode zca-patch`):
  /// at each position where the patch lies inside the image, the vector v of its K·K·C values
  /// (index (dy·K + dx)·C + c) adds 1 to patch_count(), v to patch_sums() and v·vᵀ to
  /// patch_cross(). K odd, 1..kMaxPatch; call before adding images. Every added image must be at
  /// least K×K. Throws Error(invalid_argument) otherwise.
  void enable_patch(int k);
  /// Leaves out the cross products Σ x_i·x_j of different channels (on RGB about 40% of
  /// add()'s work), for jobs that need per-channel statistics only (normalize --fit of a mode
  /// without the channel covariance). Call before adding images; afterwards cross(i, j) is 0 for
  /// i ≠ j, summarize() gives no covariance, merge() takes only accumulators without them, and
  /// to_json() refuses to write the statistics (stats.json always holds them).
  void skip_cross_products();
  /// Whether cross(i, j) holds the cross products of different channels (true unless
  /// skip_cross_products() was called).
  bool has_cross_products() const { return cross_products_; }
  /// Also keeps the exact (D+1)×(D+1) moment matrix of whole images (PixelCovariance, D =
  /// H·W·C) for full-image whitening; every added image must have `size`. Check the memory first
  /// (check_pixel_covariance_memory): this allocates PixelCovariance::bytes_for(D).
  void enable_pixel_covariance(Size size);

  /// Adds one image (its channels must equal channels()).
  void add(const ImageView& image);

  /// Adds another accumulator's sums. Exact: a.merge(b) equals accumulating both sets directly.
  /// Throws Error(invalid_argument) when channels or mean-image size differ.
  void merge(const Accumulator& other);

  int channels() const { return channels_; }
  std::uint64_t images() const { return images_; }
  /// Pixels per channel over all images.
  std::uint64_t pixels() const { return pixels_; }
  /// 256-bin histogram of channel c.
  const std::array<std::uint64_t, 256>& histogram(int c) const { return hist_[c]; }
  /// Σx of channel c (derived exactly from the histogram).
  std::uint64_t sum(int c) const;
  /// Σ x_i·x_j over pixels, channels i and j (symmetric; 0 for i ≠ j after skip_cross_products).
  std::uint64_t cross(int i, int j) const { return cross_[i][j]; }
  /// Per-pixel sums (H×W×C, row-major) when enable_mean_image was called, else empty.
  const std::vector<std::uint64_t>& pixel_sums() const { return pixel_sums_; }
  Size mean_image_size() const { return mean_size_; }
  /// K of enable_patch, 0 without patch moments.
  int patch_size() const { return patch_; }
  /// Number of K×K patches added (positions where the patch lies inside its image).
  std::uint64_t patch_count() const { return patch_count_; }
  /// Σv over patches: D = K²·C values, index (dy·K + dx)·C + c.
  const std::vector<std::uint64_t>& patch_sums() const { return patch_sums_; }
  /// Σv·vᵀ over patches: D×D, row-major, symmetric.
  const std::vector<std::uint64_t>& patch_cross() const { return patch_cross_; }
  /// The whole-image moments when enable_pixel_covariance was called (else not enabled()).
  const PixelCovariance& pixel_covariance() const { return pixcov_; }

  bool operator==(const Accumulator&) const = default;

 private:
  friend struct detail::AccumulatorAccess;
  using u128 = unsigned __int128;
  /// Per-image ("cluster") sums of one channel, kept so that a sample's confidence interval can be
  /// computed from whole images (pixels inside an image are correlated; the image is the sampling
  /// unit). With n_i pixels, S_i = Σx and Q_i = Σx² of image i, all sums are over images.
  struct ClusterSums {
    u128 s_s = 0;  ///< Σ S_i²
    u128 s_n = 0;  ///< Σ S_i·n_i
    u128 q_q = 0;  ///< Σ Q_i²
    u128 q_s = 0;  ///< Σ Q_i·S_i
    u128 q_n = 0;  ///< Σ Q_i·n_i
    /// Σ over images of round(std_i · 2^32), std_i the image's population std in 0–255 units:
    /// fixed point, so the mean of per-image std is exact and order-independent.
    u128 image_std_fixed = 0;
    bool operator==(const ClusterSums&) const = default;
  };

  u128 sum_squares(int c) const;
  // Restoring from a serialized form (stats.json); the caller guarantees consistency.
  void set_raw(std::uint64_t images, std::uint64_t pixels, u128 pixels_squared,
               const std::vector<std::array<std::uint64_t, 256>>& histograms,
               const std::vector<std::vector<std::uint64_t>>& cross,
               const std::vector<ClusterSums>& clusters);

  int channels_;
  bool cross_products_ = true;
  std::uint64_t images_ = 0;
  std::uint64_t pixels_ = 0;
  u128 n_n_ = 0;
  std::array<std::array<std::uint64_t, 256>, kMaxChannels> hist_{};
  std::array<std::array<std::uint64_t, kMaxChannels>, kMaxChannels> cross_{};
  std::array<ClusterSums, kMaxChannels> cluster_{};
  Size mean_size_{};
  std::vector<std::uint64_t> pixel_sums_;
  int patch_ = 0;
  std::uint64_t patch_count_ = 0;
  std::vector<std::uint64_t> patch_sums_;
  std::vector<std::uint64_t> patch_cross_;
  PixelCovariance pixcov_;
};

/// A closed interval [lo, hi].
struct Interval {
  double lo = 0;
  double hi = 0;
};

/// Statistics of one channel, in 0–255 units unless the name says unit (0–1).
struct ChannelSummary {
  double mean = 0;
  double std = 0;  ///< sqrt(Σ(x − mean)² / (N − ddof))
  double variance = 0;
  double mean_unit = 0;  ///< mean / 255
  double std_unit = 0;   ///< std / 255
  int min = 0;
  int max = 0;
  double median = 0;  ///< as numpy.median over all values of the channel
  /// 1st, 5th, 95th and 99th percentiles, numpy's default ('linear') definition.
  std::array<double, 4> percentiles{};
  double mean_image_std = 0;  ///< mean over images of each image's own population std
  /// 95% confidence intervals of mean and std from a sample (per-image sums, ratio estimator,
  /// finite-population correction); absent when the whole dataset was used.
  std::optional<Interval> mean_ci;
  std::optional<Interval> std_ci;
};

struct Summary {
  int channels = 0;
  std::uint64_t images = 0;
  std::uint64_t pixels = 0;  ///< per channel
  int ddof = 0;
  std::vector<ChannelSummary> channel;
  /// C×C covariance matrix (row-major), same ddof as std; empty when the accumulator has no
  /// cross products (Accumulator::skip_cross_products), and so are the eigen fields.
  std::vector<double> covariance;
  /// Its eigen-decomposition (symmetric_eigen): eigenvalues descending, 0–255 units (variance);
  /// eigenvectors as the columns of a C×C row-major matrix, rows in the channel order.
  std::vector<double> eigenvalues;
  std::vector<double> eigenvectors;
};

/// Eigen-decomposition of a symmetric n×n matrix `a` (row-major): cyclic Jacobi rotations in
/// double until the off-diagonal part vanishes. `values` descending; `vectors` row-major n×n with
/// the eigenvectors as columns, orthonormal, each with its largest-magnitude component positive
/// (the first of equal ones), so the result is unique for distinct eigenvalues.
IMGNORM_API void symmetric_eigen(const std::vector<double>& a, int n, std::vector<double>& values,
                                 std::vector<double>& vectors);

/// The K×K patch moments of an accumulator with enable_patch, finalized (see docs/whitening.md).
struct PatchSummary {
  int size = 0;             ///< K
  int channels = 0;         ///< C
  std::uint64_t count = 0;  ///< patches
  /// Per (offset, channel) mean, D = K²·C values, index (dy·K + dx)·C + c, 0–255 units.
  std::vector<double> mean;
  /// D×D covariance (row-major), 0–255² units, the same ddof as std: (N·Σvvᵀ − ΣvΣvᵀ) / (N·(N −
  /// ddof)), computed exactly in integers up to that one division.
  std::vector<double> covariance;
};

/// Finalizes the patch moments of `acc`. Throws Error(invalid_argument) when it has none (naming
/// `stats --patch`), Error(empty) when it has no patch (N − ddof ≤ 0).
IMGNORM_API PatchSummary summarize_patches(const Accumulator& acc, int ddof = 0);

/// Percentile p (0–100) of the values counted by `hist`, numpy's 'linear' method.
IMGNORM_API double histogram_percentile(const std::array<std::uint64_t, 256>& hist, double p);

/// Finalizes `acc` into doubles. ddof is 0 (population, numpy's default) or 1. With `sample`, also
/// computes the 95% confidence intervals. Throws Error(empty) when acc has no pixels.
IMGNORM_API Summary summarize(const Accumulator& acc, int ddof = 0,
                              const SampleInfo* sample = nullptr);

/// A file that was found but could not be used.
struct Skipped {
  std::string path;
  ErrorCode code = ErrorCode::corrupt;
  std::string reason;
  bool operator==(const Skipped&) const = default;
};

/// Shard `index` of `count`: the entries whose position in the selection is index mod count.
struct Shard {
  int index = 0;
  int count = 1;
  bool operator==(const Shard&) const = default;
};

/// Which files of one selection some statistics cover (stats.json "covers", docs/stats-json.md).
struct Coverage {
  std::string selection;    ///< Selection::digest: "sha256:<64 hex digits>"
  std::uint64_t files = 0;  ///< files in the selection (before sharding)
  /// The shards covered, pairwise disjoint, sorted by (count, index); empty: all `files`.
  std::vector<Shard> shards;
  bool operator==(const Coverage&) const = default;
};

/// Where stats.json's whole-image moments are (its "pixel_covariance" field): the sidecar's file
/// name, in the folder of stats.json, and the SHA-256 of its bytes.
struct PixelCovarianceFile {
  std::string file;
  std::string sha256;  ///< 64 lower-case hex digits
  std::uint64_t dimension = 0;
  bool operator==(const PixelCovarianceFile&) const = default;
};

/// Everything stats.json holds: the recipe, the counts, the exact sums. See docs/stats-json.md.
struct StatsFile {
  std::string tool_version;
  std::string source;  ///< the dataset folder or list file given
  Recipe recipe;
  int ddof = 0;
  std::vector<std::string> classes;
  std::vector<std::uint64_t> class_images;  ///< images used per class
  std::uint64_t files_found = 0;            ///< image files this run tried (after sample/shard)
  std::vector<Skipped> skipped;             ///< in dataset order
  std::vector<Ignored> ignored;
  std::optional<SampleInfo> sample;
  int shard_index = 0;  ///< shard i of n; 0/1 means the whole dataset (or several shards)
  int shard_count = 1;
  /// What files these statistics cover: one Coverage per selection (several after merging
  /// different datasets), sorted by digest. Empty: unknown (a stats.json written before imgnorm
  /// recorded it, or the statistics of an array), so merge cannot check it for overlaps.
  std::vector<Coverage> covers;
  /// The sidecar of the whole-image moments (`stats --pixel-covariance`), as stats.json records
  /// it; the moments themselves are acc.pixel_covariance() (read_stats_file loads and checks the
  /// sidecar; stats_from_json, which has no folder, only records the reference).
  std::optional<PixelCovarianceFile> pixel_covariance;
  Accumulator acc;
};

/// The recipe as the compact JSON object stats.json's "recipe" field holds (manifest.json uses it
/// too, so both files describe a recipe the same way).
IMGNORM_API std::string to_json(const Recipe& recipe);

/// Serializes to the stats.json text (format "imgnorm-stats", version 1), numbers rounded the same
/// way every time (shortest round-trip representation), so equal inputs give equal bytes.
IMGNORM_API std::string to_json(const StatsFile& stats);

/// Parses and validates stats.json text. Error(format) names what is wrong (malformed JSON, wrong
/// format name, newer version, missing fields, inconsistent sums, NaN or negative std).
IMGNORM_API StatsFile stats_from_json(const std::string& text);

/// The statistics as one block of bytes, for a copy in another process (Python's pickle): the
/// stats.json text and, when the statistics have them, the whole-image moments that stats.json
/// keeps in a sidecar (acc.pixel_covariance(), exact). stats_from_bytes() gives them back;
/// Error(format) for bytes that are not such a block.
IMGNORM_API std::vector<std::uint8_t> to_bytes(const StatsFile& stats);
IMGNORM_API StatsFile stats_from_bytes(const std::vector<std::uint8_t>& bytes);

/// Reads a stats.json file; errors name the file. A "pixel_covariance" sidecar is read from the
/// same folder and checked (Error(format) when it is missing, its SHA-256 differs from the
/// recorded one, or its shape or sums do not fit the statistics).
IMGNORM_API StatsFile read_stats_file(const std::string& path);

/// Adds b into a: exact sums added, skipped lists concatenated (sorted by path), ignored lists
/// united, `covers` united (unknown if either is unknown; a selection whose shards now cover all
/// its files loses its shard list; `shard_index`/`shard_count` name the one shard covered, else
/// 0/1). Throws Error(invalid_argument), leaving `a` unchanged, when recipes ("recipes differ
/// (size 64x64 vs 32x32)", a's value first), ddof, classes or sampling differ, or when a and b
/// cover a file of the same selection. merge_stats adds the checks that name the inputs.
IMGNORM_API void merge_into(StatsFile& a, const StatsFile& b);

}  // namespace imgnorm
