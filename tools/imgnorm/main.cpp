// imgnorm: image-folder datasets to exact statistics and normalized tensors.

#include <new>

#include "cli.hpp"
#include "imgnorm/error.hpp"

int main(int argc, char** argv) {
  using namespace imgnorm::cli;
  CLI::App app{
      "imgnorm: exact per-channel statistics of image datasets and normalized .npy tensors.\n"
      "Exit status: 0 ok, 1 error, 2 bad usage, 3 files skipped (or a class without images) under "
      "--strict, 130 "
      "interrupted.",
      "imgnorm"};
  app.set_version_flag("--version", imgnorm::version());
  app.require_subcommand(1);
  std::vector<Command> commands;
  commands.push_back(add_stats_command(app));
  commands.push_back(add_merge_command(app));
  commands.push_back(add_normalize_command(app));
  commands.push_back(add_denormalize_command(app));
  commands.push_back(add_inspect_command(app));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    print_error(e.what());
    std::fprintf(stderr, "Run 'imgnorm --help' or 'imgnorm COMMAND --help' for usage.\n");
    return kUsage;
  }
  install_signal_handlers();
  try {
    for (auto& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const imgnorm::Error& e) {
    print_error(e.what());
    if (e.code() == imgnorm::ErrorCode::interrupted) return kInterrupted;
    return e.code() == imgnorm::ErrorCode::invalid_argument ? kUsage : kError;
  } catch (const std::bad_alloc&) {
    print_error("out of memory");
    return kError;
  } catch (const std::exception& e) {
    print_error(std::string("internal error: ") + e.what());
    return kError;
  }
  return kOk;
}
