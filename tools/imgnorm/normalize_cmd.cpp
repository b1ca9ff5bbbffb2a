// imgnorm normalize: a dataset (folder, list or .npy) to a normalized images.npy, labels.npy and
// manifest.json with the training statistics of a stats.json (library: imgnorm/normalize.hpp).

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <memory>
#include <optional>

#include "cli.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/normalize.hpp"
#include "values.hpp"

namespace imgnorm::cli {
namespace {

struct NormalizeFlags {
  std::string input;
  std::string list;
  std::string output;
  std::string stats;
  bool fit = false;
  std::string save_stats;
  std::optional<int> ddof;
  std::string mode = "standardize";
  std::string range;
  int unit = 255;
  std::string mean, std;
  std::string mean_image;
  bool divide_std = false;
  std::optional<double> eps;
  int patch = 0;
  int components = 0;
  bool no_whiten = false;
  std::string layout = "nhwc";
  std::string dtype = "float32";
  std::string channels;
  bool no_labels = false;
  bool strict = false;
  bool force = false;
  bool output_shards = false;
  bool follow_links = false;
  RecipeFlags recipe;
  RunFlags run;
};

NormalizeJob make_job(const CLI::App& app, const NormalizeFlags& f) {
  NormalizeJob job;
  TransformSpec& spec = job.spec;
  spec.mode = parse_mode_flag(f.mode);
  spec.unit = f.unit;
  job.unit_given = app.count("--unit") > 0;
  spec.eps = f.eps;
  spec.patch = f.patch;
  spec.components = f.components;
  spec.whiten = !f.no_whiten;
  spec.mean_image_std = f.divide_std;
  if (!f.range.empty()) {
    auto r = parse_numbers(f.range, "--range");
    if (r.size() != 2) throw Error(ErrorCode::invalid_argument, "--range takes lo,hi");
    spec.range = std::make_pair(r[0], r[1]);
  }
  if (!f.mean.empty()) spec.mean = parse_numbers(f.mean, "--mean");
  if (!f.std.empty()) spec.std = parse_numbers(f.std, "--std");
  job.stats_path = f.stats;
  job.fit = f.fit;
  job.save_stats = f.save_stats;
  job.ddof = f.ddof;
  job.recipe = f.recipe.overrides(app);
  if (!f.channels.empty()) job.channels = parse_channel_order(f.channels);
  job.layout = parse_layout(f.layout);
  job.dtype = parse_dtype(f.dtype);
  job.labels = !f.no_labels;
  job.mean_image_path = f.mean_image;
  return job;
}

void print_result(const Normalization& n, const NormalizeResult& r, std::string dir,
                  int shards = 0) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const auto shape = n.shape(r.rows);
  const Normalizer& norm = n.normalizer();
  const std::string images =
      shards ? fmt::format("images-RRRRR.npy, {} shard{}", shards, shards == 1 ? "" : "s")
             : "images.npy";
  fmt::print("imgnorm normalize: {} images -> {}/{} ({} {} {}, {}), mode {}\n", r.rows,
             printable(dir), images, fmt::join(shape, "x"), to_string(norm.format().layout),
             to_string(norm.format().dtype), to_string(norm.format().channels),
             to_string(norm.spec().mode));
  fmt::print("  {}\n", norm.formula());
  if (!r.skipped.empty())
    fmt::print("  {} files skipped (listed in manifest.json)\n", r.skipped.size());
  if (r.constant_channels)
    fmt::print("  {} constant image channels mapped to a constant\n", r.constant_channels);
}

// Under mpirun: rank 0 scans, every rank normalizes its block into the one images.npy.
int normalize_ranks(Communicator& comm, const CLI::App& app, const NormalizeFlags& f) {
  NormalizeJob job;
  collective(comm, [&] { job = make_job(app, f); });
  NormalizeInput input = open_input(comm, f.input, f.list);
  std::optional<Normalization> n;
  collective(comm, [&] { n.emplace(std::move(job), std::move(input)); });
  const bool root = comm.rank() == 0;
  if (root)
    for (const auto& w : n->warnings()) print_warning(w);
  const std::size_t shown = n->warnings().size();
  const NormalizeResult r = normalize_to_folder(comm, *n, f.output, f.force,
                                                f.run.options("normalize", true), f.output_shards);
  if (root) {
    for (std::size_t i = shown; i < n->warnings().size(); ++i)
      print_warning(n->warnings()[i]);  // those of prepare(), as without mpirun
    print_result(*n, r, f.output, f.output_shards ? comm.size() : 0);
  }
  const std::uint64_t skipped = comm.sum(root ? r.skipped.size() : 0);
  if (f.strict && skipped > 0) {
    if (root) print_error(std::to_string(skipped) + " files were skipped (--strict)");
    return kSkipped;
  }
  return kOk;
}

int normalize_main(const CLI::App& app, const NormalizeFlags& f) {
  agreed([&] {
    if (f.input.empty() == f.list.empty())
      throw Error(ErrorCode::invalid_argument,
                  "give either a dataset (folder or .npy) or --list FILE");
    if (!f.stats.empty() && f.fit)
      throw Error(ErrorCode::invalid_argument, "give --stats FILE or --fit, not both");
  });
  if (g_comm) return normalize_ranks(*g_comm, app, f);
  ScanOptions scan;
  scan.follow_links = f.follow_links;
  scan.cancel = &g_cancel;
  Normalization n(make_job(app, f), f.input, f.list, scan);
  for (const auto& w : n.warnings()) print_warning(w);
  const std::size_t shown = n.warnings().size();
  const PipelineOptions fit_options = f.run.options("fit");
  const NormalizeResult r = normalize_to_folder(
      n, f.output, f.force, f.run.options("normalize", true), &fit_options, f.output_shards);
  for (std::size_t i = shown; i < n.warnings().size(); ++i)
    print_warning(n.warnings()[i]);  // those of prepare() (the statistics it read or fitted)
  for (const auto& c : r.empty_classes) print_warning(empty_class_warning(c));
  print_result(n, r, f.output, f.output_shards ? 1 : 0);
  if (f.strict && !r.skipped.empty()) {
    print_error(std::to_string(r.skipped.size()) + " files were skipped (--strict)");
    return kSkipped;
  }
  if (f.strict && !r.empty_classes.empty()) {
    print_error(std::to_string(r.empty_classes.size()) +
                " classes have no usable image (--strict)");
    return kSkipped;
  }
  return kOk;
}

}  // namespace

Command add_normalize_command(CLI::App& app) {
  auto f = std::make_shared<NormalizeFlags>();
  CLI::App* sub = app.add_subcommand(
      "normalize", "Normalize a dataset into images.npy, labels.npy and manifest.json");
  sub->add_option("dataset", f->input, "Dataset folder, or a .npy array (uint8/float NHWC)");
  sub->add_option("--list", f->list, "Read image paths from FILE (one per line) instead");
  sub->add_flag("--follow-links", f->follow_links,
                "Follow symlinks that lead out of the dataset folder (each folder is still "
                "scanned once)");
  sub->add_option("-o,--output", f->output, "Output folder (created if missing)")->required();
  sub->add_option("--stats", f->stats, "Training statistics (stats.json from imgnorm stats)");
  sub->add_flag("--fit", f->fit, "Compute the statistics of the input first (two passes)");
  sub->add_option("--save-stats", f->save_stats,
                  "With --fit: also write the fitted statistics (stats.json) here, for --stats "
                  "on test data");
  sub->add_option("--ddof", f->ddof,
                  "With --fit: delta degrees of freedom of the fitted std and covariances, 0 "
                  "(numpy, default) or 1 (sample: sklearn PCA, torch.std); a --stats file "
                  "carries its own");
  sub->add_option("--mode", f->mode,
                  "scale | center | standardize | mean-image | minmax | minmax-dataset | per-image "
                  "| per-image-channel | imagenet | caffe | inception | clip | custom | "
                  "zca-channels | pca-channels | zca-patch | zca | pca (full image: stats "
                  "--pixel-covariance)")
      ->capture_default_str();
  sub->add_option("--range", f->range, "Output range lo,hi of scale/minmax/minmax-dataset (0,1)");
  sub->add_option("--unit", f->unit, "Units of the formula: 255 (x in 0-255) or 1 (x/255)")
      ->check(CLI::IsMember({1, 255}))
      ->capture_default_str();
  sub->add_option("--mean", f->mean, "custom: per-channel means a,b,c (output channel order)");
  sub->add_option("--std", f->std, "custom: per-channel stds d,e,f (default 1)");
  sub->add_option("--mean-image", f->mean_image,
                  "mean-image: the mean image from stats --mean-image");
  sub->add_flag("--divide-std", f->divide_std, "mean-image: also divide by the dataset std");
  sub->add_option(
      "--eps", f->eps,
      "Divide by max(std, eps) instead of failing on std 0; zca/pca-channels, zca-patch, zca, pca: "
      "added to the eigenvalues, 0-1 units (default 1e-5)");
  sub->add_option("--patch", f->patch,
                  "zca-patch: the patch side K (odd, default 3); the statistics need the same "
                  "K (stats --patch K)");
  sub->add_option("--components", f->components,
                  "pca: K, the number of principal components per image (default: all D = "
                  "H*W*C); the output is N x K");
  sub->add_flag("--no-whiten", f->no_whiten,
                "pca: project onto the components without dividing by sqrt(lambda + eps)");
  sub->add_option("--layout", f->layout, "nhwc (numpy, TensorFlow) | nchw (PyTorch)")
      ->capture_default_str();
  sub->add_option("--dtype", f->dtype, "float32 | float16")->capture_default_str();
  sub->add_option("--channels", f->channels,
                  "Output channel order rgb | bgr | gray (default: the statistics' order; bgr for "
                  "caffe; gray without --stats decodes gray)");
  sub->add_flag("--no-labels", f->no_labels, "Do not write labels.npy");
  f->recipe.channels_flag = false;
  f->recipe.add_to(*sub);
  sub->add_flag("--strict", f->strict,
                "Exit with status 3 when any file was skipped or a class has no usable image");
  sub->add_flag("--force", f->force, "Replace existing output files");
  sub->add_flag("--output-shards", f->output_shards,
                "Write images-RRRRR.npy (and labels-RRRRR.npy), one shard per mpirun rank (one "
                "without mpirun), listed in manifest.json's \"shards\", instead of one images.npy");
  f->run.add_to(*sub);
  sub->footer(
      "With --stats, the recipe flags (--size, --resize, --interp, --pad-value, --exact-decode, "
      "--max-pixels, --alpha) default to the recipe recorded in the stats file; given explicitly "
      "they "
      "override it, with a warning. Outputs: DIR/images.npy, DIR/labels.npy, DIR/manifest.json "
      "(docs/normalize.md).");
  return {sub, [sub, f] { return normalize_main(*sub, *f); }};
}

}  // namespace imgnorm::cli
