#pragma once
/// \file normalize.hpp
/// The normalize job (`imgnorm normalize`) as library calls: a dataset (folder, list) or an array
/// of images, through the recipe and a mode, into rows of a tensor handed to a RowSink in row
/// order; plus the output folder (images.npy, labels.npy, manifest.json) committed whole, and the
/// inverse (denormalize).
///
///     imgnorm::NormalizeJob job;
///     job.spec.mode = imgnorm::Mode::standardize;
///     job.stats = imgnorm::read_stats_file("stats.json");   // training statistics and recipe
///     imgnorm::Normalization n(job, imgnorm::open_input("test/"));
///     n.prepare({});                                        // loads/fits what the mode needs
///     imgnorm::MemorySink rows;
///     imgnorm::NormalizeResult r = n.run(rows, {});         // rows.data(): r.rows × row_bytes()
///
/// or, as the CLI does: `imgnorm::normalize_to_folder(n, "test_out", force, options)`.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "imgnorm/array.hpp"
#include "imgnorm/export.hpp"
#include "imgnorm/manifest.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/pipeline.hpp"
#include "imgnorm/select.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/stats_job.hpp"
#include "imgnorm/transform.hpp"

namespace imgnorm {

namespace detail {
struct NormalizationAccess;  // src/distributed.cpp: runs a block of the entries
}

/// Receives the rows of a normalize job, one at a time, in row order (0, 1, 2, ...), from one
/// thread at a time. A row is row_bytes bytes in the job's layout and dtype.
class IMGNORM_API RowSink {
 public:
  virtual ~RowSink();
  /// Called once before any row: the most rows that can come (skipped files make fewer) and the
  /// bytes of one row.
  virtual void begin(std::uint64_t planned_rows, std::size_t row_bytes) = 0;
  /// Row `row`; `data` is valid during the call only.
  virtual void write_row(std::uint64_t row, const void* data) = 0;
  /// Called once after the last row with the number of rows written.
  virtual void end(std::uint64_t rows) = 0;
};

/// Keeps the rows in memory, contiguous (an N×… array once end() was called).
class IMGNORM_API MemorySink : public RowSink {
 public:
  void begin(std::uint64_t planned_rows, std::size_t row_bytes) override;
  void write_row(std::uint64_t row, const void* data) override;
  void end(std::uint64_t rows) override;
  std::vector<std::uint8_t>& data() { return data_; }
  std::size_t row_bytes() const { return row_bytes_; }

 private:
  std::vector<std::uint8_t> data_;
  std::size_t row_bytes_ = 0;
};

/// Writes the rows into a .npy file through NpyWriter (temporary name; commit() renames it).
class IMGNORM_API NpyFileSink : public RowSink {
 public:
  /// `shape` is the whole array's, shape[0] the planned rows.
  NpyFileSink(std::string path, DType dtype, std::vector<std::uint64_t> shape);
  void begin(std::uint64_t planned_rows, std::size_t row_bytes) override;
  void write_row(std::uint64_t row, const void* data) override;
  void end(std::uint64_t rows) override;
  /// Makes the file visible under its name (after end()).
  void commit() { writer_.commit(); }
  /// The writer, to commit its file with others (OutputFolder::commit).
  NpyWriter& writer() { return writer_; }

 private:
  NpyWriter writer_;
};

/// What a normalize job reads: the files of a dataset, or an array of images.
struct NormalizeInput {
  std::string source;  ///< folder, list file or .npy as given (manifest "source")
  Dataset dataset;     ///< when !array
  std::optional<ImageArray> array;
  bool from_list = false;  ///< the files came from a list file
};
/// A .npy path (by its extension, any case) opens an ImageArray; else a folder, scanned with
/// `scan` (follow_links, cancel). With `list`, the list file (and `input` must be empty). Throws
/// Error(empty) for a dataset without images.
IMGNORM_API NormalizeInput open_input(const std::string& input, const std::string& list = "",
                                      const ScanOptions& scan = {});

/// Everything that decides the output besides the input.
struct NormalizeJob {
  /// The mode and the user's parameters (range, unit, eps, custom mean/std, mean_image_std). The
  /// dataset constants (mean, std, min, max, mean image) are filled in from the statistics.
  TransformSpec spec;
  /// Training statistics: they give the constants, the recipe and the class list. Alternatively
  /// `stats_path` (read by the constructor, named in messages and in the manifest).
  std::optional<StatsFile> stats;
  std::string stats_path;
  /// spec.unit was chosen explicitly (`--unit` given). Without it, custom constants that all lie
  /// in 0–1 (some strictly between) give a warning that they look like 0–1 units under unit 255.
  bool unit_given = false;
  /// Compute the statistics of this input first (a second pass); excludes stats.
  bool fit = false;
  /// With fit: also write the fitted statistics to this stats.json (`--save-stats`), the file
  /// that `stats`/`--stats` then takes to normalize test data the same way. normalize_to_folder
  /// checks it with its other outputs and writes it before images.npy; after a run into another
  /// sink, save_fitted_stats() writes it. Refused without fit.
  std::string save_stats;
  /// With fit: the delta degrees of freedom of the fitted statistics (`--ddof`), 0 (population,
  /// numpy's default) or 1 (sample: sklearn's PCA, torch.std): every statistic the mode uses (the
  /// channel std, the channel, patch or pixel covariance) divides by N − ddof, and `save_stats`
  /// gets the stats.json `imgnorm stats --ddof N` writes. Unset: 0. Refused without fit (a
  /// stats.json carries its own ddof) and for other values.
  std::optional<int> ddof;
  /// Recipe fields given explicitly; the others are the statistics' (or the defaults without
  /// statistics). A difference from the training recipe gives a warning.
  RecipeOverrides recipe;
  /// Output channel order. Unset: the statistics' order (bgr for caffe; gray for gray input).
  std::optional<ChannelOrder> channels;
  Layout layout = Layout::nhwc;
  DType dtype = DType::float32;  ///< float32 or float16
  bool labels = true;            ///< labels of the training class list (not for array input)
  /// mean-image mode: the mean image (`stats --mean-image`); without it, --fit computes it.
  std::string mean_image_path;
};

/// What a run produced, in row order.
struct NormalizeResult {
  std::uint64_t rows = 0;
  std::vector<std::string> files;      ///< row order (empty for array input)
  std::vector<std::int64_t> labels;    ///< row order (empty without labels)
  std::vector<Skipped> skipped;        ///< dataset order
  std::vector<Affine> per_image_maps;  ///< row order (per-image modes)
  std::uint64_t constant_channels = 0;
  /// Classes of the input (folder or list) of which no row came: an empty class folder, or every
  /// file skipped. Labels are unaffected; the CLI warns (empty_class_warning) and --strict fails.
  std::vector<std::string> empty_classes;
};

/// A normalize job checked against its input: construct (cheap checks, in the CLI's order), then
/// prepare() (reads the mean image, runs --fit, builds the Normalizer), then run() once.
class IMGNORM_API Normalization {
 public:
  /// Checks the job (flags that do not go together, constants the mode needs, channel orders,
  /// class list). Throws Error(invalid_argument) with the CLI's messages.
  Normalization(NormalizeJob job, NormalizeInput input);
  /// The same, opening `input` (or `list`) with open_input() after the job's own checks (so a bad
  /// flag is reported before a missing folder).
  Normalization(NormalizeJob job, const std::string& input, const std::string& list = "",
                const ScanOptions& scan = {});
  ~Normalization();
  Normalization(Normalization&&) noexcept;

  /// Warnings to show (the recipe differs from the training recipe, ...); prepare() may add some
  /// (--mode zca with fewer images than values per image).
  const std::vector<std::string>& warnings() const { return warnings_; }
  /// The effective recipe (an array input's size and channels).
  const Recipe& recipe() const { return recipe_; }
  const NormalizeJob& job() const { return job_; }
  const NormalizeInput& input() const { return input_; }
  /// The shape of the output tensor for the planned rows (N,H,W,C or N,C,H,W).
  std::vector<std::uint64_t> shape(std::uint64_t rows) const;
  std::uint64_t planned_rows() const;
  std::size_t row_bytes() const;
  /// Whether labels are produced.
  bool labels() const { return labels_; }
  /// The training class id of a dataset entry (labels() only).
  std::int64_t label_of(const Entry& e) const { return label_of_class_[e.label]; }

  /// Fixes the size of --resize none (the first decodable image's, as with_image_size; every
  /// image must have it), reads the mean image, runs the --fit pass (with `options`), builds the
  /// Normalizer. shape() and row_bytes() are final only after it.
  void prepare(const PipelineOptions& options);
  bool prepared() const { return normalizer_ != nullptr; }
  /// After prepare().
  const Normalizer& normalizer() const { return *normalizer_; }
  /// After prepare() with job.fit: the statistics of this input that the fit pass computed (the
  /// stats.json `imgnorm stats` would write with this recipe); else nullptr.
  const StatsFile* fitted_stats() const { return fitted_ ? &*fitted_ : nullptr; }
  /// Streams every row to `sink` (begin, rows in order, end). Files that fail are skipped (and
  /// passed to options.on_skip); Error(empty) when no row could be produced.
  NormalizeResult run(RowSink& sink, const PipelineOptions& options) const;
  /// The manifest of a run.
  Manifest manifest(const NormalizeResult& result) const;

 private:
  NormalizeJob job_;
  NormalizeInput input_;
  Recipe recipe_;
  OutputFormat format_;
  bool labels_ = false;
  std::vector<std::string> classes_;
  std::vector<int> label_of_class_;
  std::vector<std::string> warnings_;
  std::unique_ptr<Normalizer> normalizer_;
  std::optional<StatsFile> fitted_;

  /// prepare() whose --fit pass is `fit` (the statistics of this input for the given StatsJob;
  /// the distributed job computes them over all ranks); null: computed here. For zca and pca,
  /// `whitening` (when set) gives the whitening matrix: it is called with the function that
  /// computes it here (the eigen-decomposition) and returns the matrix to use (the distributed
  /// job: rank 0's, broadcast to every rank).
  void prepare(
      const PipelineOptions& options,
      const std::function<StatsFile(const StatsJob&, const PipelineOptions&)>& fit,
      const std::function<std::vector<double>(const std::function<std::vector<double>()>& compute)>&
          whitening = {});

  friend struct detail::NormalizationAccess;
  void check_job();
  void warn_custom_unit(const TransformSpec& spec);
  void bind_input();
  // Streams `entries` (a block of the dataset's) to `sink`; no rows is not an error here.
  NormalizeResult run_entries(const std::vector<Entry>& entries, RowSink& sink,
                              const PipelineOptions& options) const;
  // run_entries for zca and pca: the images in batches of the whitening kernel.
  NormalizeResult run_entries_full(const std::vector<Entry>& entries, RowSink& sink,
                                   const PipelineOptions& options) const;
};

/// The output folder of `imgnorm normalize`: DIR/images.npy, DIR/labels.npy, DIR/manifest.json,
/// one set. Before any work: the folder may not be inside the dataset; it is claimed for the run
/// (OutputFolder: created when missing, locked, so a second run into it fails with "DIR: in use
/// by another imgnorm run"; temporaries of dead runs removed); any existing member of the set
/// needs `force`. Then prepares, runs, and writes the three files under temporary names; only when
/// all are complete are they committed together (images.npy renamed in last; a labels.npy the run
/// does not write, as with labels off, goes with the old set). A run that fails or is interrupted
/// leaves the folder as it found it: the old set, or no folder when it created it.
/// `fit_options` (default: `options`) run the --fit pass.
/// `output_shards` (`--output-shards`): the set is written as shards, as `mpirun` writes one per
/// rank: here one, DIR/images-00000.npy (and labels-00000.npy), committed before manifest.json,
/// whose `shards` lists them (docs/scale-out.md). Any earlier member of the set (images.npy or
/// shards of another run) is replaced with it.
IMGNORM_API NormalizeResult normalize_to_folder(Normalization& job, const std::string& dir,
                                                bool force, const PipelineOptions& options,
                                                const PipelineOptions* fit_options = nullptr,
                                                bool output_shards = false);

/// Writes the fitted statistics of a prepared --fit job to job.save_stats (atomically; an existing
/// file only with `force`). Does nothing without save_stats. normalize_to_folder calls it itself.
IMGNORM_API void save_fitted_stats(const Normalization& job, bool force,
                                   const std::atomic<bool>* cancel = nullptr);

/// The Normalizer `normalize` builds for this job, for images of `size` (the channel count and
/// order are the statistics' — images must come in that order —, or rgb without statistics; gray
/// when job.channels is gray). Reads job.stats_path when job.stats is empty. job.fit is refused:
/// fitting needs data (compute the statistics first). For arrays of images: normalize_rows().
/// `warnings` (if given) receives the job's warnings (Normalization::warnings()).
IMGNORM_API Normalizer make_normalizer(const NormalizeJob& job, Size size,
                                       std::vector<std::string>* warnings = nullptr);

/// The shape of one output row of `norm` for images of `size`: H,W,C (nhwc) or C,H,W (nchw); for
/// pca the K components.
IMGNORM_API std::vector<std::uint64_t> row_shape(const Normalizer& norm, Size size);

/// Normalizes every row of `array` into `out` (array.rows() × the rows' bytes, in the Normalizer's
/// layout and dtype), rows in parallel on `threads` threads (0: all cores); the same values as a
/// normalize job over the array, whatever the thread count. Returns the number of constant
/// channels; `per_image_maps` (if given) receives each row's map. Error(interrupted) when `cancel`
/// is raised; Error(invalid_argument) when the array's channels or size do not fit.
IMGNORM_API std::uint64_t normalize_rows(const Normalizer& norm, const ImageArray& array, void* out,
                                         int threads = 0,
                                         std::vector<Affine>* per_image_maps = nullptr,
                                         const std::atomic<bool>* cancel = nullptr);

/// `imgnorm denormalize`: maps a normalized images.npy back to uint8 N×H×W×C (in its channel
/// order) with the manifest beside it (or `manifest_path`), exactly for every mode. Writes
/// `output` atomically. Returns the manifest used. `progress` (if set) receives (rows done, rows).
/// A shard set (--output-shards) is denormalized one shard at a time: `images` is one of the
/// images-RRRRR.npy its manifest lists (Error(format) otherwise), and the returned manifest's
/// shape[0] is that shard's rows.
IMGNORM_API Manifest
denormalize(const std::string& images, const std::string& manifest_path, const std::string& output,
            bool force, const std::atomic<bool>* cancel = nullptr,
            const std::function<void(std::size_t, std::size_t)>& progress = {});

}  // namespace imgnorm
