// imgnorm stats: exact per-channel statistics of a dataset (library: imgnorm/stats_job.hpp).

#include <memory>

#include "cli.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/stats_job.hpp"
#include "values.hpp"

namespace imgnorm::cli {
namespace {

struct StatsFlags {
  std::string input;
  std::string list;
  std::string output;
  std::string format = "table";
  std::string sample;
  std::uint64_t seed = 0;
  std::string shard;
  int ddof = 0;
  std::string mean_image;
  int patch = 0;
  bool pixel_covariance = false;
  bool strict = false;
  bool force = false;
  bool follow_links = false;
  RecipeFlags recipe;
  RunFlags run;
};

// Under mpirun: rank 0 scans, each rank computes its block, rank 0 merges and writes.
int stats_ranks(Communicator& comm, const StatsJob& job, const SelectOptions& sel,
                const StatsOutputs& outputs, const StatsFlags& f) {
  collective(comm, [&] {
    if (comm.rank() == 0) check_outputs(outputs);
  });
  const StatsFile st = compute_stats(comm, select_dataset(comm, sel), job, f.run.options("stats"));
  const bool root = comm.rank() == 0;
  collective(comm, [&] {
    if (root && st.acc.images() == 0)
      throw Error(ErrorCode::empty, "no image could be used: all " +
                                        std::to_string(st.skipped.size()) + " files were skipped");
  });
  if (root && !f.run.quiet)
    for (const auto& k : st.skipped) print_skipped(k.path, k.reason);
  write_outputs(comm, st, outputs, &g_cancel);
  if (root) print_summary(st, f.format);
  const std::uint64_t skipped = comm.sum(root ? st.skipped.size() : 0);
  if (f.strict && skipped > 0) {
    if (root) print_error(std::to_string(skipped) + " files were skipped (--strict)");
    return kSkipped;
  }
  return kOk;
}

int stats_main(const CLI::App& app, const StatsFlags& f) {
  StatsJob job;
  SelectOptions sel;
  agreed([&] {
    if (f.input.empty() == f.list.empty())
      throw Error(ErrorCode::invalid_argument, "give either a dataset folder or --list FILE");
    job.recipe = f.recipe.overrides(app).apply(Recipe{});
    job.ddof = f.ddof;
    job.mean_image = !f.mean_image.empty();
    job.patch = f.patch;
    if (f.patch != 0) Accumulator(1).enable_patch(f.patch);  // a bad K before any scan
    job.pixel_covariance = f.pixel_covariance;
    sel.folder = f.input;
    sel.list = f.list;
    sel.sample = f.sample;
    sel.seed = f.seed;
    sel.scan.follow_links = f.follow_links;
    sel.scan.cancel = &g_cancel;
    if (!f.shard.empty()) parse_shard(f.shard, sel.shard_index, sel.shard_count);
  });
  const StatsOutputs outputs{f.output, f.mean_image, f.force, f.pixel_covariance};
  if (g_comm) return stats_ranks(*g_comm, job, sel, outputs, f);
  check_outputs(outputs);

  const Selection selection = select_dataset(sel);
  for (const auto& w : selection.warnings) print_warning(w);
  const StatsFile st = compute_stats(selection, job, f.run.options("stats"));
  if (!f.run.quiet)
    for (const auto& k : st.skipped) print_skipped(k.path, k.reason);
  if (st.acc.images() == 0)
    throw Error(ErrorCode::empty, "no image could be used: all " +
                                      std::to_string(st.skipped.size()) + " files were skipped");
  const std::vector<std::string> empty = classes_without_images(selection, st);
  for (const auto& c : empty) print_warning(empty_class_warning(c));
  write_outputs(st, outputs, &g_cancel);
  print_summary(st, f.format);
  if (f.strict && !st.skipped.empty()) {
    print_error(std::to_string(st.skipped.size()) + " files were skipped (--strict)");
    return kSkipped;
  }
  if (f.strict && !empty.empty()) {
    print_error(std::to_string(empty.size()) + " classes have no usable image (--strict)");
    return kSkipped;
  }
  return kOk;
}

}  // namespace

Command add_stats_command(CLI::App& app) {
  auto f = std::make_shared<StatsFlags>();
  CLI::App* sub = app.add_subcommand(
      "stats", "Exact per-channel mean/std/min/max/median of an image-folder dataset");
  sub->add_option("dataset", f->input, "Dataset folder (class folders inside, or images)");
  sub->add_option("--list", f->list, "Read image paths from FILE (one per line) instead");
  sub->add_flag("--follow-links", f->follow_links,
                "Follow symlinks that lead out of the dataset folder (each folder is still "
                "scanned once)");
  sub->add_option("-o,--output", f->output, "Write stats.json here");
  sub->add_option("--format", f->format,
                  "What to print: table | json | torchvision | keras | lighting")
      ->check(CLI::IsMember({"table", "json", "torchvision", "keras", "lighting"}))
      ->capture_default_str();
  f->recipe.add_to(*sub);
  sub->add_option("--sample", f->sample, "Use a random sample: K images or P% of them");
  sub->add_option("--seed", f->seed, "Seed of --sample (fixed default: runs repeat)")
      ->capture_default_str();
  sub->add_option("--shard", f->shard, "Process every N-th file starting at I (I/N), for merge");
  sub->add_option("--ddof", f->ddof, "Delta degrees of freedom of std: 0 (numpy) or 1")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  sub->add_option("--mean-image", f->mean_image,
                  "Also write the per-pixel mean image (.npy, float64, HxWxC)");
  sub->add_option("--patch", f->patch,
                  "Also record the exact moments of every KxK patch (odd K, 1-9), for "
                  "normalize --mode zca-patch --patch K");
  sub->add_flag("--pixel-covariance", f->pixel_covariance,
                "Also keep the exact moments of whole images for --mode zca|pca (a (D+1)x(D+1) "
                "float64 .npy beside -o, D = H*W*C; refused when it does not fit --max-memory)");
  sub->add_flag("--strict", f->strict,
                "Exit with status 3 when any file was skipped or a class has no usable image");
  sub->add_flag("--force", f->force, "Replace existing output files");
  f->run.add_to(*sub);
  return {sub, [sub, f] { return stats_main(*sub, *f); }};
}

}  // namespace imgnorm::cli
