#pragma once
/// \file manifest.hpp
/// manifest.json, the description `normalize` writes beside images.npy: the files in row order,
/// skipped files, the recipe, the mode and the exact map of every channel (or of every image), so
/// that the tensor can be understood, reproduced and inverted (denormalize). Schema:
/// docs/normalize.md.
///
///     imgnorm::Manifest m = imgnorm::read_manifest("out/manifest.json");
///     m.rows, m.files[0].path, m.maps->ch[0].a();

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "imgnorm/dataset.hpp"
#include "imgnorm/dtype.hpp"
#include "imgnorm/export.hpp"
#include "imgnorm/recipe.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/transform.hpp"

namespace imgnorm {

/// One row's file and its label (absent with --no-labels).
struct ManifestFile {
  std::string path;
  std::optional<std::int64_t> label;
  bool operator==(const ManifestFile&) const = default;
};

/// One file of a shard set (`normalize --output-shards`): its images, its labels (empty with
/// --no-labels) and its rows. Names are plain file names in the manifest's folder.
struct ManifestShard {
  std::string images;  ///< "images-RRRRR.npy"
  std::string labels;  ///< "labels-RRRRR.npy", or empty
  std::uint64_t rows = 0;
  bool operator==(const ManifestShard&) const = default;
};

/// Everything manifest.json holds (format "imgnorm-manifest", version 1).
struct Manifest {
  std::string tool_version;
  std::string source;                ///< dataset folder, list file or .npy given
  std::optional<std::string> stats;  ///< the stats.json used, as given
  bool fit = false;                  ///< statistics computed from this input
  /// The ddof of the statistics the map was built from (`--fit --ddof N`, or the --stats file's);
  /// unset (null) when the job used no statistics.
  std::optional<int> ddof;
  Mode mode = Mode::standardize;
  std::string formula;  ///< human-readable, Normalizer::formula()
  int unit = 255;
  std::optional<std::pair<double, double>> range;
  std::optional<double> eps;
  /// mean-image mode: the mean image file (absolute path), or none when fitted and not saved.
  std::optional<std::string> mean_image;
  bool divide_std = false;  ///< mean-image mode: also divided by the dataset std
  Layout layout = Layout::nhwc;
  DType dtype = DType::float32;
  ChannelOrder channels = ChannelOrder::rgb;        ///< output channel order
  ChannelOrder input_channels = ChannelOrder::rgb;  ///< order of the decoded pixels
  std::vector<std::uint64_t> shape;  ///< of images.npy (of the whole shard set with `shards`)
  Recipe recipe;
  std::vector<double> dataset_mean, dataset_std;  ///< 0–255, input order (dataset modes)
  /// The map: one for the whole dataset (`maps`), or one per row (`per_image_maps`, per-image
  /// modes). For mean-image mode `maps` has m = 0 and the mean image is subtracted per pixel.
  std::optional<PixelMap> maps;
  std::vector<PixelMap> per_image_maps;
  /// zca-patch (which has no `maps`): K, the patch mean (K²·C, index (dy·K + dx)·C + c, 0–255)
  /// and the C × K²C filter (Normalizer::patch_filter, input channel order).
  int patch = 0;
  std::vector<double> patch_mean, patch_filter;
  /// zca (which has no `maps`): the file, in the manifest's folder, that holds μ and W as one
  /// (D+1)×D float64 array: row 0 the per-pixel mean, rows 1..D the matrix W, both in 0–1 units
  /// and input channel order (y = W·(x/255 − μ)). `eps` is the ε of W.
  std::optional<std::string> whitening;
  /// pca: K (the rows of the matrix in the whitening file) and whether they are whitened.
  int components = 0;
  bool whiten = true;
  std::uint64_t constant_channels = 0;
  std::vector<std::string> classes;  ///< the training class list: label = index
  bool labels = false;               ///< labels.npy written
  std::uint64_t rows = 0;
  /// --output-shards: the shards in row order (their rows add up to `rows`; shard k holds the rows
  /// after those of shards 0..k-1). Empty: one images.npy (and labels.npy).
  std::vector<ManifestShard> shards;
  std::vector<ManifestFile> files;  ///< row order (empty for .npy input)
  std::vector<Skipped> skipped;
  std::vector<Ignored> ignored;
};

/// The manifest.json text: one key per line, arrays of objects one element per line.
IMGNORM_API std::string to_json(const Manifest& manifest);
/// Parses and validates manifest.json text. Error(format) "what is wrong" otherwise.
IMGNORM_API Manifest manifest_from_json(const std::string& text);
/// Reads a manifest.json; errors name the file ("path: not an imgnorm manifest.json").
IMGNORM_API Manifest read_manifest(const std::string& path);

}  // namespace imgnorm
