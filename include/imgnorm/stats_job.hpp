#pragma once
/// \file stats_job.hpp
/// The statistics job (`imgnorm stats`, `imgnorm merge`) as library calls: the exact statistics of
/// a selection of files or of an array of images, the mean image, the outputs written in their
/// commit order, and the rules for merging partial results.
///
///     imgnorm::SelectOptions sel;
///     sel.folder = "flower_photos";
///     imgnorm::StatsJob job;
///     job.recipe.size = {64, 64};
///     imgnorm::StatsFile st = imgnorm::compute_stats(imgnorm::select_dataset(sel), job, {});
///     imgnorm::Summary s = imgnorm::summarize(st.acc);   // s.channel[c].mean, .std (0–255)

#include <string>
#include <vector>

#include "imgnorm/array.hpp"
#include "imgnorm/export.hpp"
#include "imgnorm/pipeline.hpp"
#include "imgnorm/select.hpp"
#include "imgnorm/stats.hpp"

namespace imgnorm {

/// What `imgnorm stats` computes besides the selection.
struct StatsJob {
  Recipe recipe;
  int ddof = 0;  ///< 0 (population, numpy's default) or 1
  /// How the files were selected; set by the Selection overload of compute_stats.
  std::optional<SampleInfo> sample;
  int shard_index = 0;
  int shard_count = 1;
  /// Which selection the files are a shard of (Selection::digest and Selection::files), recorded
  /// as stats.json's "covers". Empty: computed from the dataset when it is the whole selection
  /// (shard_count 1), else unknown.
  std::string selection;
  std::uint64_t selection_files = 0;
  bool mean_image = false;  ///< also keep per-pixel sums (H×W×C of the recipe's size)
  /// K > 0: also the exact moments of every K×K patch (`stats --patch K`, Accumulator::
  /// enable_patch), for `normalize --mode zca-patch --patch K`. Refused when K is even, above
  /// Accumulator::kMaxPatch or larger than the recipe's size.
  int patch = 0;
  /// Also accumulate the cross products of different channels (the covariance; stats.json always
  /// has them). false skips that work for a job that needs only per-channel statistics
  /// (Accumulator::skip_cross_products); the result cannot be written as stats.json.
  bool cross_products = true;
  /// Also keep the exact whole-image moment matrix (`--pixel-covariance`, PixelCovariance; D =
  /// H×W×C of the recipe's size). Refused before allocating when the matrices of every thread do
  /// not fit in the memory limit (check_pixel_covariance_memory).
  bool pixel_covariance = false;
};

/// `job` with what `selection` is recorded in it: its sample, its shard and its identity
/// (stats.json's "sample", "shard" and "covers").
IMGNORM_API StatsJob with_selection(StatsJob job, const Selection& selection);

/// Computes the statistics of the files of `selection` (its sample, shard and digest are recorded).
/// With ResizeMode::none and size 0x0, the size is the first decodable image's (with_image_size),
/// recorded in StatsFile::recipe; an image of another size ends the run (see run_pipeline).
/// Files that fail are listed in StatsFile::skipped with their reason, sorted by path (and passed
/// to options.on_skip). The result is identical whatever options.threads is. The Dataset overload
/// takes the sample/shard fields from `job`; `tool_version` defaults to version().
IMGNORM_API StatsFile compute_stats(const Selection& selection, const StatsJob& job,
                                    const PipelineOptions& options);
IMGNORM_API StatsFile compute_stats(const Dataset& dataset, const StatsJob& job,
                                    const PipelineOptions& options,
                                    const std::string& tool_version);

/// The classes of a finished run without a usable image, in label order: those with no file in
/// the whole dataset (selection.empty_classes) and those whose selected files were all skipped.
/// Their labels are kept; the CLI warns about each one and `--strict` fails on them. A class that
/// has files but none in this sample or shard is not among them.
IMGNORM_API std::vector<std::string> classes_without_images(const Selection& selection,
                                                            const StatsFile& stats);

/// The statistics of an array of images (`normalize --fit` on .npy input). The recipe's channel
/// order and size are taken from the array (channels: 1 → gray, 3 → the recipe's order). Float
/// arrays must hold whole values in 0–255 (Error(invalid_argument) naming the row otherwise).
IMGNORM_API StatsFile compute_stats(const ImageArray& array, const StatsJob& job,
                                    const std::atomic<bool>* cancel = nullptr);

/// The per-pixel mean image of an accumulator with enable_mean_image(): H×W×C doubles, 0–255
/// units, row-major (what `stats --mean-image` writes as float64 .npy). Empty otherwise.
IMGNORM_API std::vector<double> mean_image(const Accumulator& acc);

/// Where the statistics go: stats.json and, optionally, the mean image (.npy). Empty: not written.
struct StatsOutputs {
  std::string stats_json;
  std::string mean_image;
  bool force = false;  ///< replace existing files
  /// The statistics will hold a pixel covariance: its sidecar (pixel_covariance_path(stats_json))
  /// is checked too, and stats_json is required.
  bool pixel_covariance = false;
};
/// Refuses early (before any work) when an output exists (unless force) or its folder is missing.
IMGNORM_API void check_outputs(const StatsOutputs& outputs);
/// Writes the outputs, each atomically; with a pixel covariance, its sidecar
/// (pixel_covariance_path(stats_json), recorded in stats.json by name and SHA-256) too, so
/// stats_json is then required; stats.json last, so a failure leaves no stats.json that
/// looks whole. `cancel` is checked before stats.json is renamed into place.
IMGNORM_API void write_outputs(const StatsFile& stats, const StatsOutputs& outputs,
                               const std::atomic<bool>* cancel = nullptr);

/// Reads a mean image written by `stats --mean-image` (float64 H×W×C, C = `channels`), checking
/// its header before reading the data. Error(format) naming `path` otherwise.
IMGNORM_API std::vector<double> read_mean_image(const std::string& path, int channels, Size& size);

/// Merges partial statistics exactly (`imgnorm merge`): `names[i]` names `parts[i]` in messages.
/// Accepts disjoint shards of one selection and different selections (datasets); refuses
/// (Error(invalid_argument)) two parts that cover a file of the same selection, naming both ("B:
/// covers files that A covers too (all 40 files and shard 1/4 of the same selection (40 files));
/// merging would count them twice"), and whatever merge_into refuses. Parts without "covers" (older
/// files) are checked only for the same shard of the same source. `warnings` receives "k of n
/// shards of SOURCE merged (missing 1/4, 3/4)" for a selection not wholly covered, one warning per
/// part whose coverage is unknown, and one when two different selections have the same source
/// text. The result covers the union (StatsFile::covers; a selection wholly covered is recorded as
/// in a single run over it, so all shards merge into the single run's bytes), with this tool's
/// version.
IMGNORM_API StatsFile merge_stats(const std::vector<StatsFile>& parts,
                                  const std::vector<std::string>& names,
                                  std::vector<std::string>* warnings = nullptr);
/// The same, reading the files (errors name the file).
IMGNORM_API StatsFile merge_stats_files(const std::vector<std::string>& paths,
                                        std::vector<std::string>* warnings = nullptr);

}  // namespace imgnorm
