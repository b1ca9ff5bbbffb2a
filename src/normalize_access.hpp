#pragma once
// The pieces of normalize_to_folder (src/ only), shared by the single-process job
// (src/normalize.cpp) and the distributed one (src/distributed.cpp).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "imgnorm/normalize.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/output.hpp"
#include "imgnorm/stats_job.hpp"

namespace imgnorm::detail {

struct NormalizationAccess {
  static NormalizeResult run_entries(const Normalization& job, const std::vector<Entry>& entries,
                                     RowSink& sink, const PipelineOptions& options) {
    return job.run_entries(entries, sink, options);
  }
  /// prepare() with the --fit pass done by `fit` and the zca/pca matrix given by `whitening`
  /// (see Normalization's private prepare).
  static void prepare(
      Normalization& job, const PipelineOptions& options,
      const std::function<StatsFile(const StatsJob&, const PipelineOptions&)>& fit,
      const std::function<std::vector<double>(const std::function<std::vector<double>()>&)>&
          whitening = {}) {
    job.prepare(options, fit, whitening);
  }
  /// zca, pca: whitening.npy of the prepared job in `folder` (μ/255, then the K×D matrix:
  /// (K+1)×D float64, Manifest::whitening), written, not committed; else null.
  static std::unique_ptr<NpyWriter> whitening_file(const Normalization& job,
                                                   const OutputFolder& folder);
  /// The checks before the output folder is claimed: not inside the dataset it reads.
  static void check_output(const Normalization& job, const std::string& dir);
  /// "images-00003.npy" for ("images", 3): the file of shard 3 (--output-shards).
  static std::string shard_name(const char* stem, int index);
  /// The members of the output folder's set (OutputFolder names): images.npy, labels.npy,
  /// manifest.json, the `shards` shard files of this run (images-RRRRR.npy, labels-RRRRR.npy),
  /// and every shard file already in `dir` (or left there as a temporary): a commit replaces the
  /// whole previous set, whichever form it had, and a claim cleans up after either.
  static std::vector<std::string> set_names(const std::string& dir, int shards);
};

}  // namespace imgnorm::detail
