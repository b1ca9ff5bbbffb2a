#pragma once
// Shared pieces of the imgnorm command line: recipe and run flags, progress bar, signals, printing.
// The commands parse flags, call the library and print; the jobs live in include/imgnorm/.

#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdio>
#include <functional>
#include <string>

#include "imgnorm/dataset.hpp"
#include "imgnorm/pipeline.hpp"
#include "imgnorm/recipe.hpp"
#include "imgnorm/stats.hpp"

namespace imgnorm::cli {

/// Exit codes, documented in the README.
enum Exit : int {
  kOk = 0,
  kError = 1,    // bad input, nothing written
  kUsage = 2,    // bad flag or flag value
  kSkipped = 3,  // --strict and some files were skipped
  kInterrupted = 130,
};

/// Raised by SIGINT/SIGTERM; the pipeline stops starting new images when it is set.
extern std::atomic<bool> g_cancel;
void install_signal_handlers();

/// Recipe flags as the user typed them; `given` tells which were given explicitly.
struct RecipeFlags {
  std::string size = "224";
  std::string resize = "stretch";
  std::string interp = "linear";
  std::string channels = "rgb";
  int pad_value = 0;
  bool exact_decode = false;
  std::uint64_t max_pixels = kDefaultMaxPixels;
  std::string alpha = "drop";
  /// normalize has its own --channels (the output order): it sets this to false.
  bool channels_flag = true;
  void add_to(CLI::App& app);
  /// The recipe fields given on the command line, parsed.
  RecipeOverrides overrides(const CLI::App& app) const;
};

/// Run flags shared by the commands that read a dataset.
struct RunFlags {
  int threads = 0;
  bool quiet = false;
  bool progress = false;
  bool allow_truncated = false;
  void add_to(CLI::App& app);
  /// Pipeline options with the progress bar (labelled `label`) when it should be shown, and
  /// the cancel flag. With `report_skips`, each skipped file is printed as it happens (unless
  /// quiet).
  PipelineOptions options(const char* label, bool report_skips = false) const;
};

/// Prints "imgnorm: message" on stderr, as one line (imgnorm::printable).
void print_error(const std::string& message);

/// Prints "imgnorm: skipped PATH: REASON" on stderr, as one line.
void print_skipped(const std::string& path, const std::string& reason);

/// A subcommand: registered on the app, run after parsing when it was chosen.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};
Command add_stats_command(CLI::App& app);
Command add_merge_command(CLI::App& app);
Command add_normalize_command(CLI::App& app);
Command add_denormalize_command(CLI::App& app);
Command add_inspect_command(CLI::App& app);

/// Prints a stats file on stdout as `format`: table | json | torchvision | keras | lighting.
void print_summary(const StatsFile& stats, const std::string& format);

/// Prints "imgnorm: warning: message" on stderr, as one line.
void print_warning(const std::string& message);

}  // namespace imgnorm::cli
