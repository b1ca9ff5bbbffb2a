// imgnorm normalize: a dataset (folder, list or .npy) to a normalized images.npy, labels.npy and
// manifest.json, with the training statistics of a stats.json.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include <unistd.h>

#include "cli.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/transform.hpp"
#include "values.hpp"

namespace imgnorm::cli {
namespace {

using ojson = nlohmann::ordered_json;

struct NormalizeFlags {
  std::string input;
  std::string list;
  std::string output;
  std::string stats;
  bool fit = false;
  std::string mode = "standardize";
  std::string range;
  int unit = 255;
  std::string mean, std;
  std::string mean_image;
  bool divide_std = false;
  std::optional<double> eps;
  std::string layout = "nhwc";
  std::string dtype = "float32";
  std::string channels;
  bool no_labels = false;
  bool strict = false;
  bool force = false;
  RecipeFlags recipe;
  RunFlags run;
};

bool ends_with_npy(const std::string& s) {
  if (s.size() < 4) return false;
  std::string t = s.substr(s.size() - 4);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  return t == ".npy";
}

bool needs_dataset_stats(const TransformSpec& spec) {
  switch (spec.mode) {
    case Mode::center:
    case Mode::standardize:
    case Mode::minmax_dataset:
      return true;
    case Mode::mean_image:
      return spec.mean_image_std;
    default:
      return false;
  }
}

std::string recipe_differences(const Recipe& a, const Recipe& b) {
  std::string d;
  auto add = [&](const std::string& what) { d += (d.empty() ? "" : ", ") + what; };
  if (!(a.size == b.size))
    add(fmt::format("size {}x{} vs {}x{}", b.size.width, b.size.height, a.size.width,
                    a.size.height));
  if (a.resize != b.resize)
    add(fmt::format("resize {} vs {}", to_string(b.resize), to_string(a.resize)));
  if (a.interp != b.interp)
    add(fmt::format("interp {} vs {}", to_string(b.interp), to_string(a.interp)));
  if (a.pad_value != b.pad_value) add("pad value");
  if (a.exact_decode != b.exact_decode)
    add(fmt::format("exact_decode {} vs {}", b.exact_decode, a.exact_decode));
  if (a.max_pixels != b.max_pixels) add("max pixels");
  return d;
}

// One key per line; arrays of objects or arrays (files, skipped, per-image maps) one element per
// line; everything else compact. Readable, and grep-able line by line.
std::string manifest_text(const ojson& m) {
  std::string s = "{";
  bool first = true;
  for (const auto& [key, v] : m.items()) {
    s += first ? "\n  " : ",\n  ";
    first = false;
    s += ojson(key).dump() + ": ";
    if (v.is_array() && !v.empty() && v[0].is_structured()) {
      s += "[";
      for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ",\n    " : "\n    ") + v[i].dump();
      s += "\n  ]";
    } else {
      s += v.dump();
    }
  }
  return s + "\n}\n";
}

ojson map_json(const ChannelMap& f) { return ojson::array({f.d, f.m, f.s, f.g, f.t}); }

ojson affine_json(const Affine& a) {
  ojson j = ojson::array();
  for (int c = 0; c < a.channels; ++c) j.push_back(map_json(a.ch[c]));
  return j;
}

Affine affine_from_json(const ojson& j, int channels, const std::string& where) {
  Affine a;
  a.channels = channels;
  if (!j.is_array() || static_cast<int>(j.size()) != channels)
    throw Error(ErrorCode::format, where + ": expected " + std::to_string(channels) + " maps");
  for (int c = 0; c < channels; ++c) {
    const ojson& m = j[c];
    if (!m.is_array() || m.size() != 5)
      throw Error(ErrorCode::format, where + ": a map is [d, m, s, g, t]");
    double v[5];
    for (int k = 0; k < 5; ++k) {
      if (!m[k].is_number())
        throw Error(ErrorCode::format, where + ": a map value is not a number");
      v[k] = m[k].get<double>();
      if (!std::isfinite(v[k]))
        throw Error(ErrorCode::format, where + ": a map value is not finite");
    }
    if (v[0] == 0 || v[2] == 0) throw Error(ErrorCode::format, where + ": d and s may not be 0");
    a.ch[c] = {v[0], v[1], v[2], v[3], v[4]};
  }
  return a;
}

// Slope and intercept per *output* channel (the order of the tensor), for the manifest.
ojson slopes_json(const Affine& a, bool swap_rb) {
  ojson as = ojson::array(), bs = ojson::array();
  for (int k = 0; k < a.channels; ++k) {
    int c = (a.channels == 3 && swap_rb) ? 2 - k : k;
    as.push_back(a.ch[c].a());
    bs.push_back(a.ch[c].b());
  }
  return ojson{{"a", as}, {"b", bs}};
}

// A mean image from `stats --mean-image` (float64 H×W×C, 0–255).
std::vector<double> load_mean_image(const std::string& path, int channels, Size& size) {
  const NpyHeader hd = read_npy_header(path);  // checked before reading the data
  const auto& sh = hd.shape;
  if (hd.dtype != NpyDtype::float64 || sh.size() != 3 ||
      sh[2] != static_cast<std::uint64_t>(channels) || sh[0] == 0 || sh[1] == 0 || sh[0] > 65535 ||
      sh[1] > 65535)
    throw Error(ErrorCode::format, path + ": not a mean image (expected float64 H x W x " +
                                       std::to_string(channels) +
                                       ", as written by imgnorm stats --mean-image)");
  size = {static_cast<int>(sh[1]), static_cast<int>(sh[0])};
  NpyArray a = read_npy(path);
  const double* d = a.as<double>();
  return std::vector<double>(d, d + a.header.count);
}

// The images of a .npy input: uint8, or float32/float64 values in 0–255, NHWC or NHW (gray).
struct NpyInput {
  std::unique_ptr<NpyReader> reader;
  std::uint64_t rows = 0;
  int width = 0, height = 0, channels = 0;
  bool is_float = false;
};

NpyInput open_npy_input(const std::string& path) {
  NpyInput in;
  in.reader = std::make_unique<NpyReader>(path);
  const NpyHeader& h = in.reader->header();
  const auto& sh = h.shape;
  if (sh.size() != 3 && sh.size() != 4)
    throw Error(ErrorCode::format, path + ": expected an NHWC array (N,H,W,C) or (N,H,W)");
  if (sh.size() == 3 && (sh[2] == 3 || sh[2] == 4))
    throw Error(
        ErrorCode::format,
        path + ": shape (" + std::to_string(sh[0]) + "," + std::to_string(sh[1]) + "," +
            std::to_string(sh[2]) +
            ") looks like one HxWxC image, not N gray images; save it as x[None] (1,H,W,C)");
  if (sh[0] == 0) throw Error(ErrorCode::empty, path + ": the array has no rows");
  std::uint64_t c = sh.size() == 4 ? sh[3] : 1;
  if (c != 1 && c != 3)
    throw Error(
        ErrorCode::format,
        path + ": expected 1 or 3 channels in the last axis (NHWC), got " + std::to_string(c));
  if (sh[1] == 0 || sh[2] == 0 || sh[1] > 65535 || sh[2] > 65535)
    throw Error(ErrorCode::format, path + ": image size out of range");
  if (h.dtype != NpyDtype::uint8 && h.dtype != NpyDtype::float32 && h.dtype != NpyDtype::float64)
    throw Error(ErrorCode::format, path + ": dtype " + to_string(h.dtype) +
                                       " is not supported (uint8, float32 or float64)");
  in.rows = sh[0];
  in.height = static_cast<int>(sh[1]);
  in.width = static_cast<int>(sh[2]);
  in.channels = static_cast<int>(c);
  in.is_float = h.dtype != NpyDtype::uint8;
  return in;
}

// One row of a .npy input: u8 pixels, or (float input) doubles in 0–255 units.
struct NpyRow {
  ImageView u8;                    // valid for uint8 input
  const double* values = nullptr;  // valid for float input
};

// Whole values 0–255 of a float row as u8 (for --fit, whose exact sums are defined on u8 pixels).
void values_to_u8(const double* v, std::size_t n, std::uint64_t row, const std::string& path,
                  std::uint8_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    if (!(v[i] >= 0 && v[i] <= 255) || v[i] != std::floor(v[i]))
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: row {}: value {} is not a whole number in 0-255; --fit needs u8 "
                              "pixel values (compute the statistics elsewhere and use --stats)",
                              path, row, v[i]));
    out[i] = static_cast<std::uint8_t>(v[i]);
  }
}

// Calls f(row, NpyRow) for every row of a .npy input, in order.
template <typename F>
void for_each_npy_row(const NpyInput& in, F f) {
  const std::size_t n = static_cast<std::size_t>(in.width) * in.height * in.channels;
  const NpyDtype dt = in.reader->header().dtype;
  std::vector<std::uint8_t> raw(n * npy_itemsize(dt));
  std::vector<double> values(in.is_float ? n : 0);
  for (std::uint64_t r = 0; r < in.rows; ++r) {
    if (g_cancel.load()) throw Error(ErrorCode::interrupted, "interrupted");
    in.reader->read_rows(r, 1, raw.data());
    NpyRow row;
    if (in.is_float) {
      for (std::size_t i = 0; i < n; ++i) {
        if (dt == NpyDtype::float32) {
          float x;
          std::memcpy(&x, raw.data() + 4 * i, 4);
          values[i] = x;
        } else {
          std::memcpy(&values[i], raw.data() + 8 * i, 8);
        }
      }
      row.values = values.data();
    } else {
      row.u8 = ImageView{raw.data(), in.width, in.height, in.channels,
                         static_cast<std::size_t>(in.width) * in.channels};
    }
    f(r, row);
  }
}

std::string absolute_path(const std::string& p) {
  std::error_code ec;
  auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

// True when `dir` exists (a folder); false when it is missing but can be created (its parent is a
// folder). Error(io) naming it otherwise.
bool check_output_folder(const std::string& dir) {
  std::error_code ec;
  auto st = std::filesystem::status(dir, ec);
  if (std::filesystem::exists(st)) {
    if (!std::filesystem::is_directory(st))
      throw Error(ErrorCode::io, dir + ": exists and is not a folder");
    return true;
  }
  auto parent = std::filesystem::absolute(dir, ec).lexically_normal().parent_path();
  if (!std::filesystem::is_directory(parent, ec))
    throw Error(ErrorCode::io,
                dir + ": cannot create it: folder " + parent.string() + " does not exist");
  return false;
}

void create_output_folder(const std::string& dir) {
  if (g_cancel.load()) throw Error(ErrorCode::interrupted, "interrupted");
  ensure_folder(dir);
}

// An output folder inside the dataset folder would become a class folder of the next scan.
void check_not_inside(const std::string& output, const std::string& input) {
  std::error_code ec;
  auto in = std::filesystem::weakly_canonical(input, ec);
  if (ec) return;
  auto out = std::filesystem::weakly_canonical(output, ec);
  if (ec || out == in) return;
  auto rel = out.lexically_relative(in);
  if (!rel.empty() && *rel.begin() != "..")
    throw Error(ErrorCode::invalid_argument,
                output + ": the output folder is inside the dataset folder " + input +
                    " (it would be scanned as a class folder next time); write it elsewhere");
}

struct Outputs {
  std::string images, labels, manifest;
};

int normalize_main(const CLI::App& app, NormalizeFlags& f) {
  const bool npy_input = f.list.empty() && ends_with_npy(f.input);
  if (f.input.empty() == f.list.empty())
    throw Error(ErrorCode::invalid_argument,
                "give either a dataset (folder or .npy) or --list FILE");
  if (!f.stats.empty() && f.fit)
    throw Error(ErrorCode::invalid_argument, "give --stats FILE or --fit, not both");

  TransformSpec spec;
  spec.mode = parse_mode_flag(f.mode);
  spec.unit = f.unit;
  spec.eps = f.eps;
  spec.mean_image_std = f.divide_std;
  if (f.divide_std && spec.mode != Mode::mean_image)
    throw Error(ErrorCode::invalid_argument, "--divide-std applies to --mode mean-image only");
  if (!f.range.empty()) {
    auto r = parse_numbers(f.range, "--range");
    if (r.size() != 2) throw Error(ErrorCode::invalid_argument, "--range takes lo,hi");
    spec.range = std::make_pair(r[0], r[1]);
  }
  if (spec.mode == Mode::custom) {
    if (f.mean.empty()) throw Error(ErrorCode::invalid_argument, "--mode custom needs --mean");
    spec.mean = parse_numbers(f.mean, "--mean");
    if (!f.std.empty()) spec.std = parse_numbers(f.std, "--std");
  } else if (!f.mean.empty() || !f.std.empty()) {
    throw Error(ErrorCode::invalid_argument, "--mean and --std apply to --mode custom only");
  }
  if (spec.mode == Mode::mean_image && f.mean_image.empty() && !f.fit)
    throw Error(ErrorCode::invalid_argument,
                "--mode mean-image needs --mean-image FILE.npy (from imgnorm stats --mean-image) "
                "or --fit");

  // The recipe: the training stats' unless overridden (with a warning), else the flags'.
  std::optional<StatsFile> stats;
  if (!f.stats.empty()) stats = read_stats_file(f.stats);
  if (needs_dataset_stats(spec) && !stats && !f.fit)
    throw Error(ErrorCode::invalid_argument, std::string("--mode ") + to_string(spec.mode) +
                                                 " needs the dataset statistics: --stats FILE "
                                                 "(from imgnorm stats) or --fit");
  Recipe recipe = stats ? f.recipe.to_recipe(app, stats->recipe) : f.recipe.to_recipe(app);
  if (stats) {
    std::string diff = recipe_differences(recipe, stats->recipe);
    if (!diff.empty())
      std::fprintf(stderr,
                   "imgnorm: warning: the recipe differs from the training recipe in %s (%s)\n",
                   f.stats.c_str(), diff.c_str());
  }

  // --channels is the output order; without statistics, gray also decodes gray.
  if (f.channels == "gray" && !stats) recipe.channels = ChannelOrder::gray;
  if (recipe.resize == ResizeMode::none && !npy_input)
    throw Error(ErrorCode::invalid_argument, "normalize needs a fixed --size (not --resize none)");

  OutputFormat format;
  format.layout = parse_layout(f.layout);
  format.dtype = parse_dtype(f.dtype);

  // Inputs. A .npy input's channels are taken to be in the recipe's order.
  const std::string source = f.list.empty() ? f.input : f.list;
  std::optional<NpyInput> npy;
  Dataset ds;
  if (npy_input) {
    npy = open_npy_input(f.input);
    if (npy->channels != channel_count(recipe.channels)) {
      if (npy->channels == 1) {
        recipe.channels = ChannelOrder::gray;
      } else if (stats) {
        throw Error(ErrorCode::invalid_argument,
                    f.input + ": 3 channels, but the statistics in " + f.stats + " are gray");
      } else {
        recipe.channels = ChannelOrder::rgb;
      }
    }
    recipe.size = {npy->width, npy->height};
    recipe.resize = ResizeMode::none;
  } else {
    ds = load_dataset(f.input, f.list);
    if (ds.entries.empty())
      throw Error(ErrorCode::empty, source + ": no image files found (" +
                                        std::to_string(ds.ignored.size()) +
                                        " other files ignored)");
  }
  const int nc = channel_count(recipe.channels);
  if (f.channels.empty()) {
    auto p = preset_channel_order(spec.mode);
    format.channels = nc == 1 ? ChannelOrder::gray : (p ? *p : recipe.channels);
  } else {
    format.channels = parse_channel_order(f.channels);
    if (nc == 1 && format.channels != ChannelOrder::gray)
      throw Error(ErrorCode::invalid_argument, "--channels " + f.channels + " needs color input");
    if (nc == 3 && format.channels == ChannelOrder::gray)
      throw Error(ErrorCode::invalid_argument,
                  stats ? "--channels gray: the statistics in " + f.stats +
                              " are of color images (compute them with stats --channels gray)"
                        : "--channels gray: " + f.input + " has 3 channels");
  }

  // Labels: class ids of the training class list.
  const bool write_labels = !f.no_labels && !npy_input;
  std::vector<int> label_of_class;
  std::vector<std::string> classes = stats ? stats->classes : ds.classes;
  if (write_labels) {
    std::map<std::string, int> id;
    for (std::size_t i = 0; i < classes.size(); ++i) id[classes[i]] = static_cast<int>(i);
    for (const std::string& c : ds.classes) {
      auto it = id.find(c);
      if (it == id.end())
        throw Error(ErrorCode::invalid_argument,
                    c.empty() ? source +
                                    ": the images are not in class folders, and the "
                                    "training statistics have classes; use --no-labels"
                              : source + ": class '" + c + "' is not among the " +
                                    std::to_string(classes.size()) + " training classes of " +
                                    f.stats + "; use --no-labels to skip labels");
      label_of_class.push_back(it->second);
    }
  }

  // Outputs are checked before any work; the folder is created only when the data is ready.
  const Outputs out{f.output + "/images.npy", f.output + "/labels.npy",
                    f.output + "/manifest.json"};
  if (!npy_input && f.list.empty()) check_not_inside(f.output, f.input);
  if (check_output_folder(f.output)) {
    check_output_path(out.images, f.force);
    check_output_path(out.manifest, f.force);
    if (write_labels) check_output_path(out.labels, f.force);
  }
  // A mean image from a file is checked before the --fit pass.
  if (spec.mode == Mode::mean_image && !f.mean_image.empty()) {
    spec.mean_image = load_mean_image(f.mean_image, nc, spec.mean_image_size);
    if (!(spec.mean_image_size == recipe.size))
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: the mean image is {}x{}, the images {}x{}", f.mean_image,
                              spec.mean_image_size.width, spec.mean_image_size.height,
                              recipe.size.width, recipe.size.height));
  }

  // --fit: the statistics of this input, first pass.
  if (f.fit) {
    StatsJob job;
    job.recipe = recipe;
    job.mean_image = spec.mode == Mode::mean_image && f.mean_image.empty();
    if (npy) {
      Accumulator acc(nc);
      if (job.mean_image) acc.enable_mean_image(recipe.size);
      std::vector<std::uint8_t> px(npy->is_float ? std::size_t(npy->width) * npy->height * nc : 0);
      for_each_npy_row(*npy, [&](std::uint64_t r, const NpyRow& row) {
        if (!row.values) return acc.add(row.u8);
        values_to_u8(row.values, px.size(), r, f.input, px.data());
        acc.add(ImageView{px.data(), npy->width, npy->height, nc,
                          static_cast<std::size_t>(npy->width) * nc});
      });
      StatsFile st;
      st.recipe = recipe;
      st.acc = std::move(acc);
      stats = std::move(st);
    } else {
      stats = compute_stats(ds, job, f.run.options("fit"), version());
    }
    if (stats->acc.images() == 0)
      throw Error(ErrorCode::empty, source + ": no image could be used for --fit");
  }
  if (stats) {
    if (channel_count(stats->recipe.channels) != nc)
      throw Error(ErrorCode::invalid_argument,
                  (f.stats.empty() ? std::string("--fit") : f.stats) + ": the statistics have " +
                      std::to_string(channel_count(stats->recipe.channels)) +
                      " channels, the input " + std::to_string(nc));
    Summary s = summarize(stats->acc, stats->ddof);
    for (const auto& c : s.channel) {
      if (spec.mode != Mode::custom) {
        spec.mean.push_back(c.mean);
        spec.std.push_back(c.std);
      }
      spec.min.push_back(c.min);
      spec.max.push_back(c.max);
    }
  }
  if (spec.mode == Mode::mean_image && f.mean_image.empty()) {
    {
      const auto& sums = stats->acc.pixel_sums();
      const double n = static_cast<double>(stats->acc.images());
      spec.mean_image.resize(sums.size());
      for (std::size_t i = 0; i < sums.size(); ++i)
        spec.mean_image[i] = static_cast<double>(sums[i]) / n;
      spec.mean_image_size = stats->acc.mean_image_size();
    }
  }
  const Normalizer norm(spec, recipe.channels, format);
  const bool per_image = is_per_image(spec.mode);

  // The array: N rows of H×W×C (or C×H×W).
  const std::uint64_t planned = npy ? npy->rows : ds.entries.size();
  const std::uint64_t h = static_cast<std::uint64_t>(recipe.size.height);
  const std::uint64_t w = static_cast<std::uint64_t>(recipe.size.width);
  std::vector<std::uint64_t> shape =
      format.layout == Layout::nhwc ? std::vector<std::uint64_t>{planned, h, w, std::uint64_t(nc)}
                                    : std::vector<std::uint64_t>{planned, std::uint64_t(nc), h, w};
  create_output_folder(f.output);
  NpyWriter images(out.images,
                   format.dtype == DType::float32 ? NpyDtype::float32 : NpyDtype::float16, shape);
  const std::size_t row_bytes = static_cast<std::size_t>(images.row_bytes());

  std::vector<std::int64_t> labels;
  ojson files = ojson::array();
  ojson per_image_maps = ojson::array();
  std::vector<Skipped> skipped;
  std::uint64_t constant_channels = 0;
  std::uint64_t rows = 0;

  if (npy) {
    std::vector<std::uint8_t> buf(row_bytes);
    for_each_npy_row(*npy, [&](std::uint64_t r, const NpyRow& row) {
      if (row.values) {
        Affine a;
        try {
          constant_channels += static_cast<std::uint64_t>(
              norm.apply_values(row.values, npy->width, npy->height, buf.data(), &a));
        } catch (const Error& e) {
          throw Error(e.code(), f.input + ": row " + std::to_string(r) + ": " + e.what());
        }
        if (per_image) per_image_maps.push_back(affine_json(a));
      } else if (per_image) {
        const ImageView& v = row.u8;
        int constant = 0;
        Affine a = norm.affine_for(v, &constant);
        apply(v, make_table(a), norm.swap_rb(), format.layout, format.dtype, buf.data());
        constant_channels += static_cast<std::uint64_t>(constant);
        per_image_maps.push_back(affine_json(a));
      } else {
        norm.apply(row.u8, buf.data());
      }
      images.write_rows(r, buf.data(), 1);
      ++rows;
    });
  } else {
    const PipelineOptions options = f.run.options("normalize");
    const int slots = pipeline_slots(options);
    std::vector<std::uint8_t> slot_data(static_cast<std::size_t>(slots) * row_bytes);
    std::vector<Affine> slot_affine(static_cast<std::size_t>(slots));
    std::vector<int> slot_constant(static_cast<std::size_t>(slots), 0);
    run_pipeline(
        ds.entries, recipe, options,
        [&](const LoadedImage& li) {
          std::uint8_t* dst = slot_data.data() + static_cast<std::size_t>(li.slot) * row_bytes;
          if (per_image) {
            int constant = 0;
            Affine a = norm.affine_for(li.image, &constant);
            apply(li.image, make_table(a), norm.swap_rb(), format.layout, format.dtype, dst);
            slot_affine[li.slot] = a;
            slot_constant[li.slot] = constant;
          } else {
            norm.apply(li.image, dst);
          }
        },
        [&](std::size_t index, int slot, const Error* error) {
          const Entry& e = ds.entries[index];
          if (error) {
            skipped.push_back({e.path, error->code(), error->what()});
            if (!f.run.quiet)
              std::fprintf(stderr, "imgnorm: skipped %s: %s\n", e.path.c_str(), error->what());
            return;
          }
          images.write_rows(rows, slot_data.data() + static_cast<std::size_t>(slot) * row_bytes, 1);
          ojson file{{"path", e.path}};
          if (write_labels) {
            labels.push_back(label_of_class[e.label]);
            file["label"] = labels.back();
          }
          files.push_back(std::move(file));
          if (per_image) {
            per_image_maps.push_back(affine_json(slot_affine[slot]));
            constant_channels += static_cast<std::uint64_t>(slot_constant[slot]);
          }
          ++rows;
        });
  }
  if (rows == 0)
    throw Error(ErrorCode::empty, "no image could be used: all " + std::to_string(skipped.size()) +
                                      " files were skipped");
  if (rows != planned) images.set_rows(rows);
  shape[0] = rows;

  ojson m;
  m["format"] = "imgnorm-manifest";
  m["version"] = 1;
  m["tool_version"] = version();
  m["source"] = source;
  m["stats"] = f.stats.empty() ? ojson(nullptr) : ojson(f.stats);
  m["fit"] = f.fit;
  m["mode"] = to_string(spec.mode);
  m["formula"] = norm.formula();
  m["unit"] = spec.unit;
  if (spec.range) m["range"] = {spec.range->first, spec.range->second};
  if (spec.eps) m["eps"] = *spec.eps;
  if (spec.mode == Mode::mean_image) {
    m["mean_image"] = f.mean_image.empty() ? ojson(nullptr) : ojson(absolute_path(f.mean_image));
    m["divide_std"] = spec.mean_image_std;
  }
  m["layout"] = to_string(format.layout);
  m["dtype"] = to_string(format.dtype);
  m["channels"] = to_string(format.channels);
  m["shape"] = shape;
  m["recipe"] = ojson::parse(to_json(recipe));
  m["input_channels"] = to_string(recipe.channels);
  if (!spec.mean.empty() && spec.mode != Mode::custom) {
    m["dataset_mean"] = spec.mean;
    m["dataset_std"] = spec.std;
  }
  // Per input channel: y = t + g * ((x / d - m) / s) as [d, m, s, g, t]; and per output channel
  // the affine y = a*x + b.
  if (!per_image) {
    Affine a = norm.affine_for(ImageView{});
    m["maps"] = affine_json(a);
    if (spec.mode == Mode::mean_image)
      m["affine_note"] = "m is 0 here: the mean image M[h,w,c] is subtracted per pixel";
    m["affine"] = slopes_json(a, norm.swap_rb());
  } else {
    m["per_image_maps"] = std::move(per_image_maps);
  }
  m["constant_channels"] = constant_channels;
  m["classes"] = classes;
  m["labels"] = write_labels ? ojson("labels.npy") : ojson(nullptr);
  m["rows"] = rows;
  m["files"] = std::move(files);
  ojson sk = ojson::array();
  for (const auto& s : skipped)
    sk.push_back({{"path", s.path}, {"code", to_string(s.code)}, {"reason", s.reason}});
  m["skipped"] = std::move(sk);
  if (!ds.ignored.empty()) {
    ojson ig = ojson::array();
    for (const auto& i : ds.ignored) ig.push_back({{"path", i.path}, {"reason", i.reason}});
    m["ignored"] = std::move(ig);
  }

  // images.npy is renamed into place last: a run that stops earlier leaves no images.npy.
  if (g_cancel.load()) throw Error(ErrorCode::interrupted, "interrupted");
  if (f.force) {
    // Old outputs go first: a stop between the renames below must not leave an old images.npy
    // beside new labels (nor an old labels.npy after --no-labels).
    ::unlink(out.images.c_str());
    ::unlink(out.labels.c_str());
  }
  if (write_labels) write_npy(out.labels, NpyDtype::int64, {rows}, labels.data());
  write_file_atomic(out.manifest, manifest_text(m), f.force);
  images.commit();

  {
    fmt::print("imgnorm normalize: {} images -> {} ({} {} {}, {}), mode {}\n", rows, out.images,
               fmt::join(shape, "x"), to_string(format.layout), to_string(format.dtype),
               to_string(format.channels), to_string(spec.mode));
    fmt::print("  {}\n", norm.formula());
    if (!skipped.empty())
      fmt::print("  {} files skipped (listed in manifest.json)\n", skipped.size());
    if (constant_channels)
      fmt::print("  {} constant image channels mapped to a constant\n", constant_channels);
  }
  if (f.strict && !skipped.empty()) {
    print_error(std::to_string(skipped.size()) + " files were skipped (--strict)");
    return kSkipped;
  }
  return kOk;
}

// ---- denormalize ----

struct DenormalizeFlags {
  std::string input;
  std::string manifest;
  std::string output;
  bool force = false;
};

std::string folder_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

int denormalize_main(const DenormalizeFlags& f) {
  const std::string mpath = f.manifest.empty() ? folder_of(f.input) + "/manifest.json" : f.manifest;
  ojson m;
  {
    std::FILE* fp = std::fopen(mpath.c_str(), "rb");
    if (!fp) throw Error(ErrorCode::io, mpath + ": cannot open: " + std::strerror(errno));
    std::string text;
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, fp)) > 0) text.append(buf, n);
    std::fclose(fp);
    m = ojson::parse(text, nullptr, false);
    if (m.is_discarded() || !m.is_object() || !m.contains("format") ||
        m["format"] != "imgnorm-manifest")
      throw Error(ErrorCode::format, mpath + ": not an imgnorm manifest.json");
  }
  check_output_path(f.output, f.force);
  auto str = [&](const char* k) {
    if (!m.contains(k) || !m[k].is_string())
      throw Error(ErrorCode::format, mpath + ": missing field '" + k + "'");
    return m[k].get<std::string>();
  };
  const Layout layout = parse_layout(str("layout"));
  const DType dtype = parse_dtype(str("dtype"));
  const ChannelOrder out_order = parse_channel_order(str("channels"));
  const ChannelOrder in_order = parse_channel_order(str("input_channels"));
  const int nc = channel_count(in_order);
  const bool swap_rb = nc == 3 && out_order != in_order;

  NpyReader reader(f.input);
  const auto& sh = reader.header().shape;
  const NpyDtype want = dtype == DType::float32 ? NpyDtype::float32 : NpyDtype::float16;
  if (reader.header().dtype != want || sh.size() != 4)
    throw Error(ErrorCode::format, f.input + ": does not match " + mpath + " (dtype or rank)");
  const std::uint64_t c = layout == Layout::nhwc ? sh[3] : sh[1];
  const std::uint64_t h = layout == Layout::nhwc ? sh[1] : sh[2];
  const std::uint64_t w = layout == Layout::nhwc ? sh[2] : sh[3];
  if (c != static_cast<std::uint64_t>(nc) || h == 0 || w == 0 || h > 65535 || w > 65535)
    throw Error(ErrorCode::format, f.input + ": shape does not match " + mpath);
  if (sh[0] == 0) throw Error(ErrorCode::empty, f.input + ": the array has no rows");

  std::vector<double> mean_image;
  if (m.contains("mode") && m["mode"] == "mean-image") {
    if (!m.contains("mean_image") || !m["mean_image"].is_string())
      throw Error(ErrorCode::invalid_argument,
                  mpath + ": the mean image was computed by --fit and not saved; cannot invert");
    Size sz;
    mean_image = load_mean_image(m["mean_image"].get<std::string>(), nc, sz);
    if (sz.width != static_cast<int>(w) || sz.height != static_cast<int>(h))
      throw Error(ErrorCode::format, "the mean image does not match " + f.input);
  }
  std::optional<Affine> fixed;
  const ojson* per_image = nullptr;
  if (m.contains("maps")) {
    fixed = affine_from_json(m["maps"], nc, mpath + ": maps");
  } else if (m.contains("per_image_maps") && m["per_image_maps"].is_array() &&
             m["per_image_maps"].size() == sh[0]) {
    per_image = &m["per_image_maps"];
  } else {
    throw Error(ErrorCode::format, mpath + ": no maps for " + std::to_string(sh[0]) + " rows");
  }

  NpyWriter writer(f.output, NpyDtype::uint8, {sh[0], h, w, std::uint64_t(nc)});
  std::vector<std::uint8_t> in(static_cast<std::size_t>(reader.header().row_bytes()));
  std::vector<std::uint8_t> px(static_cast<std::size_t>(w * h) * nc);
  for (std::uint64_t r = 0; r < sh[0]; ++r) {
    if (g_cancel.load()) throw Error(ErrorCode::interrupted, "interrupted");
    reader.read_rows(r, 1, in.data());
    Affine a = fixed ? *fixed
                     : affine_from_json((*per_image)[r], nc,
                                        mpath + ": per_image_maps row " + std::to_string(r));
    try {
      invert(in.data(), layout, dtype, swap_rb, a, static_cast<int>(w), static_cast<int>(h),
             px.data(), mean_image.empty() ? nullptr : mean_image.data());
    } catch (const Error& e) {
      throw Error(e.code(), f.input + ": row " + std::to_string(r) + ": " + e.what());
    }
    if (swap_rb)
      for (std::size_t i = 0; i < px.size(); i += 3) std::swap(px[i], px[i + 2]);
    writer.write_rows(r, px.data(), 1);
  }
  writer.commit();
  fmt::print("imgnorm denormalize: {} images -> {} (uint8 {}x{}x{}x{}, {})\n", sh[0], f.output,
             sh[0], h, w, nc, to_string(out_order));
  return kOk;
}

// ---- inspect ----

int inspect_npy(const std::string& path, const std::string& layout_flag) {
  NpyReader reader(path);
  const NpyHeader& hd = reader.header();
  const auto& sh = hd.shape;
  fmt::print("{}: shape ({}), dtype {}\n", path, fmt::join(sh, ", "), to_string(hd.dtype));
  if (hd.count == 0) return kOk;
  // Channel axis: explicit, or the last axis when it has 1, 3 or 4 entries, else axis 1 of 4-D.
  std::size_t axis = sh.size();  // none: the whole array is one channel
  if (layout_flag == "nchw" && sh.size() == 4)
    axis = 1;
  else if (layout_flag == "nhwc" && sh.size() >= 3)
    axis = sh.size() - 1;
  else if (layout_flag.empty() && sh.size() >= 3) {
    if (sh.back() == 1 || sh.back() == 3 || sh.back() == 4)
      axis = sh.size() - 1;
    else if (sh.size() == 4 && (sh[1] == 1 || sh[1] == 3))
      axis = 1;
  }
  const std::uint64_t channels = axis < sh.size() ? sh[axis] : 1;
  std::uint64_t inner = 1;  // elements after the channel axis
  for (std::size_t i = axis + 1; i < sh.size(); ++i) inner *= sh[i];
  if (axis == sh.size()) inner = 1;
  struct Acc {
    long double sum = 0, sq = 0;
    double min = INFINITY, max = -INFINITY;
    std::uint64_t n = 0, nan = 0;
  };
  std::vector<Acc> acc(channels);
  const std::size_t item = npy_itemsize(hd.dtype);
  const std::uint64_t rows = reader.rows();
  const std::uint64_t per_row = rows ? hd.count / rows : 0;
  const std::uint64_t chunk_rows =
      std::max<std::uint64_t>(1, (64u << 20) / std::max<std::uint64_t>(1, per_row * item));
  std::vector<std::uint8_t> buf;
  for (std::uint64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
    if (g_cancel.load()) throw Error(ErrorCode::interrupted, "interrupted");
    const std::uint64_t n = std::min(chunk_rows, rows - r0);
    buf.resize(static_cast<std::size_t>(n * per_row * item));
    reader.read_rows(r0, n, buf.data());
    const std::uint64_t base = r0 * per_row;
    for (std::uint64_t i = 0; i < n * per_row; ++i) {
      double v = 0;
      const std::uint8_t* p = buf.data() + i * item;
      switch (hd.dtype) {
        case NpyDtype::bool_:
        case NpyDtype::uint8:
          v = *p;
          break;
        case NpyDtype::uint16: {
          std::uint16_t x;
          std::memcpy(&x, p, 2);
          v = x;
          break;
        }
        case NpyDtype::int32: {
          std::int32_t x;
          std::memcpy(&x, p, 4);
          v = x;
          break;
        }
        case NpyDtype::int64: {
          std::int64_t x;
          std::memcpy(&x, p, 8);
          v = static_cast<double>(x);
          break;
        }
        case NpyDtype::float16: {
          std::uint16_t x;
          std::memcpy(&x, p, 2);
          v = half_to_float(x);
          break;
        }
        case NpyDtype::float32: {
          float x;
          std::memcpy(&x, p, 4);
          v = x;
          break;
        }
        case NpyDtype::float64:
          std::memcpy(&v, p, 8);
          break;
      }
      const std::uint64_t c = axis < sh.size() ? ((base + i) / inner) % channels : 0;
      Acc& a = acc[c];
      if (std::isnan(v)) {
        ++a.nan;
        continue;
      }
      a.sum += v;
      a.sq += static_cast<long double>(v) * v;
      a.min = std::min(a.min, v);
      a.max = std::max(a.max, v);
      ++a.n;
    }
  }
  fmt::print("{:<8}{:>14}{:>14}{:>14}{:>14}\n", axis < sh.size() ? "channel" : "all", "mean", "std",
             "min", "max");
  for (std::uint64_t c = 0; c < channels; ++c) {
    const Acc& a = acc[c];
    long double mean = a.n ? a.sum / a.n : 0;
    long double var = a.n ? a.sq / a.n - mean * mean : 0;
    fmt::print("{:<8}{:>14.6f}{:>14.6f}{:>14.6f}{:>14.6f}{}\n", c, static_cast<double>(mean),
               std::sqrt(static_cast<double>(std::max<long double>(var, 0))), a.min, a.max,
               a.nan ? fmt::format("  ({} NaN)", a.nan) : "");
  }
  return kOk;
}

}  // namespace

Command add_normalize_command(CLI::App& app) {
  auto f = std::make_shared<NormalizeFlags>();
  CLI::App* sub = app.add_subcommand(
      "normalize", "Normalize a dataset into images.npy, labels.npy and manifest.json");
  sub->add_option("dataset", f->input, "Dataset folder, or a .npy array (uint8/float NHWC)");
  sub->add_option("--list", f->list, "Read image paths from FILE (one per line) instead");
  sub->add_option("-o,--output", f->output, "Output folder (created if missing)")->required();
  sub->add_option("--stats", f->stats, "Training statistics (stats.json from imgnorm stats)");
  sub->add_flag("--fit", f->fit, "Compute the statistics of the input first (two passes)");
  sub->add_option("--mode", f->mode,
                  "scale | center | standardize | mean-image | minmax | minmax-dataset | per-image "
                  "| per-image-channel | preset:imagenet | preset:caffe | preset:inception | "
                  "preset:clip | custom")
      ->capture_default_str();
  sub->add_option("--range", f->range, "Output range lo,hi of scale/minmax/minmax-dataset (0,1)");
  sub->add_option("--unit", f->unit, "Units of the formula: 255 (x in 0-255) or 1 (x/255)")
      ->check(CLI::IsMember({1, 255}))
      ->capture_default_str();
  sub->add_option("--mean", f->mean, "custom: per-channel means a,b,c (output channel order)");
  sub->add_option("--std", f->std, "custom: per-channel stds d,e,f (default 1)");
  sub->add_option("--mean-image", f->mean_image,
                  "mean-image: the mean image from stats --mean-image");
  sub->add_flag("--divide-std", f->divide_std, "mean-image: also divide by the dataset std");
  sub->add_option("--eps", f->eps, "Divide by max(std, eps) instead of failing on std 0");
  sub->add_option("--layout", f->layout, "nhwc (numpy, TensorFlow) | nchw (PyTorch)")
      ->capture_default_str();
  sub->add_option("--dtype", f->dtype, "float32 | float16")->capture_default_str();
  sub->add_option("--channels", f->channels,
                  "Output channel order rgb | bgr | gray (default: the statistics' order; bgr for "
                  "caffe; gray without --stats decodes gray)");
  sub->add_flag("--no-labels", f->no_labels, "Do not write labels.npy");
  f->recipe.channels_flag = false;
  f->recipe.add_to(*sub);
  sub->add_flag("--strict", f->strict, "Exit with status 3 when any file was skipped");
  sub->add_flag("--force", f->force, "Replace existing output files");
  f->run.add_to(*sub);
  sub->footer(
      "With --stats, the recipe flags (--size, --resize, --interp, --pad-value, --exact-decode, "
      "--max-pixels) default to the recipe recorded in the stats file; given explicitly they "
      "override it, with a warning. Outputs: DIR/images.npy, DIR/labels.npy, DIR/manifest.json "
      "(docs/normalize.md).");
  return {sub, [sub, f] { return normalize_main(*sub, *f); }};
}

Command add_denormalize_command(CLI::App& app) {
  auto f = std::make_shared<DenormalizeFlags>();
  CLI::App* sub = app.add_subcommand(
      "denormalize",
      "Map a normalized images.npy back to uint8 pixels (NHWC), for looking at them");
  sub->add_option("images", f->input, "images.npy written by imgnorm normalize")->required();
  sub->add_option("--manifest", f->manifest, "Its manifest.json (default: beside the input)");
  sub->add_option("-o,--output", f->output, "Output .npy (uint8, N x H x W x C)")->required();
  sub->add_flag("--force", f->force, "Replace an existing output file");
  return {sub, [f] { return denormalize_main(*f); }};
}

Command add_inspect_command(CLI::App& app) {
  struct InspectFlags {
    std::string input;
    std::string layout;
  };
  auto f = std::make_shared<InspectFlags>();
  CLI::App* sub = app.add_subcommand(
      "inspect", "Print shape, dtype and per-channel mean/std/min/max of a .npy, or a stats.json");
  sub->add_option("file", f->input, "A .npy array or a stats.json")->required();
  sub->add_option("--layout", f->layout, "Channel axis of a .npy: nhwc (last) | nchw (axis 1)")
      ->check(CLI::IsMember({"nhwc", "nchw"}));
  return {sub, [f] {
            if (ends_with_npy(f->input)) return inspect_npy(f->input, f->layout);
            print_summary(read_stats_file(f->input), "table");
            return static_cast<int>(kOk);
          }};
}

}  // namespace imgnorm::cli
