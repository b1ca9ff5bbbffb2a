// imgnorm inspect: shape, dtype and per-channel statistics of a .npy, or a stats.json's table
// (library: imgnorm/inspect.hpp).

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sys/stat.h>

#include <memory>

#include "cli.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/inspect.hpp"

namespace imgnorm::cli {
namespace {

// A normalize output folder, or its manifest.json: the set is inspected as one array.
bool is_output_set(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return true;
  const std::string name = "manifest.json";
  return path.size() >= name.size() &&
         path.compare(path.size() - name.size(), name.size(), name) == 0;
}

int print_inspection(const std::string& path, const std::string& layout, bool set) {
  std::optional<Layout> l;
  if (!layout.empty()) l = parse_layout(layout);
  const NpyInspection r =
      set ? inspect_output(path, l, &g_cancel) : inspect_npy(path, l, &g_cancel);
  const auto& sh = r.header.shape;
  // The shape as numpy writes a tuple: (735,) for one axis, () for none.
  fmt::print("{}: shape ({}{}), dtype {}\n", printable(path), fmt::join(sh, ", "),
             sh.size() == 1 ? "," : "", to_string(r.header.dtype));
  if (r.header.count == 0) return kOk;
  fmt::print("{:<8}{:>14}{:>14}{:>14}{:>14}\n", r.axis < sh.size() ? "channel" : "all", "mean",
             "std", "min", "max");
  for (std::size_t c = 0; c < r.channels.size(); ++c) {
    const ValueMoments& m = r.channels[c];
    fmt::print("{:<8}{:>14.6f}{:>14.6f}{:>14.6f}{:>14.6f}{}\n", c, m.mean, m.std, m.min, m.max,
               m.nan ? fmt::format("  ({} NaN)", m.nan) : "");
  }
  return kOk;
}

}  // namespace

Command add_inspect_command(CLI::App& app) {
  struct InspectFlags {
    std::string input;
    std::string layout;
    std::string format = "table";
  };
  auto f = std::make_shared<InspectFlags>();
  CLI::App* sub = app.add_subcommand(
      "inspect",
      "Print shape, dtype and per-channel mean/std/min/max of a .npy or of a normalize output "
      "(its images.npy or shards as one array), or a stats.json");
  sub->add_option("file", f->input,
                  "A .npy array, a normalize output folder (or its manifest.json), or a stats.json")
      ->required();
  sub->add_option("--layout", f->layout, "Channel axis of a .npy: nhwc (last) | nchw (axis 1)")
      ->check(CLI::IsMember({"nhwc", "nchw"}));
  sub->add_option("--format", f->format,
                  "What to print of a stats.json: table | json | torchvision | keras | lighting")
      ->check(CLI::IsMember({"table", "json", "torchvision", "keras", "lighting"}))
      ->capture_default_str();
  return {sub, [sub, f] {
            const bool set = is_output_set(f->input);
            const bool npy = set || has_npy_extension(f->input);
            if (npy && sub->count("--format") && f->format != "table")
              throw Error(ErrorCode::invalid_argument,
                          "--format " + f->format + " applies to a stats.json, not to " + f->input);
            if (!npy && sub->count("--layout"))
              throw Error(ErrorCode::invalid_argument,
                          "--layout applies to a .npy, not to " + f->input);
            if (npy) return print_inspection(f->input, f->layout, set);
            print_summary(read_stats_file(f->input), f->format);
            return static_cast<int>(kOk);
          }};
}

}  // namespace imgnorm::cli
