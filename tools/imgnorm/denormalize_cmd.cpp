// imgnorm denormalize: a normalized images.npy back to uint8 pixels (library: denormalize in
// imgnorm/normalize.hpp).

#include <fmt/format.h>

#include <memory>

#include "cli.hpp"
#include "imgnorm/normalize.hpp"

namespace imgnorm::cli {

struct DenormalizeFlags {
  std::string input;
  std::string manifest;
  std::string output;
  bool force = false;
  RunFlags run;  // --quiet and --progress only: the progress bar, as for the other commands
};

Command add_denormalize_command(CLI::App& app) {
  auto f = std::make_shared<DenormalizeFlags>();
  CLI::App* sub = app.add_subcommand(
      "denormalize",
      "Map a normalized images.npy back to uint8 pixels (NHWC), for looking at them");
  sub->add_option("images", f->input, "images.npy written by imgnorm normalize")->required();
  sub->add_option("--manifest", f->manifest, "Its manifest.json (default: beside the input)");
  sub->add_option("-o,--output", f->output, "Output .npy (uint8, N x H x W x C)")->required();
  sub->add_flag("--force", f->force, "Replace an existing output file");
  sub->add_flag("--quiet,-q", f->run.quiet, "No progress bar");
  sub->add_flag("--progress", f->run.progress,
                "Progress bar on stderr even when it is not a terminal");
  return {sub, [f] {
            const Manifest m = denormalize(f->input, f->manifest, f->output, f->force, &g_cancel,
                                           f->run.options("denormalize").progress);
            const auto& sh = m.shape;
            const int nc = channel_count(m.input_channels);
            const std::uint64_t h = m.layout == Layout::nhwc ? sh.at(1) : sh.at(2);
            const std::uint64_t w = m.layout == Layout::nhwc ? sh.at(2) : sh.at(3);
            fmt::print("imgnorm denormalize: {} images -> {} (uint8 {}x{}x{}x{}, {})\n", sh[0],
                       printable(f->output), sh[0], h, w, nc, to_string(m.channels));
            return static_cast<int>(kOk);
          }};
}

}  // namespace imgnorm::cli
