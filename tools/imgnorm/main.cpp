// imgnorm: image-folder datasets to exact statistics and normalized tensors.

#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <new>

#include "cli.hpp"
#include "imgnorm/distributed.hpp"
#include "imgnorm/error.hpp"
#include "usage.hpp"

namespace {

// One process's run of the command line; under MPI every rank runs it.
int run_main(int argc, char** argv) {
  using namespace imgnorm::cli;
  CLI::App app{
      "imgnorm: exact per-channel statistics of image datasets and normalized .npy tensors.\n"
      "Exit status: 0 ok, 1 error, 2 bad usage, 3 files skipped (or a class without images) under "
      "--strict, 130 "
      "interrupted.",
      "imgnorm"};
  app.set_version_flag("--version", imgnorm::version());
  app.footer(
      "Under mpirun or srun, stats and normalize run as one MPI job over all ranks, with the "
      "same outputs as one process (docs/scale-out.md).");
  app.require_subcommand(1);
  std::vector<Command> commands;
  commands.push_back(add_stats_command(app));
  commands.push_back(add_merge_command(app));
  commands.push_back(add_normalize_command(app));
  commands.push_back(add_denormalize_command(app));
  commands.push_back(add_inspect_command(app));
  // Under MPI every rank parses the same arguments: rank 0 alone prints help and usage errors.
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return is_root() ? app.exit(e) : kOk;
  } catch (const CLI::CallForAllHelp& e) {
    return is_root() ? app.exit(e) : kOk;
  } catch (const CLI::CallForVersion& e) {
    return is_root() ? app.exit(e) : kOk;
  } catch (const CLI::ParseError& e) {
    if (is_root()) {
      const UsageError u =
          explain_parse_error(app, std::vector<std::string>(argv + 1, argv + argc), e);
      print_error(u.message);
      std::fprintf(stderr, "Run '%s --help' for usage.\n", u.help_command.c_str());
    }
    return kUsage;
  }
  // The single-file commands would race on their one output: under MPI only the jobs that split.
  if (g_comm)
    for (auto& c : commands)
      if (c.app->parsed() && c.app->get_name() != "stats" && c.app->get_name() != "normalize") {
        if (is_root())
          print_error("imgnorm " + c.app->get_name() +
                      " runs in one process; run it without mpirun/srun");
        return kUsage;
      }
  install_signal_handlers();
  auto status = [](const imgnorm::Error& e) {
    if (e.code() == imgnorm::ErrorCode::interrupted) return int(kInterrupted);
    return e.code() == imgnorm::ErrorCode::invalid_argument ? int(kUsage) : int(kError);
  };
  // An error every rank shares ends the run in order; any other ends every rank at once.
  auto fail = [](const std::string& message, int code) {
    if (!g_comm) {
      print_error(message);
      return code;
    }
    print_error("rank " + std::to_string(g_comm->rank()) + " of " + std::to_string(g_comm->size()) +
                ": " + message);
    abort_ranks(code);
  };
  try {
    for (auto& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const imgnorm::SharedError& e) {
    if (is_root()) print_error(e.what());
    return status(e);
  } catch (const imgnorm::Error& e) {
    return fail(e.what(), status(e));
  } catch (const std::bad_alloc&) {
    return fail("out of memory", kError);
  } catch (const std::exception& e) {
    return fail(std::string("internal error: ") + e.what(), kError);
  }
  return kOk;
}

// OpenCV links LAPACK, which on Debian is OpenBLAS when it is installed (numpy and torch bring it).
// Its pthread build starts a thread per core when it is loaded, each reserving a 128 MiB buffer;
// under an address-space limit (`ulimit -v`, some batch schedulers) that does not hold them all,
// the threads retry the allocation forever and the process never exits. imgnorm makes no BLAS
// call that needs those threads, so under such a limit, unless the user chose a BLAS thread count,
// the CLI restarts itself once with OPENBLAS_NUM_THREADS=1 before doing anything.
void restart_without_blas_threads(char** argv) {
  struct rlimit as {};
  if (getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY) return;
  for (const char* v : {"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"})
    if (std::getenv(v) != nullptr) return;
  if (setenv("OPENBLAS_NUM_THREADS", "1", 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only if it failed: then carry on as we are
  unsetenv("OPENBLAS_NUM_THREADS");
}

}  // namespace

int main(int argc, char** argv) {
  restart_without_blas_threads(argv);
  const int refused = imgnorm::cli::start_ranks(argc, argv);
  if (refused >= 0) return refused;
  const int code = run_main(argc, argv);
  imgnorm::cli::end_ranks();
  return code;
}
