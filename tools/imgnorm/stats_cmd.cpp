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
  bool strict = false;
  bool force = false;
  RecipeFlags recipe;
  RunFlags run;
};

int stats_main(const CLI::App& app, const StatsFlags& f) {
  if (f.input.empty() == f.list.empty())
    throw Error(ErrorCode::invalid_argument, "give either a dataset folder or --list FILE");
  StatsJob job;
  job.recipe = f.recipe.overrides(app).apply(Recipe{});
  job.ddof = f.ddof;
  job.mean_image = !f.mean_image.empty();
  SelectOptions sel;
  sel.folder = f.input;
  sel.list = f.list;
  sel.sample = f.sample;
  sel.seed = f.seed;
  if (!f.shard.empty()) parse_shard(f.shard, sel.shard_index, sel.shard_count);
  const StatsOutputs outputs{f.output, f.mean_image, f.force};
  check_outputs(outputs);

  const StatsFile st = compute_stats(select_dataset(sel), job, f.run.options("stats"));
  if (!f.run.quiet)
    for (const auto& k : st.skipped) print_skipped(k.path, k.reason);
  if (st.acc.images() == 0)
    throw Error(ErrorCode::empty, "no image could be used: all " +
                                      std::to_string(st.skipped.size()) + " files were skipped");
  write_outputs(st, outputs, &g_cancel);
  print_summary(st, f.format);
  if (f.strict && !st.skipped.empty()) {
    print_error(std::to_string(st.skipped.size()) + " files were skipped (--strict)");
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
  sub->add_flag("--strict", f->strict, "Exit with status 3 when any file was skipped");
  sub->add_flag("--force", f->force, "Replace existing output files");
  f->run.add_to(*sub);
  return {sub, [sub, f] { return stats_main(*sub, *f); }};
}

}  // namespace imgnorm::cli
