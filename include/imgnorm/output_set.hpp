#pragma once
/// \file output_set.hpp
/// A normalize output folder read as one array, whichever form it was written in: one
/// images.npy (and labels.npy), or the shards that manifest.json's "shards" lists in row order
/// (`normalize --output-shards`: images-RRRRR.npy and labels-RRRRR.npy, one per mpirun rank).
/// The rows of the shards, one after the other, are the rows of the single images.npy that the
/// same run without --output-shards writes, byte for byte.
///
///     imgnorm::OutputSet set("out");                 // or "out/manifest.json"
///     set.rows(), set.header().shape;                // of the whole set
///     set.read_rows(0, 10, buffer);                  // across shard boundaries
///     std::vector<std::int64_t> y = set.labels();

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "imgnorm/export.hpp"
#include "imgnorm/manifest.hpp"
#include "imgnorm/npy.hpp"

namespace imgnorm {

class IMGNORM_API OutputSet {
 public:
  /// `path`: the output folder or its manifest.json. Reads the manifest and opens every images
  /// file it names (images.npy without "shards"); each must have the manifest's dtype, row shape
  /// and rows. Error(format) or Error(io) naming the file otherwise.
  explicit OutputSet(const std::string& path);
  ~OutputSet();
  OutputSet(const OutputSet&) = delete;
  OutputSet& operator=(const OutputSet&) = delete;

  const Manifest& manifest() const { return manifest_; }
  /// The header one images.npy of the whole set would have (shape[0]: all rows; data_offset 0).
  const NpyHeader& header() const { return header_; }
  std::uint64_t rows() const { return header_.shape.empty() ? 0 : header_.shape[0]; }
  /// Copies rows [first, first + n) of the whole set into `out` (n · header().row_bytes() bytes),
  /// reading across shards as needed. Error(invalid_argument) outside the set, Error(io).
  void read_rows(std::uint64_t first, std::uint64_t n, void* out) const;
  /// The label of every row (labels.npy, or the label shards in order); empty without labels.
  std::vector<std::int64_t> labels() const;
  /// The images files, in row order (one for images.npy).
  const std::vector<std::string>& images_files() const { return images_; }

 private:
  std::string dir_;
  Manifest manifest_;
  NpyHeader header_;
  std::vector<std::string> images_, labels_;
  std::vector<std::unique_ptr<NpyReader>> readers_;
  std::vector<std::uint64_t> starts_;  // first row of each file; back() = rows()
};

}  // namespace imgnorm
