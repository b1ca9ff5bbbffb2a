// imgnorm stats / imgnorm merge: exact per-channel statistics and merging of partial results.

#include <fmt/format.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>

#include "cli.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/stats.hpp"
#include "values.hpp"

namespace imgnorm::cli {
namespace {

std::string join_numbers(const std::vector<double>& v, const char* fmt_spec) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += fmt::format(fmt::runtime(fmt_spec), v[i]);
  }
  return s;
}

template <typename F>
std::vector<double> per_channel(const Summary& s, F f) {
  std::vector<double> v;
  for (const auto& c : s.channel) v.push_back(f(c));
  return v;
}

void print_table(const StatsFile& st, const Summary& s) {
  const auto names = channel_names(st.recipe.channels);
  fmt::print("imgnorm stats: {} images, {} classes, {}x{} {}, resize {} ({}), ddof {}\n", s.images,
             st.classes.size(), st.recipe.size.width, st.recipe.size.height,
             to_string(st.recipe.channels), to_string(st.recipe.resize),
             to_string(st.recipe.interp), s.ddof);
  fmt::print("{:<8}{:>11}{:>11}{:>6}{:>6}{:>9}{:>11}{:>11}{:>14}\n", "channel", "mean", "std",
             "min", "max", "median", "mean(0-1)", "std(0-1)", "mean img std");
  for (int c = 0; c < s.channels; ++c) {
    const auto& ch = s.channel[c];
    fmt::print("{:<8}{:>11.4f}{:>11.4f}{:>6}{:>6}{:>9.1f}{:>11.6f}{:>11.6f}{:>14.4f}\n", names[c],
               ch.mean, ch.std, ch.min, ch.max, ch.median, ch.mean_unit, ch.std_unit,
               ch.mean_image_std);
  }
  if (st.sample) {
    fmt::print("sample: {} of {} images (seed {}); 95% confidence intervals:\n", st.sample->sampled,
               st.sample->population, st.sample->seed);
    for (int c = 0; c < s.channels; ++c) {
      const auto& ch = s.channel[c];
      if (ch.mean_ci && ch.std_ci)
        fmt::print("  {}: mean [{:.4f}, {:.4f}]  std [{:.4f}, {:.4f}]\n", names[c], ch.mean_ci->lo,
                   ch.mean_ci->hi, ch.std_ci->lo, ch.std_ci->hi);
    }
  }
  fmt::print("files: {} found, {} used, {} skipped; {} ignored\n", st.files_found, s.images,
             st.skipped.size(), st.ignored.size());
  for (const auto& k : st.skipped) fmt::print("  skipped {}: {}\n", k.path, k.reason);
}

}  // namespace

void print_summary(const StatsFile& st, const std::string& format) {
  Summary s = summarize(st.acc, st.ddof, st.sample ? &*st.sample : nullptr);
  if (format == "table") {
    print_table(st, s);
  } else if (format == "json") {
    fmt::print("{}", to_json(st));
  } else if (format == "torchvision") {
    fmt::print("transforms.Normalize(mean=[{}], std=[{}])\n",
               join_numbers(per_channel(s, [](auto& c) { return c.mean_unit; }), "{:.6f}"),
               join_numbers(per_channel(s, [](auto& c) { return c.std_unit; }), "{:.6f}"));
  } else if (format == "keras") {
    fmt::print("layers.Normalization(axis=-1, mean=[{}], variance=[{}])  # inputs in 0-255, {}\n",
               join_numbers(per_channel(s, [](auto& c) { return c.mean; }), "{:.6f}"),
               join_numbers(per_channel(s, [](auto& c) { return c.variance; }), "{:.6f}"),
               to_string(st.recipe.channels));
  }
}

namespace {

void warn_skipped(const StatsFile& st, bool quiet) {
  if (quiet) return;
  for (const auto& k : st.skipped)
    std::fprintf(stderr, "imgnorm: skipped %s: %s\n", k.path.c_str(), k.reason.c_str());
}

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
  job.recipe = f.recipe.to_recipe(app);
  job.ddof = f.ddof;
  job.mean_image = !f.mean_image.empty();
  if (!f.shard.empty()) parse_shard(f.shard, job.shard_index, job.shard_count);
  if (!f.output.empty()) check_output_path(f.output, f.force);
  if (job.mean_image) check_output_path(f.mean_image, f.force);

  Dataset ds = load_dataset(f.input, f.list);
  if (ds.entries.empty())
    throw Error(ErrorCode::empty, (f.list.empty() ? f.input : f.list) + ": no image files found (" +
                                      std::to_string(ds.ignored.size()) + " other files ignored)");
  if (!f.sample.empty()) {
    SampleInfo si;
    si.population = ds.entries.size();
    si.sampled = parse_sample_count(f.sample, ds.entries.size());
    si.seed = f.seed;
    si.spec = f.sample;
    keep_indices(ds, sample_indices(ds.entries.size(), si.sampled, f.seed));
    job.sample = si;
  }
  if (job.shard_count > 1) keep_shard(ds, job.shard_index, job.shard_count);

  StatsFile st = compute_stats(ds, job, f.run.options("stats"), version());
  warn_skipped(st, f.run.quiet);
  if (st.acc.images() == 0)
    throw Error(ErrorCode::empty, "no image could be used: all " +
                                      std::to_string(st.skipped.size()) + " files were skipped");
  if (job.mean_image) {
    const auto& sums = st.acc.pixel_sums();
    std::vector<double> mean(sums.size());
    const double n = static_cast<double>(st.acc.images());
    for (std::size_t i = 0; i < sums.size(); ++i) mean[i] = static_cast<double>(sums[i]) / n;
    const Size sz = st.acc.mean_image_size();
    write_npy(f.mean_image, NpyDtype::float64,
              {static_cast<std::uint64_t>(sz.height), static_cast<std::uint64_t>(sz.width),
               static_cast<std::uint64_t>(st.acc.channels())},
              mean.data());
  }
  // stats.json last: a failure writing the mean image leaves no stats.json that looks whole.
  if (!f.output.empty()) write_file_atomic(f.output, to_json(st), f.force);
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
  sub->add_option("--format", f->format, "What to print: table | json | torchvision | keras")
      ->check(CLI::IsMember({"table", "json", "torchvision", "keras"}))
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

Command add_merge_command(CLI::App& app) {
  struct MergeFlags {
    std::vector<std::string> inputs;
    std::string output;
    std::string format = "table";
    bool force = false;
  };
  auto f = std::make_shared<MergeFlags>();
  CLI::App* sub = app.add_subcommand("merge", "Add the exact sums of several stats.json files");
  sub->add_option("inputs", f->inputs, "stats.json files (e.g. from --shard runs)")->required();
  sub->add_option("-o,--output", f->output, "Write the merged stats.json here");
  sub->add_option("--format", f->format, "What to print: table | json | torchvision | keras")
      ->check(CLI::IsMember({"table", "json", "torchvision", "keras"}))
      ->capture_default_str();
  sub->add_flag("--force", f->force, "Replace an existing output file");
  return {sub, [f] {
            if (!f->output.empty()) check_output_path(f->output, f->force);
            StatsFile all = read_stats_file(f->inputs[0]);
            // The same shard of the same source twice would be counted twice: refuse it.
            std::map<std::pair<std::string, int>, std::string> seen;
            std::map<std::string, std::set<int>> shards_of;
            int count = all.shard_count;
            auto note_shard = [&](const StatsFile& st, const std::string& path) {
              if (st.shard_count != count) count = -1;
              auto key = std::make_pair(st.source, st.shard_count > 1 ? st.shard_index : -1);
              auto [it, fresh] = seen.emplace(key, path);
              if (!fresh)
                throw Error(ErrorCode::invalid_argument,
                            path + ": the same data as " + it->second + " (source " + st.source +
                                (st.shard_count > 1
                                     ? fmt::format(", shard {}/{}", st.shard_index, st.shard_count)
                                     : std::string()) +
                                "); merging would count it twice");
              if (st.shard_count > 1) shards_of[st.source].insert(st.shard_index);
            };
            note_shard(all, f->inputs[0]);
            for (std::size_t i = 1; i < f->inputs.size(); ++i) {
              try {
                StatsFile next = read_stats_file(f->inputs[i]);
                note_shard(next, f->inputs[i]);
                merge_into(all, next);
              } catch (const Error& e) {
                throw with_path(e, f->inputs[i]);
              }
            }
            if (count > 1)
              for (const auto& [source, got] : shards_of)
                if (static_cast<int>(got.size()) != count)
                  std::fprintf(stderr, "imgnorm: warning: %zu of %d shards of %s merged\n",
                               got.size(), count, source.c_str());
            all.tool_version = version();
            all.shard_index = 0;
            all.shard_count = 1;
            if (!f->output.empty()) write_file_atomic(f->output, to_json(all), f->force);
            print_summary(all, f->format);
            return static_cast<int>(kOk);
          }};
}

}  // namespace imgnorm::cli
