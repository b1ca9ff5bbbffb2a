// The normalize job: checks, --fit, the streaming run into a RowSink, the output folder, and the
// inverse. The CLI's `normalize` and `denormalize` only parse flags and call these.

#include "imgnorm/normalize.hpp"

#include <cblas.h>
#include <fmt/format.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include "blas_threads.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/output.hpp"
#include "imgnorm/pixel_covariance.hpp"
#include "imgnorm/stats_job.hpp"
#include "job_arena.hpp"
#include "normalize_access.hpp"
#include "stats_file_internal.hpp"
#include "whitening_kernel.hpp"

namespace imgnorm {

namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorCode::invalid_argument, what);
}

void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load()) throw Error(ErrorCode::interrupted, "interrupted");
}

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) {
  return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

std::string absolute_path(const std::string& p) {
  std::error_code ec;
  auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

// An output folder inside the dataset folder would become a class folder of the next scan.
void check_not_inside(const std::string& output, const std::string& input) {
  std::error_code ec;
  auto in = std::filesystem::weakly_canonical(input, ec);
  if (ec) return;
  auto out = std::filesystem::weakly_canonical(output, ec);
  if (ec || out == in) return;
  auto rel = out.lexically_relative(in);
  if (!rel.empty() && *rel.begin() != "..")
    invalid(output + ": the output folder is inside the dataset folder " + input +
            " (it would be scanned as a class folder next time); write it elsewhere");
}

// --fit --ddof N: every statistic the mode uses divides by n − N; an input with n <= N of them is
// refused here, naming the input, before summarize() and its kin refuse it without a name.
void check_fit_ddof(const StatsFile& fitted, const TransformSpec& spec, const std::string& source) {
  const std::uint64_t ddof = static_cast<std::uint64_t>(fitted.ddof);
  if (ddof == 0) return;
  auto refuse = [&](const std::string& what, const char* unit, std::uint64_t n) {
    invalid(fmt::format("{}: --fit --ddof {}: {} needs at least {} {}, the input has {}", source,
                        ddof, what, ddof + 1, unit, n));
  };
  const Accumulator& acc = fitted.acc;
  if (is_full_image(spec.mode) && acc.pixel_covariance().images() <= ddof)
    refuse(std::string("the pixel covariance of --mode ") + to_string(spec.mode), "images",
           acc.pixel_covariance().images());
  if (spec.mode == Mode::zca_patch && acc.patch_count() <= ddof)
    refuse("the patch covariance of --mode zca-patch", "patches", acc.patch_count());
  if (acc.pixels() <= ddof) refuse("the channel std", "pixels", acc.pixels());
}

}  // namespace

// ---- sinks ----

RowSink::~RowSink() = default;

void MemorySink::begin(std::uint64_t planned_rows, std::size_t row_bytes) {
  row_bytes_ = row_bytes;
  data_.clear();
  data_.reserve(static_cast<std::size_t>(planned_rows) * row_bytes);
}
void MemorySink::write_row(std::uint64_t row, const void* data) {
  // Rows come in order (RowSink's contract): append, without zero-filling first.
  assert(data_.size() == static_cast<std::size_t>(row) * row_bytes_);
  (void)row;
  const auto* p = static_cast<const std::uint8_t*>(data);
  data_.insert(data_.end(), p, p + row_bytes_);
}
void MemorySink::end(std::uint64_t rows) {
  data_.resize(static_cast<std::size_t>(rows) * row_bytes_);
}

NpyFileSink::NpyFileSink(std::string path, DType dtype, std::vector<std::uint64_t> shape)
    : writer_(std::move(path), dtype, std::move(shape)) {}
void NpyFileSink::begin(std::uint64_t planned_rows, std::size_t row_bytes) {
  if (planned_rows != writer_.rows() || row_bytes != writer_.row_bytes())
    invalid(writer_.path() + ": the array's shape does not match the job");
}
void NpyFileSink::write_row(std::uint64_t row, const void* data) {
  writer_.write_rows(row, data, 1);
}
void NpyFileSink::end(std::uint64_t rows) {
  if (rows != writer_.rows()) writer_.set_rows(rows);
}

// ---- input ----

NormalizeInput open_input(const std::string& input, const std::string& list,
                          const ScanOptions& scan) {
  NormalizeInput in;
  if (list.empty() && has_npy_extension(input)) {
    in.source = input;
    in.array = ImageArray::open_npy(input);
    return in;
  }
  SelectOptions o;
  o.folder = list.empty() ? input : "";
  o.list = list;
  o.scan = scan;
  Selection s = select_dataset(o);
  in.from_list = !list.empty();
  in.source = s.source;
  in.dataset = std::move(s.dataset);
  return in;
}

// ---- the job ----

Normalization::~Normalization() = default;
Normalization::Normalization(Normalization&&) noexcept = default;

Normalization::Normalization(NormalizeJob job, NormalizeInput input)
    : job_(std::move(job)), input_(std::move(input)) {
  check_job();
  bind_input();
}

Normalization::Normalization(NormalizeJob job, const std::string& input, const std::string& list,
                             const ScanOptions& scan)
    : job_(std::move(job)) {
  check_job();
  input_ = open_input(input, list, scan);
  bind_input();
}

void Normalization::check_job() {
  TransformSpec& spec = job_.spec;
  const bool has_stats = job_.stats || !job_.stats_path.empty();
  if (has_stats && job_.fit) invalid("give --stats FILE or --fit, not both");
  if (!job_.save_stats.empty() && !job_.fit)
    invalid("--save-stats needs --fit (it writes the statistics --fit computes)");
  if (job_.ddof && *job_.ddof != 0 && *job_.ddof != 1)
    invalid("--ddof " + std::to_string(*job_.ddof) +
            ": must be 0 (population, numpy's default) or 1 (sample)");
  if (job_.ddof && !job_.fit && !has_stats)
    invalid("--ddof needs --fit (it sets the ddof of the statistics --fit computes)");
  if (spec.mean_image_std && spec.mode != Mode::mean_image)
    invalid("--divide-std applies to --mode mean-image only");
  if (spec.mode == Mode::custom) {
    if (spec.mean.empty()) invalid("--mode custom needs --mean");
    if (spec.unit == 255 && !job_.unit_given) warn_custom_unit(spec);
  } else if (!spec.mean.empty() || !spec.std.empty()) {
    invalid("--mean and --std apply to --mode custom only");
  }
  if (spec.patch != 0 && spec.mode != Mode::zca_patch)
    invalid(std::string("--patch applies to --mode zca-patch, not ") + to_string(spec.mode));
  if (spec.mode == Mode::zca_patch) {
    if (spec.patch == 0) spec.patch = kDefaultPatch;
    if (spec.patch < 1 || spec.patch > Accumulator::kMaxPatch || spec.patch % 2 == 0)
      invalid("--patch " + std::to_string(spec.patch) + ": the patch side must be odd, 1 to " +
              std::to_string(Accumulator::kMaxPatch));
  }
  if (spec.mode == Mode::mean_image && job_.mean_image_path.empty() && !job_.fit)
    invalid(
        "--mode mean-image needs --mean-image FILE.npy (from imgnorm stats --mean-image) or "
        "--fit");

  // The recipe: the training stats' unless overridden (with a warning), else the defaults'.
  // zca/pca: the pixel-covariance sidecar is loaded by prepare(), after its memory check; the
  // other modes never read it (75 MB at 32x32: neither read nor hashed, and not needed to exist).
  if (!job_.stats && !job_.stats_path.empty())
    job_.stats = detail::read_stats_json(job_.stats_path);
  const std::optional<StatsFile>& stats = job_.stats;
  const std::string stats_name = job_.stats_path.empty() ? "the statistics" : job_.stats_path;
  if (job_.ddof && stats)
    invalid(stats_name + ": the statistics' own ddof (" + std::to_string(stats->ddof) +
            ") applies; --ddof is for --fit only (for another ddof, recompute them with imgnorm "
            "stats --ddof N)");
  if (needs_dataset_stats(spec) && !stats && !job_.fit)
    invalid(std::string("--mode ") + to_string(spec.mode) +
            " needs the dataset statistics: --stats FILE (from imgnorm stats" +
            (spec.mode == Mode::zca_patch ? " --patch " + std::to_string(spec.patch) : "") +
            ") or --fit");
  if (spec.mode == Mode::zca_patch && stats && stats->acc.patch_size() != spec.patch) {
    const std::string k = std::to_string(spec.patch);
    const int has = stats->acc.patch_size();
    invalid(stats_name + ": " +
            (has ? "has the " + std::to_string(has) + "x" + std::to_string(has) +
                       " patch moments, not the " + k + "x" + k + " ones --patch " + k + " needs"
                 : "has no patch moments, which --mode zca-patch needs") +
            "; compute them with imgnorm stats --patch " + k + " (or use --fit)");
  }
  if (is_full_image(spec.mode) && stats && !stats->pixel_covariance &&
      !stats->acc.pixel_covariance().enabled())
    invalid(stats_name + ": has no pixel covariance, which --mode " + to_string(spec.mode) +
            " needs; compute it with imgnorm stats --pixel-covariance -o stats.json (or use "
            "--fit)");
  if (spec.components != 0 && spec.mode != Mode::pca)
    invalid(std::string("--components applies to --mode pca, not ") + to_string(spec.mode));
  if (!spec.whiten && spec.mode != Mode::pca)
    invalid(std::string("--no-whiten applies to --mode pca, not ") + to_string(spec.mode));
  if (spec.mode == Mode::pca && spec.components < 0)
    invalid("--components " + std::to_string(spec.components) + ": must be at least 1");
  recipe_ = job_.recipe.apply(stats ? stats->recipe : Recipe{});
  if (stats) {
    std::string diff = recipe_differences(recipe_, stats->recipe);
    if (!diff.empty())
      warnings_.push_back("the recipe differs from the training recipe in " + stats_name + " (" +
                          diff + ")");
  }

  // The output order; without statistics, gray also decodes gray.
  if (job_.channels == ChannelOrder::gray && !stats) recipe_.channels = ChannelOrder::gray;

  format_.layout = job_.layout;
  format_.dtype = job_.dtype;
  if (job_.dtype != DType::float32 && job_.dtype != DType::float16)
    invalid(std::string("invalid dtype '") + to_string(job_.dtype) +
            "' (expected float32|float16)");
}

// Constants that all lie in 0–1, some strictly between (torchvision's 0.485, 0.229, ...), are
// almost certainly in 0–1 units; under unit 255 they give values up to ~1100 instead of ~2.
void Normalization::warn_custom_unit(const TransformSpec& spec) {
  const std::vector<double> sd =
      spec.std.empty() ? std::vector<double>(spec.mean.size(), 1.0) : spec.std;
  bool fraction = false;
  for (double m : spec.mean) {
    if (!(m >= 0 && m <= 1)) return;
    fraction = fraction || (m > 0 && m < 1);
  }
  for (double s : sd) {
    if (!(s > 0 && s <= 1)) return;
    fraction = fraction || s < 1;
  }
  if (!fraction || sd.size() != spec.mean.size()) return;
  double top = 0;
  for (std::size_t c = 0; c < sd.size(); ++c)
    top = std::max(
        {top, std::fabs((0 - spec.mean[c]) / sd[c]), std::fabs((255 - spec.mean[c]) / sd[c])});
  warnings_.push_back(fmt::format(
      "--mode custom: every --mean and --std is at most 1, as constants in 0-1 units are, but "
      "--unit 255 (the default) applies them to x in 0-255, giving values up to {:.0f}; pass "
      "--unit 1 for 0-1 constants (torchvision's Normalize), or --unit 255 to keep this",
      top));
}

void Normalization::bind_input() {
  const TransformSpec& spec = job_.spec;
  const std::optional<StatsFile>& stats = job_.stats;
  const std::string stats_name = job_.stats_path.empty() ? "the statistics" : job_.stats_path;
  const bool is_array = input_.array.has_value();
  // An array's channels are taken to be in the recipe's order.
  if (is_array) {
    const ImageArray& a = *input_.array;
    if (a.channels() != channel_count(recipe_.channels)) {
      if (a.channels() == 1)
        recipe_.channels = ChannelOrder::gray;
      else if (stats)
        invalid(a.name() + ": 3 channels, but the statistics in " + stats_name + " are gray");
      else
        recipe_.channels = ChannelOrder::rgb;
    }
    recipe_.size = {a.width(), a.height()};
    recipe_.resize = ResizeMode::none;
  }
  const int nc = channel_count(recipe_.channels);
  if (!job_.channels) {
    auto p = preset_channel_order(spec.mode);
    format_.channels = nc == 1 ? ChannelOrder::gray : (p ? *p : recipe_.channels);
  } else {
    if (spec.mode == Mode::pca)
      invalid(
          "--channels does not apply to --mode pca: its outputs are the principal components, in "
          "order of variance");
    if (spec.mode == Mode::pca_channels)
      invalid(
          "--channels does not apply to --mode pca-channels: its outputs are the principal "
          "components, in order of variance");
    format_.channels = *job_.channels;
    if (nc == 1 && format_.channels != ChannelOrder::gray)
      invalid(std::string("--channels ") + to_string(format_.channels) + " needs color input");
    if (nc == 3 && format_.channels == ChannelOrder::gray)
      invalid(stats ? "--channels gray: the statistics in " + stats_name +
                          " are of color images (compute them with stats --channels gray)"
                    : "--channels gray: " + input_.source + " has 3 channels");
  }

  // Labels: class ids of the training class list.
  labels_ = job_.labels && !is_array;
  classes_ = stats ? stats->classes : input_.dataset.classes;
  if (labels_) {
    std::map<std::string, int> id;
    for (std::size_t i = 0; i < classes_.size(); ++i) id[classes_[i]] = static_cast<int>(i);
    for (const std::string& c : input_.dataset.classes) {
      auto it = id.find(c);
      if (it == id.end())
        invalid(c.empty() ? input_.source +
                                ": the images are not in class folders, and the training "
                                "statistics have classes; use --no-labels"
                          : input_.source + ": class '" + c + "' is not among the " +
                                std::to_string(classes_.size()) + " training classes of " +
                                stats_name + "; use --no-labels to skip labels");
      label_of_class_.push_back(it->second);
    }
  }
}

std::uint64_t Normalization::planned_rows() const {
  return input_.array ? input_.array->rows() : input_.dataset.entries.size();
}

std::vector<std::uint64_t> Normalization::shape(std::uint64_t rows) const {
  const std::uint64_t h = static_cast<std::uint64_t>(recipe_.size.height);
  const std::uint64_t w = static_cast<std::uint64_t>(recipe_.size.width);
  const std::uint64_t c = static_cast<std::uint64_t>(channel_count(recipe_.channels));
  if (job_.spec.mode == Mode::pca)
    return {rows,
            job_.spec.components ? static_cast<std::uint64_t>(job_.spec.components) : h * w * c};
  if (format_.layout == Layout::nhwc) return {rows, h, w, c};
  return {rows, c, h, w};
}

std::size_t Normalization::row_bytes() const {
  if (job_.spec.mode == Mode::pca && job_.spec.components != 0)
    return static_cast<std::size_t>(job_.spec.components) * dtype_size(format_.dtype);
  return static_cast<std::size_t>(recipe_.size.width) * recipe_.size.height *
         channel_count(recipe_.channels) * dtype_size(format_.dtype);
}

void Normalization::prepare(const PipelineOptions& options) { prepare(options, nullptr); }

void Normalization::prepare(
    const PipelineOptions& options,
    const std::function<StatsFile(const StatsJob&, const PipelineOptions&)>& fit,
    const std::function<std::vector<double>(const std::function<std::vector<double>()>&)>&
        whitening) {
  // --resize none: the first image's size, so that every row has the same shape.
  if (!input_.array) recipe_ = with_image_size(input_.dataset.entries, recipe_, options);
  if (recipe_.size.width == 0)
    throw Error(ErrorCode::empty, "no image could be used: none of the " +
                                      std::to_string(input_.dataset.entries.size()) +
                                      " files could be decoded");
  TransformSpec spec = job_.spec;
  const int nc = channel_count(recipe_.channels);
  // A mean image from a file is checked before the --fit pass.
  if (spec.mode == Mode::mean_image && !job_.mean_image_path.empty()) {
    spec.mean_image = read_mean_image(job_.mean_image_path, nc, spec.mean_image_size);
    if (!(spec.mean_image_size == recipe_.size))
      invalid(fmt::format("{}: the mean image is {}x{}, the images {}x{}", job_.mean_image_path,
                          spec.mean_image_size.width, spec.mean_image_size.height,
                          recipe_.size.width, recipe_.size.height));
  }
  if (spec.mode == Mode::zca_patch &&
      (recipe_.size.width < spec.patch || recipe_.size.height < spec.patch))
    invalid(fmt::format("--patch {}: the patch is larger than the {}x{} images", spec.patch,
                        recipe_.size.width, recipe_.size.height));
  // zca/pca: the fit's D×D matrices against --max-memory before anything of them is allocated
  // (the sidecar of --stats included; --fit's accumulators are checked by its own pass).
  if (is_full_image(spec.mode)) {
    const std::uint64_t d = static_cast<std::uint64_t>(recipe_.size.width) *
                            static_cast<std::uint64_t>(recipe_.size.height) *
                            static_cast<std::uint64_t>(nc);
    if (job_.stats && job_.stats->pixel_covariance && job_.stats->pixel_covariance->dimension != d)
      invalid(fmt::format(
          "{}: the pixel covariance is for D = {} values per image, the images are {}x{}x{} "
          "= {}; normalize at the size of the statistics (--size) or recompute them",
          job_.stats_path.empty() ? std::string("the statistics") : job_.stats_path,
          job_.stats->pixel_covariance->dimension, recipe_.size.width, recipe_.size.height, nc, d));
    // An argument error before the memory figure: a --components typo is not a memory problem.
    if (spec.mode == Mode::pca && static_cast<std::uint64_t>(spec.components) > d)
      invalid("--components " + std::to_string(spec.components) +
              ": between 1 and D = " + std::to_string(d) + " (the values per image)");
    const std::uint64_t components =
        spec.mode == Mode::zca
            ? 0
            : (spec.components > 0 ? std::min<std::uint64_t>(spec.components, d) : d);
    // --fit: its accumulators first (the check of its own pass, made here so that the larger
    // of the two phases is not reached by the other), then the fit of W.
    if (job_.fit)
      check_pixel_covariance_memory(d, input_.array ? 1 : effective_threads(options.threads) + 1,
                                    effective_max_memory(options), options.max_memory > 0);
    check_full_fit_memory(d, components, to_string(spec.mode), effective_max_memory(options),
                          options.max_memory > 0);
    if (job_.stats) detail::load_pixel_covariance_sidecar(*job_.stats, job_.stats_path);
  }
  // --fit: the statistics of this input, first pass. A map that needs none of them is checked
  // first (a transform that cannot be written is refused before any work).
  if (job_.fit && !needs_dataset_stats(spec) && spec.mode != Mode::mean_image &&
      spec.mode != Mode::zca_channels && spec.mode != Mode::pca_channels)
    Normalizer(spec, recipe_.channels, format_).check_image_size(recipe_.size);
  std::optional<StatsFile> fitted;
  if (job_.fit) {
    StatsJob sj;
    sj.recipe = recipe_;
    sj.ddof = job_.ddof.value_or(0);
    sj.mean_image = spec.mode == Mode::mean_image && job_.mean_image_path.empty();
    if (spec.mode == Mode::zca_patch) sj.patch = spec.patch;
    sj.pixel_covariance = is_full_image(spec.mode);
    // The channel covariance only for the modes that use it, or for --save-stats (stats.json
    // holds it): on RGB the cross products are about 40% of the accumulation.
    sj.cross_products = spec.mode == Mode::zca_channels || spec.mode == Mode::pca_channels ||
                        !job_.save_stats.empty();
    PipelineOptions fit_options = options;
    fit_options.on_skip = nullptr;  // reported once, by the normalizing pass
    if (fit)
      fitted = fit(sj, fit_options);
    else if (input_.array)
      fitted = compute_stats(*input_.array, sj, options.cancel);
    else
      fitted = compute_stats(input_.dataset, sj, fit_options, version());
    if (fitted->acc.images() == 0)
      throw Error(ErrorCode::empty, input_.source + ": no image could be used for --fit");
    check_fit_ddof(*fitted, spec, input_.source);
  }
  fitted_ = std::move(fitted);
  const StatsFile* stats = fitted_ ? &*fitted_ : (job_.stats ? &*job_.stats : nullptr);
  if (stats) {
    if (channel_count(stats->recipe.channels) != nc)
      invalid((job_.fit ? std::string("--fit")
                        : (job_.stats_path.empty() ? "the statistics" : job_.stats_path)) +
              ": the statistics have " + std::to_string(channel_count(stats->recipe.channels)) +
              " channels, the input " + std::to_string(nc));
    Summary s = summarize(stats->acc, stats->ddof);
    if (spec.mode == Mode::zca_channels || spec.mode == Mode::pca_channels)
      spec.covariance = s.covariance;
    if (is_full_image(spec.mode)) {
      const PixelCovariance& pc = stats->acc.pixel_covariance();
      const std::uint64_t d = static_cast<std::uint64_t>(recipe_.size.width) *
                              static_cast<std::uint64_t>(recipe_.size.height) *
                              static_cast<std::uint64_t>(nc);
      if (!pc.enabled())
        invalid((job_.stats_path.empty() ? std::string("the statistics") : job_.stats_path) +
                ": has no pixel covariance, which --mode " + to_string(spec.mode) +
                " needs; compute it with imgnorm stats --pixel-covariance -o stats.json (or use "
                "--fit)");
      if (pc.dimension() != d)
        invalid(fmt::format(
            "{}: the pixel covariance is for D = {} values per image, the images are {}x{}x{} "
            "= {}; normalize at the size of the statistics (--size) or recompute them",
            job_.stats_path.empty() ? std::string("the statistics") : job_.stats_path,
            pc.dimension(), recipe_.size.width, recipe_.size.height, nc, d));
      // The same D is not enough: 6x8 images are not the 8x6 the pixel statistics are about.
      const Size ss = stats->recipe.size;
      if (ss.width > 0 && !(ss == recipe_.size))
        invalid(fmt::format(
            "{}: the pixel covariance is for {}x{} images, the images are {}x{}; normalize at the "
            "size of the statistics (--size {}x{}) or recompute them",
            job_.fit ? std::string("--fit")
                     : (job_.stats_path.empty() ? std::string("the statistics") : job_.stats_path),
            ss.width, ss.height, recipe_.size.width, recipe_.size.height, ss.width, ss.height));
      spec.pixel_size = ss;
      if (pc.images() < d)
        warnings_.push_back(fmt::format(
            "--mode {}: {} images for D = {} values per image: the pixel covariance is singular "
            "(rank at most {}), so --eps ({:g}) decides how its other directions are scaled",
            to_string(spec.mode), pc.images(), d, pc.images() > 0 ? pc.images() - 1 : 0,
            spec.eps ? *spec.eps : kDefaultWhiteningEps));
      PixelMoments pm = pixel_moments(pc, stats->ddof);
      spec.pixel_mean = std::move(pm.mean);
      spec.pixel_covariance = std::move(pm.covariance);
    }
    if (spec.mode == Mode::zca_patch) {
      PatchSummary p = summarize_patches(stats->acc, stats->ddof);
      spec.patch_mean = std::move(p.mean);
      spec.patch_covariance = std::move(p.covariance);
    }
    for (const auto& c : s.channel) {
      if (spec.mode != Mode::custom) {
        spec.mean.push_back(c.mean);
        spec.std.push_back(c.std);
      }
      spec.min.push_back(c.min);
      spec.max.push_back(c.max);
    }
  }
  if (spec.mode == Mode::mean_image && job_.mean_image_path.empty()) {
    spec.mean_image = mean_image(stats->acc);
    spec.mean_image_size = stats->acc.mean_image_size();
  }
  if (whitening && is_full_image(spec.mode)) {
    // The matrix from the caller (under mpirun: rank 0's decomposition, broadcast). The
    // covariance is moved into the decomposing Normalizer (not copied) and not needed after.
    std::vector<double> covariance = std::move(spec.pixel_covariance);
    spec.pixel_covariance = {};
    spec.whitening = whitening([&] {
      TransformSpec fit = spec;
      fit.pixel_covariance = std::move(covariance);
      return Normalizer(std::move(fit), recipe_.channels, format_).whitening();
    });
  }
  // Moved: the D×D pixel covariance of zca/pca is consumed by the Normalizer, not copied.
  normalizer_ = std::make_unique<Normalizer>(std::move(spec), recipe_.channels, format_);
  normalizer_->check_image_size(recipe_.size);
}

namespace {

// zca, pca over an array: the rows in batches of `capacity` for the whitening kernel, centred on
// the calling thread, the kernel over `threads`; write(r, row) in row order. Each row's bits are
// those of Normalizer::apply (src/whitening_kernel.hpp). Error(interrupted) on cancel; a row's
// error names it.
void whiten_rows(const Normalizer& norm, const ImageArray& a, std::size_t capacity, int threads,
                 const std::atomic<bool>* cancel,
                 const std::function<void(std::uint64_t, const void*)>& write) {
  detail::FullImageBatch batch(norm, capacity);
  std::uint64_t first = 0;  // the row of the batch's first image
  auto flush = [&] { batch.flush([&](std::size_t i, const void* row) { write(first + i, row); }); };
  detail::JobArena arena(effective_threads(threads));
  arena.execute([&] {
    a.for_each_row(
        [&](std::uint64_t r, const ArrayRow& row) {
          try {
            if (row.values)
              batch.add_values(row.values, a.width(), a.height());
            else
              batch.add(row.u8);
          } catch (const Error& e) {
            throw Error(e.code(), a.name() + ": row " + std::to_string(r) + ": " + e.what());
          }
          if (batch.full()) {
            flush();
            first = r + 1;
          }
        },
        cancel);
    flush();
  });
}

}  // namespace

NormalizeResult Normalization::run(RowSink& sink, const PipelineOptions& options) const {
  if (!normalizer_) invalid("Normalization::run: call prepare() first");
  const Normalizer& norm = *normalizer_;
  const bool per_image = is_per_image(job_.spec.mode);
  const std::size_t rb = row_bytes();
  NormalizeResult res;
  sink.begin(planned_rows(), rb);

  if (input_.array && is_full_image(job_.spec.mode)) {
    const ImageArray& a = *input_.array;
    whiten_rows(norm, a,
                detail::FullImageBatch::capacity_for(norm, effective_max_memory(options) / 4,
                                                     static_cast<std::size_t>(a.rows())),
                options.threads, options.cancel, [&](std::uint64_t, const void* row) {
                  sink.write_row(res.rows, row);
                  ++res.rows;
                });
  } else if (input_.array) {
    const ImageArray& a = *input_.array;
    std::vector<std::uint8_t> buf(rb);
    a.for_each_row(
        [&](std::uint64_t r, const ArrayRow& row) {
          if (row.values) {
            Affine used;
            try {
              res.constant_channels += static_cast<std::uint64_t>(
                  norm.apply_values(row.values, a.width(), a.height(), buf.data(), &used));
            } catch (const Error& e) {
              throw Error(e.code(), a.name() + ": row " + std::to_string(r) + ": " + e.what());
            }
            if (per_image) res.per_image_maps.push_back(used);
          } else if (per_image) {
            int constant = 0;
            res.per_image_maps.push_back(norm.apply_per_image(row.u8, buf.data(), &constant));
            res.constant_channels += static_cast<std::uint64_t>(constant);
          } else {
            norm.apply(row.u8, buf.data());
          }
          sink.write_row(r, buf.data());
          ++res.rows;
        },
        options.cancel);
  } else {
    res = run_entries(input_.dataset.entries, sink, options);
  }
  if (res.rows == 0)
    throw Error(ErrorCode::empty, "no image could be used: all " +
                                      std::to_string(res.skipped.size()) + " files were skipped");
  sink.end(res.rows);
  return res;
}

NormalizeResult Normalization::run_entries(const std::vector<Entry>& entries, RowSink& sink,
                                           const PipelineOptions& options) const {
  if (!normalizer_) invalid("Normalization::run: call prepare() first");
  if (is_full_image(job_.spec.mode)) return run_entries_full(entries, sink, options);
  const Normalizer& norm = *normalizer_;
  const bool per_image = is_per_image(job_.spec.mode);
  const std::size_t rb = row_bytes();
  NormalizeResult res;
  std::vector<std::uint64_t> used(input_.dataset.classes.size(), 0);
  {
    PipelineOptions pipeline = options;
    pipeline.slot_bytes = rb;  // the output rows in flight count against --max-memory
    const int slots = pipeline_slots(pipeline, entries.size());
    std::vector<std::uint8_t> slot_data(static_cast<std::size_t>(slots) * rb);
    std::vector<Affine> slot_affine(static_cast<std::size_t>(slots));
    std::vector<int> slot_constant(static_cast<std::size_t>(slots), 0);
    run_pipeline(
        entries, recipe_, pipeline,
        [&](const LoadedImage& li) {
          std::uint8_t* dst = slot_data.data() + static_cast<std::size_t>(li.slot) * rb;
          if (per_image)
            slot_affine[li.slot] = norm.apply_per_image(li.image, dst, &slot_constant[li.slot]);
          else
            norm.apply(li.image, dst);
        },
        [&](std::size_t index, int slot, const Error* error) {
          const Entry& e = entries[index];
          if (error) {
            res.skipped.push_back({e.path, error->code(), error->what()});
            if (options.on_skip) options.on_skip(e.path, *error);
            return;
          }
          sink.write_row(res.rows, slot_data.data() + static_cast<std::size_t>(slot) * rb);
          res.files.push_back(e.path);
          ++used[static_cast<std::size_t>(e.label)];
          if (labels_) res.labels.push_back(label_of_class_[e.label]);
          if (per_image) {
            res.per_image_maps.push_back(slot_affine[slot]);
            res.constant_channels += static_cast<std::uint64_t>(slot_constant[slot]);
          }
          ++res.rows;
        });
  }
  for (std::size_t c = 0; c < used.size(); ++c)
    if (used[c] == 0) res.empty_classes.push_back(input_.dataset.classes[c]);
  return res;
}

// zca, pca: the workers write each image's D u8 values into its slot; the serial in-order stage
// centres them into a batch of the whitening kernel and, when it is full (and at the end), runs
// the kernel over the job's threads (the pipeline's arena) and writes the rows in order. The
// batch's Z and Y count against --max-memory beside the slots.
NormalizeResult Normalization::run_entries_full(const std::vector<Entry>& entries, RowSink& sink,
                                                const PipelineOptions& options) const {
  const Normalizer& norm = *normalizer_;
  NormalizeResult res;
  std::vector<std::uint64_t> used(input_.dataset.classes.size(), 0);
  const std::uint64_t limit = effective_max_memory(options);
  detail::FullImageBatch batch(
      norm, detail::FullImageBatch::capacity_for(norm, limit / 4, entries.size()));
  const std::uint64_t batch_bytes =
      static_cast<std::uint64_t>(batch.capacity()) * detail::FullImageBatch::bytes_per_image(norm);
  PipelineOptions pipeline = options;
  pipeline.max_memory = limit > batch_bytes ? limit - batch_bytes : 1;
  const std::size_t dims = norm.spec().pixel_mean.size();
  pipeline.slot_bytes = dims;  // the image's u8 values until the serial stage takes them
  const int slots = pipeline_slots(pipeline, entries.size());
  std::vector<std::uint8_t> slot_data(static_cast<std::size_t>(slots) * dims);
  std::vector<Size> slot_size(static_cast<std::size_t>(slots));
  const int nc = norm.channels();
  auto flush = [&] {
    batch.flush([&](std::size_t, const void* row) {
      sink.write_row(res.rows, row);
      ++res.rows;
    });
  };
  run_pipeline(
      entries, recipe_, pipeline,
      [&](const LoadedImage& li) {
        const ImageView& img = li.image;
        const std::size_t row = static_cast<std::size_t>(img.width) * nc;
        if (img.channels != nc || row * static_cast<std::size_t>(img.height) != dims) {
          std::vector<double> z(dims);
          detail::FullImageAccess::centre(norm, img, z.data());  // throws the reason
        }
        std::uint8_t* dst = slot_data.data() + static_cast<std::size_t>(li.slot) * dims;
        for (int y = 0; y < img.height; ++y)
          std::memcpy(dst + static_cast<std::size_t>(y) * row, img.row(y), row);
        slot_size[li.slot] = {img.width, img.height};
      },
      [&](std::size_t index, int slot, const Error* error) {
        const Entry& e = entries[index];
        if (error) {
          res.skipped.push_back({e.path, error->code(), error->what()});
          if (options.on_skip) options.on_skip(e.path, *error);
          return;
        }
        const Size sz = slot_size[slot];
        ImageView v;
        v.data = slot_data.data() + static_cast<std::size_t>(slot) * dims;
        v.width = sz.width;
        v.height = sz.height;
        v.channels = nc;
        v.stride = static_cast<std::size_t>(sz.width) * nc;
        batch.add(v);
        res.files.push_back(e.path);
        ++used[static_cast<std::size_t>(e.label)];
        if (labels_) res.labels.push_back(label_of_class_[e.label]);
        if (batch.full()) flush();
      });
  flush();
  for (std::size_t c = 0; c < used.size(); ++c)
    if (used[c] == 0) res.empty_classes.push_back(input_.dataset.classes[c]);
  return res;
}

Manifest Normalization::manifest(const NormalizeResult& r) const {
  const Normalizer& norm = *normalizer_;
  const TransformSpec& spec = norm.spec();
  Manifest m;
  m.tool_version = version();
  m.source = input_.source;
  if (!job_.stats_path.empty()) m.stats = job_.stats_path;
  if (job_.fit && !job_.save_stats.empty()) m.stats = job_.save_stats;
  m.fit = job_.fit;
  if (fitted_)
    m.ddof = fitted_->ddof;
  else if (job_.stats)
    m.ddof = job_.stats->ddof;
  m.mode = spec.mode;
  m.formula = norm.formula();
  m.unit = spec.unit;
  m.range = spec.range;
  m.eps = spec.eps;
  if (!m.eps && (spec.mode == Mode::zca_channels || spec.mode == Mode::pca_channels ||
                 spec.mode == Mode::zca_patch || is_full_image(spec.mode)))
    m.eps = kDefaultWhiteningEps;
  if (is_full_image(spec.mode)) m.whitening = "whitening.npy";
  if (spec.mode == Mode::pca) {
    m.components = static_cast<int>(norm.whitening().size() / spec.pixel_mean.size());
    m.whiten = spec.whiten;
  }
  if (spec.mode == Mode::zca_patch) {
    m.patch = spec.patch;
    m.patch_mean = spec.patch_mean;
    m.patch_filter = norm.patch_filter();
  }
  if (spec.mode == Mode::mean_image) {
    if (!job_.mean_image_path.empty()) m.mean_image = absolute_path(job_.mean_image_path);
    m.divide_std = spec.mean_image_std;
  }
  m.layout = format_.layout;
  m.dtype = format_.dtype;
  m.channels = format_.channels;
  m.shape = shape(r.rows);
  m.recipe = recipe_;
  m.input_channels = recipe_.channels;
  if (!spec.mean.empty() && spec.mode != Mode::custom) {
    m.dataset_mean = spec.mean;
    m.dataset_std = spec.std;
  }
  if (is_per_image(spec.mode)) {
    for (const Affine& a : r.per_image_maps) m.per_image_maps.push_back({a, {}});
  } else if (spec.mode != Mode::zca_patch && !is_full_image(spec.mode)) {
    m.maps = norm.pixel_map();
  }
  m.constant_channels = r.constant_channels;
  m.classes = classes_;
  m.labels = labels_;
  m.rows = r.rows;
  for (std::size_t i = 0; i < r.files.size(); ++i)
    m.files.push_back(
        {r.files[i], labels_ ? std::optional<std::int64_t>(r.labels[i]) : std::nullopt});
  m.skipped = r.skipped;
  m.ignored = input_.dataset.ignored;
  return m;
}

namespace detail {

void NormalizationAccess::check_output(const Normalization& job, const std::string& dir) {
  if (!job.input().array && !job.input().from_list) check_not_inside(dir, job.input().source);
}

std::string NormalizationAccess::shard_name(const char* stem, int index) {
  char digits[16];
  std::snprintf(digits, sizeof digits, "%05d", index);
  return std::string(stem) + "-" + digits + ".npy";
}

std::vector<std::string> NormalizationAccess::set_names(const std::string& dir, int shards) {
  std::vector<std::string> names{"images.npy", "labels.npy", "manifest.json", "whitening.npy"};
  auto add = [&](std::string n) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(std::move(n));
  };
  for (int r = 0; r < shards; ++r) {
    add(shard_name("images", r));
    add(shard_name("labels", r));
  }
  // images-<digits>.npy and labels-<digits>.npy, and their temporaries and old copies (sorted:
  // "already exists" names the same file every time).
  std::vector<std::string> found;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string e = it->path().filename().string();
    if (e.compare(0, 7, "images-") != 0 && e.compare(0, 7, "labels-") != 0) continue;
    const std::size_t digits = e.find_first_not_of("0123456789", 7);
    if (digits == std::string::npos || digits == 7 || e.compare(digits, 4, ".npy") != 0) continue;
    found.push_back(e.substr(0, digits + 4));
  }
  std::sort(found.begin(), found.end());
  for (auto& n : found) add(std::move(n));
  return names;
}

std::unique_ptr<NpyWriter> NormalizationAccess::whitening_file(const Normalization& job,
                                                               const OutputFolder& folder) {
  // --mode zca/pca: μ and W, (K+1)×D float64 in 0–1 units (Manifest::whitening).
  if (!is_full_image(job.job().spec.mode)) return nullptr;
  const Normalizer& norm = job.normalizer();
  const std::vector<double>& w = norm.whitening();
  const std::vector<double>& mu = norm.spec().pixel_mean;
  const std::uint64_t d = mu.size();
  auto file = std::make_unique<NpyWriter>(folder.path("whitening.npy"), DType::float64,
                                          std::vector<std::uint64_t>{w.size() / d + 1, d});
  std::vector<double> row(mu.size());
  for (std::size_t i = 0; i < mu.size(); ++i) row[i] = mu[i] / 255.0;
  file->write_rows(0, row.data(), 1);
  file->write_rows(1, w.data(), w.size() / d);
  return file;
}

}  // namespace detail

NormalizeResult normalize_to_folder(Normalization& job, const std::string& dir, bool force,
                                    const PipelineOptions& options,
                                    const PipelineOptions* fit_options, bool output_shards) {
  using detail::NormalizationAccess;
  // Checked and claimed before any work; a failed run removes what it wrote (and the folder, if
  // it created it).
  NormalizationAccess::check_output(job, dir);
  OutputFolder folder(dir, NormalizationAccess::set_names(dir, output_shards ? 1 : 0));
  folder.check_existing(force);
  if (!job.job().save_stats.empty()) check_outputs({job.job().save_stats, "", force});
  if (!job.input().array) {
    // Up front: a --size whose rows cannot be in memory is refused before --fit runs.
    PipelineOptions pipeline = options;
    pipeline.slot_bytes = job.row_bytes();
    check_memory(job.recipe(), pipeline);
  }
  // The planned rows (skipped files only make it smaller) and the labels, headers included, against
  // the free space where the folder is or will be created: before --fit, before writing anything.
  {
    std::error_code ec;
    auto where = std::filesystem::absolute(dir, ec).lexically_normal();
    if (!where.has_filename()) where = where.parent_path();
    if (!std::filesystem::is_directory(where, ec)) where = where.parent_path();
    const std::uint64_t planned = job.planned_rows();
    check_free_space(where.string(),
                     saturating_add(saturating_mul(planned, job.row_bytes()),
                                    job.labels() ? planned * 8 + 128 : 0) +
                         128,
                     "images.npy" + std::string(job.labels() ? " and labels.npy" : "") + " of " +
                         std::to_string(planned) + " rows");
  }
  if (!job.prepared()) job.prepare(fit_options ? *fit_options : options);
  check_cancel(options.cancel);
  // --output-shards in one process: one shard, images-00000.npy (and labels-00000.npy).
  const std::string images_name =
      output_shards ? NormalizationAccess::shard_name("images", 0) : "images.npy";
  const std::string labels_name =
      output_shards ? NormalizationAccess::shard_name("labels", 0) : "labels.npy";
  NpyFileSink sink(folder.path(images_name), job.job().dtype, job.shape(job.planned_rows()));
  NormalizeResult r = job.run(sink, options);

  std::optional<NpyWriter> labels;
  if (job.labels()) {
    labels.emplace(folder.path(labels_name), DType::int64, std::vector<std::uint64_t>{r.rows});
    if (r.rows > 0) labels->write_rows(0, r.labels.data(), r.rows);
  }
  const std::unique_ptr<NpyWriter> whitening = NormalizationAccess::whitening_file(job, folder);
  save_fitted_stats(job, force, options.cancel);  // beside the folder, before its commit
  Manifest m = job.manifest(r);
  if (output_shards) m.shards.push_back({images_name, job.labels() ? labels_name : "", r.rows});
  AtomicFile manifest(folder.path("manifest.json"));
  const std::string text = to_json(m);
  manifest.write(text.data(), text.size());
  check_cancel(options.cancel);
  // One set, the file whose presence means "complete" last: labels.npy, manifest.json, then
  // images.npy; or, for shards (read through the manifest), the shard files, then manifest.json.
  std::vector<AtomicFile*> files;
  if (labels) files.push_back(&labels->file());
  if (whitening) files.push_back(&whitening->file());
  if (output_shards) files.push_back(&sink.writer().file());
  files.push_back(&manifest);
  if (!output_shards) files.push_back(&sink.writer().file());
  folder.commit(files);
  return r;
}

void save_fitted_stats(const Normalization& job, bool force, const std::atomic<bool>* cancel) {
  const std::string& path = job.job().save_stats;
  if (path.empty()) return;
  if (!job.fitted_stats()) invalid(path + ": no fitted statistics to save (--fit, then prepare)");
  write_outputs(*job.fitted_stats(), {path, "", force}, cancel);
}

// ---- arrays ----

Normalizer make_normalizer(const NormalizeJob& job, Size size, std::vector<std::string>* warnings) {
  if (job.fit) invalid("fit needs the data: compute the statistics first (imgnorm.stats)");
  if (size.width <= 0 || size.height <= 0) invalid("image size must be at least 1x1");
  NormalizeJob j = job;
  j.labels = false;
  // The sidecar, if any, is loaded by prepare() for zca/pca only.
  if (!j.stats && !j.stats_path.empty()) j.stats = detail::read_stats_json(j.stats_path);
  const bool gray =
      j.stats ? j.stats->recipe.channels == ChannelOrder::gray : j.channels == ChannelOrder::gray;
  // zca, pca: images of the statistics' size only (the covariance is of their D values).
  if (is_full_image(j.spec.mode) && j.stats && j.stats->acc.pixel_covariance().enabled()) {
    const Size s = j.stats->recipe.size;
    const int nc = gray ? 1 : 3;
    const std::uint64_t d = static_cast<std::uint64_t>(size.width) *
                            static_cast<std::uint64_t>(size.height) *
                            static_cast<std::uint64_t>(nc);
    if (!(s == size) || d != j.stats->acc.pixel_covariance().dimension())
      invalid(fmt::format(
          "{}: the pixel covariance is of {}x{}x{} images (D = {}), not {}x{}x{} (D = {}): {} "
          "whitens images of the statistics' size only",
          j.stats_path.empty() ? std::string("the statistics") : j.stats_path, s.width, s.height,
          nc, j.stats->acc.pixel_covariance().dimension(), size.width, size.height, nc, d,
          to_string(j.spec.mode)));
  }
  // The job is checked and prepared exactly as for an array input; prepare() without fit reads
  // no pixel, so one row of a 1-byte stand-in is enough.
  static const std::uint8_t kNothing = 0;
  NormalizeInput in;
  in.source = "array";
  in.array = ImageArray::from_memory(&kNothing, DType::uint8, 1, size.height, size.width,
                                     gray ? 1 : 3, "array");
  Normalization n(std::move(j), std::move(in));
  if (warnings) *warnings = n.warnings();
  n.prepare({});
  return n.normalizer();
}

namespace {

// normalize_rows for zca and pca: the rows in batches of the whitening kernel.
std::uint64_t normalize_rows_full(const Normalizer& norm, const ImageArray& array, void* out,
                                  int threads, const std::atomic<bool>* cancel) {
  const std::size_t rb =
      detail::FullImageAccess::kernel(norm).rows() * dtype_size(norm.format().dtype);
  auto* dst = static_cast<std::uint8_t*>(out);
  whiten_rows(norm, array,
              static_cast<std::size_t>(
                  std::min<std::uint64_t>(detail::FullImageBatch::kDefaultCapacity, array.rows())),
              threads, cancel,
              [&](std::uint64_t r, const void* row) { std::memcpy(dst + r * rb, row, rb); });
  return 0;
}

}  // namespace

std::vector<std::uint64_t> row_shape(const Normalizer& norm, Size size) {
  const TransformSpec& spec = norm.spec();
  if (spec.mode == Mode::pca)
    return {norm.whitening().size() / std::max<std::size_t>(spec.pixel_mean.size(), 1)};
  const std::uint64_t h = static_cast<std::uint64_t>(size.height);
  const std::uint64_t w = static_cast<std::uint64_t>(size.width);
  const std::uint64_t c = static_cast<std::uint64_t>(norm.channels());
  if (norm.format().layout == Layout::nhwc) return {h, w, c};
  return {c, h, w};
}

std::uint64_t normalize_rows(const Normalizer& norm, const ImageArray& array, void* out,
                             int threads, std::vector<Affine>* per_image_maps,
                             const std::atomic<bool>* cancel) {
  if (array.channels() != norm.channels())
    invalid(array.name() + ": " + std::to_string(array.channels()) + " channels, the " +
            "normalizer expects " + std::to_string(norm.channels()));
  if (is_full_image(norm.spec().mode)) {
    if (per_image_maps) per_image_maps->clear();
    return normalize_rows_full(norm, array, out, threads, cancel);
  }
  std::size_t rb = dtype_size(norm.format().dtype);
  for (std::uint64_t v : row_shape(norm, {array.width(), array.height()}))
    rb *= static_cast<std::size_t>(v);
  const bool per_image = is_per_image(norm.spec().mode);
  std::vector<Affine> maps(per_image ? static_cast<std::size_t>(array.rows()) : 0);
  std::vector<int> constant(static_cast<std::size_t>(array.rows()), 0);
  auto* dst = static_cast<std::uint8_t*>(out);
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  detail::JobArena arena(effective_threads(threads));
  arena.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::uint64_t>(0, array.rows()),
        [&](const tbb::blocked_range<std::uint64_t>& range) {
          std::vector<std::uint8_t> raw;
          std::vector<double> values;
          for (std::uint64_t r = range.begin(); r != range.end(); ++r) {
            if (failed.load() || (cancel && cancel->load())) return;
            try {
              const ArrayRow row = array.row(r, raw, values);
              std::uint8_t* o = dst + r * rb;
              Affine used;
              if (row.values) {
                constant[r] =
                    norm.apply_values(row.values, array.width(), array.height(), o, &used);
              } else {
                used = norm.apply_per_image(row.u8, o, &constant[r]);
              }
              if (per_image) maps[r] = used;
            } catch (const Error& e) {
              std::lock_guard<std::mutex> lock(error_mutex);
              if (!failed.exchange(true))
                error = std::make_exception_ptr(
                    Error(e.code(), array.name() + ": row " + std::to_string(r) + ": " + e.what()));
            } catch (...) {
              std::lock_guard<std::mutex> lock(error_mutex);
              if (!failed.exchange(true)) error = std::current_exception();
            }
          }
        });
  });
  if (error) std::rethrow_exception(error);
  if (cancel && cancel->load()) throw Error(ErrorCode::interrupted, "interrupted");
  std::uint64_t total = 0;
  for (int c : constant) total += static_cast<std::uint64_t>(c);
  if (per_image_maps) *per_image_maps = std::move(maps);
  return total;
}

// ---- denormalize ----

namespace {

// One zca row's values y (in the output layout, dtype and channel order) as doubles in the input
// channel order, HWC: what W⁻¹ is applied to.
void zca_output_values(const std::uint8_t* in, Layout layout, DType dtype, bool swap_rb, int width,
                       int height, int nc, double* y) {
  const std::size_t w = static_cast<std::size_t>(width), h = static_cast<std::size_t>(height);
  for (std::size_t yy = 0; yy < h; ++yy)
    for (std::size_t xx = 0; xx < w; ++xx)
      for (int o = 0; o < nc; ++o) {
        const int ic = nc == 3 && swap_rb ? 2 - o : o;
        const std::size_t src =
            layout == Layout::nhwc ? (yy * w + xx) * nc + o : (o * h + yy) * w + xx;
        double v;
        if (dtype == DType::float32) {
          float f;
          std::memcpy(&f, in + src * 4, 4);
          v = f;
        } else {
          std::uint16_t b;
          std::memcpy(&b, in + src * 2, 2);
          v = half_to_float(b);
        }
        y[(yy * w + xx) * nc + ic] = v;
      }
}

// x = round(255·(A·y + μ)), clamped to 0–255 (NaN → 0), for every row of `reader` into `writer`,
// in batches through the whitening kernel: one fixed fma sequence per value, so the same bits in
// any batch and on any CPU (one dgemv per row streamed all of A from memory for every image).
// values(row bytes, y) gives a row's D values y in the input channel order; swap_rb swaps R and B
// of the u8 result. A: D×D row-major, consumed.
void unwhiten_rows(const NpyReader& reader, NpyWriter& writer, std::vector<double>& a,
                   const std::vector<double>& mean, bool swap_rb,
                   const std::function<void(const std::uint8_t*, double*)>& values,
                   const std::atomic<bool>* cancel,
                   const std::function<void(std::size_t, std::size_t)>& progress) {
  const std::size_t n = mean.size();
  const std::uint64_t rows = reader.header().shape[0];
  const detail::WhiteningKernel kernel(a.data(), n, n);
  std::vector<double>().swap(a);
  const std::size_t cap = static_cast<std::size_t>(std::max<std::uint64_t>(
      1, std::min<std::uint64_t>(detail::FullImageBatch::kDefaultCapacity, rows)));
  const std::size_t rb = static_cast<std::size_t>(reader.header().row_bytes());
  std::vector<std::uint8_t> in(cap * rb), px(cap * n);
  std::vector<double> y(n), zp(detail::WhiteningKernel::packed_size(cap, n), 0.0),
      x(cap * kernel.stride());
  for (std::uint64_t r0 = 0; r0 < rows; r0 += cap) {
    check_cancel(cancel);
    const std::size_t b = static_cast<std::size_t>(std::min<std::uint64_t>(cap, rows - r0));
    reader.read_rows(r0, b, in.data());
    for (std::size_t i = 0; i < b; ++i) {
      values(in.data() + i * rb, y.data());
      detail::WhiteningKernel::pack_row(y.data(), i, n, zp.data());
    }
    kernel.run(zp.data(), b, x.data());
    for (std::size_t i = 0; i < b; ++i) {
      std::uint8_t* o = px.data() + i * n;
      for (std::size_t k = 0; k < n; ++k) {
        const double v = std::round(255.0 * (x[i * kernel.stride() + k] + mean[k]));
        o[k] = !(v > 0) ? 0 : v >= 255 ? 255 : static_cast<std::uint8_t>(v);
      }
      if (swap_rb)
        for (std::size_t k = 0; k + 2 < n; k += 3) std::swap(o[k], o[k + 2]);
    }
    writer.write_rows(r0, px.data(), b);
    if (progress) progress(static_cast<std::size_t>(r0 + b), static_cast<std::size_t>(rows));
  }
  writer.commit();
}

}  // namespace

Manifest denormalize(const std::string& images, const std::string& manifest_path,
                     const std::string& output, bool force, const std::atomic<bool>* cancel,
                     const std::function<void(std::size_t, std::size_t)>& progress) {
  const std::string mpath =
      manifest_path.empty() ? folder_of(images) + "/manifest.json" : manifest_path;
  Manifest m = read_manifest(mpath);
  check_output_path(output, force);
  const int nc = channel_count(m.input_channels);
  const bool swap_rb = nc == 3 && m.channels != m.input_channels;

  NpyReader reader(images);
  const auto& sh = reader.header().shape;
  if (m.mode == Mode::pca) {
    // x = 255·(Σ_k y_k·w_k/|w_k|² + μ): the rows w_k = s_k·u_k of whitening.npy are orthogonal,
    // so with all D of them this is W⁻¹·y. With fewer, the other components are lost.
    const std::string wpath = folder_of(mpath) + "/" + m.whitening.value_or("whitening.npy");
    NpyReader wr(wpath);
    const auto& ws = wr.header().shape;
    if (wr.header().dtype != DType::float64 || ws.size() != 2 || ws[0] < 2)
      throw Error(ErrorCode::format, wpath + ": not the (K+1)xD float64 array of --mode pca");
    const std::uint64_t k = ws[0] - 1, d = ws[1];
    const std::uint64_t h = static_cast<std::uint64_t>(m.recipe.size.height);
    const std::uint64_t w = static_cast<std::uint64_t>(m.recipe.size.width);
    if (h * w * static_cast<std::uint64_t>(nc) != d)
      throw Error(ErrorCode::format,
                  wpath + ": D = " + std::to_string(d) + " does not match " + mpath + "'s recipe");
    if (k < d)
      invalid(mpath + ": --mode pca kept " + std::to_string(k) + " of the D = " +
              std::to_string(d) + " components of each image; the other " + std::to_string(d - k) +
              " are lost, so the images cannot be rebuilt (denormalize inverts --mode pca with "
              "all components: --components " +
              std::to_string(d) + " or none)");
    if (reader.header().dtype != m.dtype || sh.size() != 2 || sh[1] != k)
      throw Error(ErrorCode::format, images + ": does not match " + mpath + " (dtype or shape)");
    if (sh[0] == 0) throw Error(ErrorCode::empty, images + ": the array has no rows");
    std::vector<double> all(static_cast<std::size_t>((k + 1) * d));
    wr.read_rows(0, k + 1, all.data());
    const std::size_t n = static_cast<std::size_t>(d);
    std::vector<double> inv(n * n);  // column j: w_j/|w_j|², stored row-major D×K (K = D)
    for (std::size_t j = 0; j < n; ++j) {
      const double* row = all.data() + (j + 1) * n;
      double q = 0;
      for (std::size_t i = 0; i < n; ++i) q += row[i] * row[i];
      if (!(q > 0) || !std::isfinite(q))
        throw Error(ErrorCode::format, wpath + ": component " + std::to_string(j) + " is zero");
      for (std::size_t i = 0; i < n; ++i) inv[i * n + j] = row[i] / q;
    }
    // The returned manifest describes the images written back (N×H×W×C), as for the other modes.
    m.shape = {sh[0], h, w, std::uint64_t(nc)};
    m.layout = Layout::nhwc;
    NpyWriter writer(output, DType::uint8, {sh[0], h, w, std::uint64_t(nc)});
    const std::vector<double> mean(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
    std::vector<double>().swap(all);
    unwhiten_rows(
        reader, writer, inv, mean, false,
        [&](const std::uint8_t* row, double* y) {  // the K = D components, in order
          for (std::size_t i = 0; i < n; ++i) {
            if (m.dtype == DType::float32) {
              float f;
              std::memcpy(&f, row + i * 4, 4);
              y[i] = f;
            } else {
              std::uint16_t b;
              std::memcpy(&b, row + i * 2, 2);
              y[i] = half_to_float(b);
            }
          }
        },
        cancel, progress);
    return m;
  }
  if (reader.header().dtype != m.dtype || sh.size() != 4)
    throw Error(ErrorCode::format, images + ": does not match " + mpath + " (dtype or rank)");
  const std::uint64_t c = m.layout == Layout::nhwc ? sh[3] : sh[1];
  const std::uint64_t h = m.layout == Layout::nhwc ? sh[1] : sh[2];
  const std::uint64_t w = m.layout == Layout::nhwc ? sh[2] : sh[3];
  if (c != static_cast<std::uint64_t>(nc) || h == 0 || w == 0 || h > 65535 || w > 65535)
    throw Error(ErrorCode::format, images + ": shape does not match " + mpath);
  if (sh[0] == 0) throw Error(ErrorCode::empty, images + ": the array has no rows");

  if (m.mode == Mode::zca_patch)
    invalid(mpath + ": --mode zca-patch cannot be inverted: each output pixel mixes the " +
            std::to_string(m.patch) + "x" + std::to_string(m.patch) +
            " neighbourhood of its input (a convolution, not a per-pixel map); keep the source "
            "images, or use --mode zca-channels, which denormalize inverts");
  // zca: x = 255·(W⁻¹·y + μ) with W⁻¹ = U·diag(1/s)·Uᵀ from W = U·diag(s)·Uᵀ (whitening.npy).
  std::vector<double> zca_mean, zca_inverse;
  if (m.mode == Mode::zca) {
    const std::string wpath = folder_of(mpath) + "/" + m.whitening.value_or("whitening.npy");
    const std::uint64_t d = h * w * static_cast<std::uint64_t>(nc);
    NpyReader wr(wpath);
    const auto& ws = wr.header().shape;
    if (wr.header().dtype != DType::float64 || ws.size() != 2 || ws[0] != d + 1 || ws[1] != d)
      throw Error(ErrorCode::format, wpath + ": not the (D+1)xD float64 whitening array of " +
                                         images + " (D = " + std::to_string(d) + ")");
    std::vector<double> all(static_cast<std::size_t>((d + 1) * d));
    wr.read_rows(0, d + 1, all.data());
    zca_mean.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(d));
    std::vector<double> wm(all.begin() + static_cast<std::ptrdiff_t>(d), all.end());
    std::vector<double> s, u;
    symmetric_eigen_lapack(wm, static_cast<int>(d), s, u, 1);
    const std::size_t n = static_cast<std::size_t>(d);
    for (std::size_t k = 0; k < n; ++k)
      if (!(s[k] > 0) || !std::isfinite(s[k]))
        throw Error(ErrorCode::format, wpath + ": the whitening matrix is not positive definite");
    // W⁻¹ = A·Aᵀ with A = U·diag(1/√s): one dsyrk on one BLAS thread (the same bits whatever
    // OpenBLAS's thread count), the upper triangle mirrored. (A triple loop took minutes at
    // D = 3072.)
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t k = 0; k < n; ++k) u[i * n + k] /= std::sqrt(s[k]);
    zca_inverse.assign(n * n, 0.0);
    {
      detail::BlasThreads serial(1);
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, static_cast<int>(n), static_cast<int>(n),
                  1.0, u.data(), static_cast<int>(n), 0.0, zca_inverse.data(), static_cast<int>(n));
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < i; ++j) zca_inverse[i * n + j] = zca_inverse[j * n + i];
  }
  std::vector<double> mean;
  if (m.mode == Mode::mean_image) {
    if (!m.mean_image)
      invalid(mpath + ": the mean image was computed by --fit and not saved; cannot invert");
    Size sz;
    mean = read_mean_image(*m.mean_image, nc, sz);
    if (sz.width != static_cast<int>(w) || sz.height != static_cast<int>(h))
      throw Error(ErrorCode::format, "the mean image does not match " + images);
  }
  // A shard set (--output-shards) is denormalized one shard at a time: `images` is one of the
  // files its manifest lists, and its rows are those after the shards before it.
  std::uint64_t first_row = 0;
  if (!m.shards.empty()) {
    const std::string name = images.substr(images.rfind('/') + 1);
    auto it = std::find_if(m.shards.begin(), m.shards.end(),
                           [&](const ManifestShard& s) { return s.images == name; });
    if (it == m.shards.end())
      throw Error(ErrorCode::format, images + ": not a shard that " + mpath +
                                         " lists; denormalize takes one of its images-RRRRR.npy");
    for (auto s = m.shards.begin(); s != it; ++s) first_row += s->rows;
    if (sh[0] != it->rows)
      throw Error(ErrorCode::format, images + ": " + std::to_string(sh[0]) + " rows, " + mpath +
                                         " says " + std::to_string(it->rows));
  }
  if (m.mode != Mode::zca && !m.maps &&
      m.per_image_maps.size() != (m.shards.empty() ? sh[0] : m.rows))
    throw Error(ErrorCode::format, mpath + ": no maps for " + std::to_string(sh[0]) + " rows");
  if (!m.shape.empty()) m.shape[0] = sh[0];  // this shard's rows (the whole set's otherwise)

  NpyWriter writer(output, DType::uint8, {sh[0], h, w, std::uint64_t(nc)});
  std::vector<std::uint8_t> in(static_cast<std::size_t>(reader.header().row_bytes()));
  std::vector<std::uint8_t> px(static_cast<std::size_t>(w * h) * nc);
  if (m.mode == Mode::zca) {
    unwhiten_rows(
        reader, writer, zca_inverse, zca_mean, swap_rb,
        [&](const std::uint8_t* row, double* y) {
          zca_output_values(row, m.layout, m.dtype, swap_rb, static_cast<int>(w),
                            static_cast<int>(h), nc, y);
        },
        cancel, progress);
    return m;
  }
  for (std::uint64_t r = 0; r < sh[0]; ++r) {
    check_cancel(cancel);
    reader.read_rows(r, 1, in.data());
    const PixelMap& map = m.maps ? *m.maps : m.per_image_maps[first_row + r];
    try {
      invert(in.data(), m.layout, m.dtype, swap_rb, map, static_cast<int>(w), static_cast<int>(h),
             px.data(), mean.empty() ? nullptr : mean.data());
    } catch (const Error& e) {
      throw Error(e.code(), images + ": row " + std::to_string(r) + ": " + e.what());
    }
    if (swap_rb)
      for (std::size_t i = 0; i < px.size(); i += 3) std::swap(px[i], px[i + 2]);
    writer.write_rows(r, px.data(), 1);
    if (progress) progress(static_cast<std::size_t>(r + 1), static_cast<std::size_t>(sh[0]));
  }
  writer.commit();
  return m;
}

}  // namespace imgnorm
