// Printing statistics: the table, JSON, and the torchvision / Keras lines (stats, merge, inspect).

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "cli.hpp"
#include "imgnorm/stats.hpp"

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

// How JPEGs were decoded: without --exact-decode they are DCT-scaled where the size allows, so
// the numbers differ slightly (~0.03 in 0-255 means) from a cv2.imread + cv2.resize loop.
std::string decode_note(const Recipe& r) {
  return r.exact_decode ? "JPEGs decoded at full size (cv2.imread's pixels, --exact-decode)"
                        : "JPEGs DCT-scaled where the size allows (not cv2.imread's pixels; "
                          "--exact-decode for those)";
}

void print_table(const StatsFile& st, const Summary& s) {
  const auto names = channel_names(st.recipe.channels);
  fmt::print("imgnorm stats: {} images, {} classes, {}x{} {}, resize {} ({}), ddof {}\n", s.images,
             st.classes.size(), st.recipe.size.width, st.recipe.size.height,
             to_string(st.recipe.channels), to_string(st.recipe.resize),
             to_string(st.recipe.interp), s.ddof);
  fmt::print("decode: {}\n", decode_note(st.recipe));
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
  // Results on stdout, warnings on stderr: the skipped files themselves are listed on stderr as
  // they are skipped, and in stats.json's "skipped".
  fmt::print("files: {} found, {} used, {} skipped; {} ignored\n", st.files_found, s.images,
             st.skipped.size(), st.ignored.size());
}

}  // namespace

void print_summary(const StatsFile& st, const std::string& format) {
  Summary s = summarize(st.acc, st.ddof, st.sample ? &*st.sample : nullptr);
  if (format == "table") {
    print_table(st, s);
  } else if (format == "json") {
    fmt::print("{}", to_json(st));
  } else if (format == "torchvision") {
    fmt::print("transforms.Normalize(mean=[{}], std=[{}])  # 0-1 units, {}; {}\n",
               join_numbers(per_channel(s, [](auto& c) { return c.mean_unit; }), "{:.6f}"),
               join_numbers(per_channel(s, [](auto& c) { return c.std_unit; }), "{:.6f}"),
               to_string(st.recipe.channels), decode_note(st.recipe));
  } else if (format == "lighting") {
    // AlexNet-style PCA lighting: eigenvalues and eigenvectors of the channel covariance.
    const int C = s.channels;
    std::vector<double> unit, sd;
    for (double v : s.eigenvalues) {
      unit.push_back(v / (255.0 * 255.0));
      sd.push_back(std::sqrt(std::max(v, 0.0)) / 255.0);
    }
    fmt::print(
        "# channel PCA of {} images, {} order, ddof {}; pixel values in 0-1 units (x/255); {}\n",
        s.images, to_string(st.recipe.channels), s.ddof, decode_note(st.recipe));
    fmt::print("eigval = [{}]  # variance along each component, descending\n",
               join_numbers(unit, "{:.6g}"));
    fmt::print("eigval_sqrt = [{}]  # std along each component\n", join_numbers(sd, "{:.6g}"));
    fmt::print("eigvec = [  # columns are the components; rows {}\n",
               fmt::join(channel_names(st.recipe.channels), ", "));
    for (int r = 0; r < C; ++r) {
      std::vector<double> row(s.eigenvectors.begin() + r * C, s.eigenvectors.begin() + (r + 1) * C);
      fmt::print("    [{}],\n", join_numbers(row, "{:.6f}"));
    }
    fmt::print("]\n");
  } else if (format == "keras") {
    fmt::print(
        "layers.Normalization(axis=-1, mean=[{}], variance=[{}])  # inputs in 0-255, {}; {}\n",
        join_numbers(per_channel(s, [](auto& c) { return c.mean; }), "{:.6f}"),
        join_numbers(per_channel(s, [](auto& c) { return c.variance; }), "{:.6f}"),
        to_string(st.recipe.channels), decode_note(st.recipe));
  }
}

}  // namespace imgnorm::cli
