#pragma once
// Shared pieces of the imgnorm command line: recipe and run flags, progress bar, signals, printing.
// The commands parse flags, call the library and print; the jobs live in include/imgnorm/.

#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdio>
#include <functional>
#include <string>

#include "imgnorm/dataset.hpp"
#include "imgnorm/distributed.hpp"
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
  std::string max_memory;  ///< as typed ("2G"); empty: the library's default
  void add_to(CLI::App& app);
  /// Pipeline options with the progress bar (labelled `label`) when it should be shown, and
  /// the cancel flag. With `report_skips`, each skipped file is printed as it happens (unless
  /// quiet).
  PipelineOptions options(const char* label, bool report_skips = false) const;
};

/// The ranks of an MPI launch (mpirun, srun), or nullptr in a normal run (mpi_launch.cpp).
extern Communicator* g_comm;
/// Joins the MPI run when the environment says a launcher started this process as a rank (a
/// normal launch never initializes MPI). Returns -1 to go on, else the exit status (the reason
/// printed on rank 0).
int start_ranks(int& argc, char**& argv);
/// Ends the MPI run (MPI_Finalize), if any.
void end_ranks();
/// Ends every rank now (MPI_Abort), or this process.
[[noreturn]] void abort_ranks(int code);
/// False on the ranks other than 0: they print neither results nor the errors every rank shares.
bool is_root();
/// The thread count when --threads is not given: this node's cores shared among its ranks under
/// MPI, else 0 (all cores).
int default_threads();

/// Runs `work` (checks of the flags, say); under MPI on every rank through collective(), so an
/// error every rank finds is reported once and ends the run in order.
void agreed(const std::function<void()>& work);

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
