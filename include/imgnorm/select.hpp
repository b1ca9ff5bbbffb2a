#pragma once
/// \file select.hpp
/// Which files a job reads: open a dataset (a class-folder tree or a list file), then take a
/// seeded sample of it, then one shard of the sample — always in this order, so the shards of a
/// sampled run merge into the sampled run.
///
///     imgnorm::SelectOptions o;
///     o.folder = "flower_photos";
///     o.sample = "10%";
///     imgnorm::Selection s = imgnorm::select_dataset(o);   // s.dataset.entries: the files

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imgnorm/dataset.hpp"
#include "imgnorm/export.hpp"

namespace imgnorm {

/// How a sample was drawn: `sampled` images out of `population`, uniformly without replacement.
struct SampleInfo {
  std::uint64_t population = 0;
  std::uint64_t sampled = 0;
  std::uint64_t seed = 0;
  std::string spec;  ///< as the user gave it: "500" or "10%"
  bool operator==(const SampleInfo&) const = default;
};

/// What to select. Exactly one of `folder` and `list` is set.
struct SelectOptions {
  std::string folder;  ///< dataset folder (class folders inside, or images)
  std::string list;    ///< a list file, one path per line (see read_list)
  /// Empty: every file. Else a sample without replacement: "500" (a count) or "10%".
  std::string sample;
  std::uint64_t seed = 0;  ///< seed of the sample (a fixed default, so runs repeat)
  int shard_index = 0;     ///< keep every shard_count-th file starting at shard_index
  int shard_count = 1;
  ScanOptions scan;
};

/// The files of a job and how they were chosen.
struct Selection {
  Dataset dataset;     ///< entries after sample and shard; classes and ignored whole
  std::string source;  ///< the folder or list file as given
  std::optional<SampleInfo> sample;
  int shard_index = 0;
  int shard_count = 1;
  /// What files the selection is, before sharding: selection_digest() of the sampled dataset
  /// ("sha256:<64 hex digits>"), and how many files that is. stats.json records both ("covers"),
  /// so that merge can tell shards of one selection from different datasets.
  std::string digest;
  std::uint64_t files = 0;
  /// Classes without any file in the whole dataset (an empty class folder, a class folder that
  /// was not scanned): their label is kept. See classes_without_images() (stats_job.hpp).
  std::vector<std::string> empty_classes;
  /// To show the user: "--sample K takes all N images: the sample is the whole dataset".
  std::vector<std::string> warnings;
};

/// The identity of a selection of files: "sha256:" + the lower-case hex SHA-256 of
/// "imgnorm-selection 1\0" followed by each entry's path relative to the dataset, in entry order,
/// each ended by a NUL byte. The relative path is the entry's path without `dataset.root` + "/"
/// (a folder) or without the list file's folder (a list file), then lexically normalized ("./a"
/// and "a//b/../c" name "a" and "a/c"; an absolute path outside the list's folder stays absolute).
/// So the same files give the same digest wherever the dataset lies and however its root is
/// spelled, and the digest depends on nothing else (not the threads, the time or the host).
IMGNORM_API std::string selection_digest(const Dataset& dataset);

/// Opens the dataset, then samples, then computes the selection's digest, then shards. Throws
/// Error(invalid_argument) unless exactly one of folder and list is given or for a bad
/// sample/shard, Error(io) for a missing folder or list, and Error(empty) "<source>: no image files
/// found (N other files ignored)" when the dataset has no image file at all (before sampling).
IMGNORM_API Selection select_dataset(const SelectOptions& options);

/// The warning the CLI and Python give for each class without a usable image
/// (classes_without_images, NormalizeResult::empty_classes): "class 'NAME' has no usable image
/// (its label is kept; --strict fails on it)".
IMGNORM_API std::string empty_class_warning(const std::string& name);

}  // namespace imgnorm
