#pragma once
// The pieces of normalize_to_folder (src/ only), shared by the single-process job
// (src/normalize.cpp) and the distributed one (src/distributed.cpp).

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "imgnorm/normalize.hpp"

namespace imgnorm::detail {

struct NormalizationAccess {
  /// DIR/images.npy, DIR/labels.npy, DIR/manifest.json ("DIR/" names DIR).
  struct Paths {
    std::string images, labels, manifest;
  };
  static Paths output_paths(const std::string& dir);
  /// The checks made before any work: not inside the dataset, existing outputs need `force`,
  /// the folder exists or can be created.
  static void check_output(const Normalization& job, const std::string& dir, const Paths& paths,
                           bool force);
  static NormalizeResult run_entries(const Normalization& job, const std::vector<Entry>& entries,
                                     RowSink& sink, const PipelineOptions& options) {
    return job.run_entries(entries, sink, options);
  }
  /// The commit: old outputs removed (force), labels.npy, manifest.json, then `commit_images`
  /// (renames images.npy into place) last.
  static void commit(const Normalization& job, const NormalizeResult& result, const Paths& paths,
                     bool force, const std::function<void()>& commit_images,
                     const std::atomic<bool>* cancel);
};

}  // namespace imgnorm::detail
