// imgnorm merge: exact merge of partial statistics (library: merge_stats in stats_job.hpp).

#include <memory>

#include "cli.hpp"
#include "imgnorm/output.hpp"
#include "imgnorm/stats_job.hpp"

namespace imgnorm::cli {

Command add_merge_command(CLI::App& app) {
  struct MergeFlags {
    std::vector<std::string> inputs;
    std::string output;
    std::string format = "table";
    bool force = false;
  };
  auto f = std::make_shared<MergeFlags>();
  CLI::App* sub = app.add_subcommand(
      "merge",
      "Add the exact sums of several stats.json files: disjoint shards of one run, or different "
      "datasets. Inputs that share a file are refused; missing shards are named in a warning");
  sub->add_option("inputs", f->inputs, "stats.json files (e.g. from --shard runs)")->required();
  sub->add_option("-o,--output", f->output, "Write the merged stats.json here");
  sub->add_option("--format", f->format,
                  "What to print: table | json | torchvision | keras | lighting")
      ->check(CLI::IsMember({"table", "json", "torchvision", "keras", "lighting"}))
      ->capture_default_str();
  sub->add_flag("--force", f->force, "Replace an existing output file");
  return {sub, [f] {
            if (!f->output.empty()) check_output_path(f->output, f->force);
            std::vector<std::string> warnings;
            const StatsFile all = merge_stats_files(f->inputs, &warnings);
            for (const auto& w : warnings) print_warning(w);
            // With pixel covariances, the merged moments go into a sidecar beside the output.
            if (!f->output.empty())
              write_outputs(
                  all, StatsOutputs{f->output, "", f->force, all.acc.pixel_covariance().enabled()},
                  &g_cancel);
            print_summary(all, f->format);
            return static_cast<int>(kOk);
          }};
}

}  // namespace imgnorm::cli
