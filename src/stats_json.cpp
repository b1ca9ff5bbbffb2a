// stats.json: writing, validating reading, merging. Schema: docs/stats-json.md.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_set>

#include "accumulator_access.hpp"
#include "coverage.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/output.hpp"
#include "imgnorm/stats.hpp"
#include "json_internal.hpp"
#include "sha256.hpp"
#include "stats_file_internal.hpp"
#include "stats_ref.hpp"

namespace imgnorm {

namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* kFormatName = "imgnorm-stats";
constexpr int kFormatVersion = 1;

// ---------------------------------------------------------------------------------------------
// Writing

std::string u128_to_string(u128 v) {
  if (v == 0) return "0";
  std::string s;
  while (v != 0) {
    s.push_back(static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  std::reverse(s.begin(), s.end());
  return s;
}

bool is_scalar_array(const ojson& j) {
  return std::all_of(j.begin(), j.end(), [](const ojson& e) { return e.is_primitive(); });
}

// Like dump(2), but arrays of scalars stay on one line, so histograms and per-channel lists read as
// rows. Scalars go through nlohmann's dump (shortest round-trip doubles), strings through
// append_json_string (names that are not UTF-8 written losslessly).
void write_pretty(const ojson& j, int indent, std::string& out) {
  const std::string pad(static_cast<std::size_t>(indent) + 2, ' ');
  if (j.is_object()) {
    if (j.empty()) {
      out += "{}";
      return;
    }
    out += "{\n";
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!first) out += ",\n";
      first = false;
      out += pad;
      detail::append_json_string(out, it.key());
      out += ": ";
      write_pretty(it.value(), indent + 2, out);
    }
    out += "\n" + std::string(static_cast<std::size_t>(indent), ' ') + "}";
  } else if (j.is_array()) {
    if (j.empty() || is_scalar_array(j)) {
      out += "[";
      bool first = true;
      for (const ojson& e : j) {
        if (!first) out += ", ";
        first = false;
        detail::append_json(out, e);
      }
      out += "]";
      return;
    }
    out += "[\n";
    bool first = true;
    for (const ojson& e : j) {
      if (!first) out += ",\n";
      first = false;
      out += pad;
      write_pretty(e, indent + 2, out);
    }
    out += "\n" + std::string(static_cast<std::size_t>(indent), ' ') + "]";
  } else {
    detail::append_json(out, j);
  }
}

template <typename F>
ojson per_channel(const Summary* s, F f) {
  if (s == nullptr) return nullptr;
  ojson a = ojson::array();
  for (const ChannelSummary& c : s->channel) a.push_back(f(c));
  return a;
}

// ---------------------------------------------------------------------------------------------
// Reading: every accessor names the field it complains about.

[[noreturn]] void bad(const std::string& message) { throw Error(ErrorCode::format, message); }

std::string quoted(const std::string& name) { return "'" + name + "'"; }

const ojson& need(const ojson& obj, const char* key, const std::string& name) {
  auto it = obj.find(key);
  if (it == obj.end()) bad("missing field " + quoted(name));
  return *it;
}

const ojson& need_object(const ojson& obj, const char* key, const std::string& name) {
  const ojson& j = need(obj, key, name);
  if (!j.is_object()) bad("field " + quoted(name) + " must be an object");
  return j;
}

const ojson& need_array(const ojson& obj, const char* key, const std::string& name,
                        std::size_t size = SIZE_MAX) {
  const ojson& j = need(obj, key, name);
  if (!j.is_array()) bad("field " + quoted(name) + " must be a list");
  if (size != SIZE_MAX && j.size() != size)
    bad("field " + quoted(name) + " must have " + std::to_string(size) + " entries, not " +
        std::to_string(j.size()));
  return j;
}

std::uint64_t as_u64(const ojson& j, const std::string& name, std::uint64_t max = UINT64_MAX) {
  if (!j.is_number_unsigned()) bad("field " + quoted(name) + " must be an unsigned integer");
  const auto v = j.get<std::uint64_t>();
  if (v > max) bad("field " + quoted(name) + " is out of range (" + std::to_string(v) + ")");
  return v;
}

std::uint64_t need_u64(const ojson& obj, const char* key, const std::string& name,
                       std::uint64_t max = UINT64_MAX) {
  return as_u64(need(obj, key, name), name, max);
}

std::string need_string(const ojson& obj, const char* key, const std::string& name) {
  const ojson& j = need(obj, key, name);
  if (!j.is_string()) bad("field " + quoted(name) + " must be a string");
  return j.get<std::string>();
}

bool need_bool(const ojson& obj, const char* key, const std::string& name) {
  const ojson& j = need(obj, key, name);
  if (!j.is_boolean()) bad("field " + quoted(name) + " must be true or false");
  return j.get<bool>();
}

u128 as_u128(const ojson& j, const std::string& name) {
  const std::string what = "field " + quoted(name) + " must be a decimal integer string";
  if (!j.is_string()) bad(what);
  const auto& s = j.get_ref<const std::string&>();
  if (s.empty() || s.size() > 39) bad(what);
  u128 v = 0;
  constexpr u128 kMax = ~u128{0};
  for (char ch : s) {
    if (ch < '0' || ch > '9') bad(what);
    const unsigned d = static_cast<unsigned>(ch - '0');
    if (v > (kMax - d) / 10) bad("field " + quoted(name) + " is out of range");
    v = v * 10 + d;
  }
  return v;
}

// Runs a parser that throws Error(invalid_argument) and reports it as a bad field.
template <typename F>
auto parse_field(const std::string& name, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    bad("field " + quoted(name) + ": " + e.what());
  }
}

ErrorCode parse_error_code(const std::string& s, const std::string& name) {
  static constexpr ErrorCode kAll[] = {ErrorCode::invalid_argument,
                                       ErrorCode::io,
                                       ErrorCode::unsupported,
                                       ErrorCode::corrupt,
                                       ErrorCode::too_large,
                                       ErrorCode::format,
                                       ErrorCode::empty,
                                       ErrorCode::interrupted};
  for (ErrorCode c : kAll)
    if (s == to_string(c)) return c;
  bad("field " + quoted(name) + " has unknown error code '" + s + "'");
}

Recipe read_recipe(const ojson& root) {
  const ojson& r = need_object(root, "recipe", "recipe");
  Recipe recipe;
  const std::string channels = need_string(r, "channels", "recipe.channels");
  recipe.channels = parse_field("recipe.channels", [&] { return parse_channel_order(channels); });
  const ojson& order = need_array(r, "channel_order", "recipe.channel_order");
  const std::vector<std::string> names = channel_names(recipe.channels);
  if (order.size() != names.size() ||
      !std::equal(order.begin(), order.end(), names.begin(),
                  [](const ojson& a, const std::string& b) { return a.is_string() && a == b; }))
    bad("field 'recipe.channel_order' does not match 'recipe.channels' (" + channels + ")");
  const ojson& size = need_array(r, "size", "recipe.size", 2);
  recipe.size.width = static_cast<int>(as_u64(size[0], "recipe.size", 65535));
  recipe.size.height = static_cast<int>(as_u64(size[1], "recipe.size", 65535));
  const std::string resize = need_string(r, "resize", "recipe.resize");
  recipe.resize = parse_field("recipe.resize", [&] { return parse_resize_mode(resize); });
  // ResizeMode::none keeps the decoded size: its size is recorded as 0x0.
  if (recipe.resize != ResizeMode::none && (recipe.size.width == 0 || recipe.size.height == 0))
    bad("field 'recipe.size' must be at least 1x1");
  const std::string interp = need_string(r, "interpolation", "recipe.interpolation");
  recipe.interp = parse_field("recipe.interpolation", [&] { return parse_interp(interp); });
  recipe.pad_value = static_cast<std::uint8_t>(need_u64(r, "pad_value", "recipe.pad_value", 255));
  recipe.exact_decode = need_bool(r, "exact_decode", "recipe.exact_decode");
  recipe.max_pixels = need_u64(r, "max_pixels", "recipe.max_pixels");
  if (recipe.max_pixels == 0) bad("field 'recipe.max_pixels' must be at least 1");
  // Files written before --alpha existed have no key: they dropped alpha.
  if (r.contains("alpha")) {
    const std::string alpha = need_string(r, "alpha", "recipe.alpha");
    recipe.alpha = parse_field("recipe.alpha", [&] { return parse_alpha(alpha); });
  }
  return recipe;
}

// "I/N" with 0 <= I < N <= 2^20, digits only.
Shard parse_shard_text(const ojson& j) {
  const std::string what =
      "field 'covers.shards' must hold \"I/N\" strings with 0 <= I < N <= 1048576";
  if (!j.is_string()) bad(what);
  const std::string& t = j.get_ref<const std::string&>();
  const std::size_t slash = t.find('/');
  auto number = [&](std::string_view d) {
    if (d.empty() || d.size() > 7 || d.find_first_not_of("0123456789") != std::string_view::npos)
      bad(what + " (not '" + t + "')");
    return std::stoi(std::string(d));
  };
  if (slash == std::string::npos) bad(what + " (not '" + t + "')");
  Shard s{number(std::string_view(t).substr(0, slash)),
          number(std::string_view(t).substr(slash + 1))};
  if (s.count < 1 || s.count > (1 << 20) || s.index >= s.count) bad(what + " (not '" + t + "')");
  return s;
}

std::vector<Coverage> read_covers(const ojson& j) {
  if (!j.is_array() || j.empty()) bad("field 'covers' must be a non-empty list");
  std::vector<Coverage> covers;
  for (const ojson& k : j) {
    if (!k.is_object()) bad("field 'covers' must be a list of objects");
    Coverage c;
    c.selection = need_string(k, "selection", "covers.selection");
    constexpr std::string_view kPrefix = "sha256:";
    if (c.selection.size() != kPrefix.size() + 64 || c.selection.compare(0, 7, kPrefix) != 0 ||
        c.selection.find_first_not_of("0123456789abcdef", kPrefix.size()) != std::string::npos)
      bad("field 'covers.selection' must be \"sha256:\" and 64 lower-case hex digits");
    c.files = need_u64(k, "files", "covers.files");
    if (c.files == 0) bad("field 'covers.files' must be at least 1");
    if (auto it = k.find("shards"); it != k.end()) {
      if (!it->is_array() || it->empty()) bad("field 'covers.shards' must be a non-empty list");
      for (const ojson& t : *it) c.shards.push_back(parse_shard_text(t));
      // Sorted by (count, index): shards of one count share no file unless equal, so only
      // different counts need the arithmetic, and a long list of one split is checked in one pass.
      std::vector<Shard>& sh = c.shards;
      std::sort(sh.begin(), sh.end(), [](const Shard& x, const Shard& y) {
        return x.count != y.count ? x.count < y.count : x.index < y.index;
      });
      auto overlapping = [&](const Shard& x, const Shard& y) {
        bad("field 'covers.shards' lists overlapping shards (" + detail::shard_text(x) + " and " +
            detail::shard_text(y) + ")");
      };
      for (std::size_t a = 1; a < sh.size(); ++a)
        if (sh[a] == sh[a - 1]) overlapping(sh[a - 1], sh[a]);
      for (std::size_t a = 0, next = 0; a < sh.size(); ++a) {
        if (next <= a)
          for (next = a; next < sh.size() && sh[next].count == sh[a].count;) ++next;
        for (std::size_t b = next; b < sh.size(); ++b)
          if (detail::common_file(sh[a], sh[b], c.files)) overlapping(sh[a], sh[b]);
      }
      detail::normalize(c);  // a list that holds every file is dropped
    }
    for (const Coverage& d : covers)
      if (d.selection == c.selection)
        bad("field 'covers' lists selection " + c.selection + " twice");
    covers.push_back(std::move(c));
  }
  std::sort(covers.begin(), covers.end(),
            [](const Coverage& x, const Coverage& y) { return x.selection < y.selection; });
  return covers;
}

// Checks a per-channel list of numbers against values recomputed from the sums.
void check_derived(const ojson& root, const char* key, const std::vector<double>& expected) {
  const ojson& j = need(root, key, key);
  if (expected.empty()) {
    if (!j.is_null()) bad(std::string("field '") + key + "' must be null when there are no pixels");
    return;
  }
  if (!j.is_array() || j.size() != expected.size())
    bad(std::string("field '") + key + "' must be a list of " + std::to_string(expected.size()) +
        " numbers");
  for (std::size_t c = 0; c < expected.size(); ++c) {
    const ojson& v = j[c];
    if (std::string(key) == "std" && (v.is_null() || (v.is_number() && !(v.get<double>() >= 0))))
      bad("field 'std' has a negative or NaN std");
    if (!v.is_number()) bad(std::string("field '") + key + "' must be a list of numbers");
    const double x = v.get<double>();
    if (!(std::fabs(x - expected[c]) <= 1e-9 * std::max(1.0, std::fabs(expected[c]))))
      bad(std::string("field '") + key + "' does not match 'sums' (channel " + std::to_string(c) +
          ": " + ojson(x).dump() + " vs " + ojson(expected[c]).dump() + ")");
  }
}

ojson recipe_json(const Recipe& r) {
  ojson recipe;
  recipe["channels"] = to_string(r.channels);
  recipe["channel_order"] = channel_names(r.channels);
  recipe["size"] = {r.size.width, r.size.height};
  recipe["resize"] = to_string(r.resize);
  recipe["interpolation"] = to_string(r.interp);
  recipe["pad_value"] = r.pad_value;
  recipe["exact_decode"] = r.exact_decode;
  recipe["max_pixels"] = r.max_pixels;
  // Only when compositing: files of the default recipe stay byte-identical to older versions.
  if (r.alpha.composite) recipe["alpha"] = to_string(r.alpha);
  return recipe;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

namespace detail {
Recipe read_recipe_field(const ojson& root) { return read_recipe(root); }
std::string to_json_with(const StatsFile& stats, const std::optional<PixelCovarianceFile>& pixcov);
}  // namespace detail

std::string to_json(const Recipe& recipe) { return recipe_json(recipe).dump(); }

std::string to_json(const StatsFile& stats) {
  return detail::to_json_with(stats, stats.pixel_covariance);
}

std::string detail::to_json_with(const StatsFile& stats,
                                 const std::optional<PixelCovarianceFile>& pixcov) {
  const Accumulator& acc = stats.acc;
  const int C = acc.channels();
  if (C != channel_count(stats.recipe.channels))
    throw Error(ErrorCode::invalid_argument, "statistics have " + std::to_string(C) +
                                                 " channels, recipe is " +
                                                 to_string(stats.recipe.channels));
  if (stats.class_images.size() != stats.classes.size())
    throw Error(ErrorCode::invalid_argument, "class_images and classes differ in length");
  if (!acc.has_cross_products())
    throw Error(ErrorCode::invalid_argument,
                "statistics without cross products (skip_cross_products) cannot be written as "
                "stats.json, which holds the covariance");
  std::optional<Summary> summary;
  if (acc.pixels() > 0)
    summary = summarize(acc, stats.ddof, stats.sample ? &*stats.sample : nullptr);
  const Summary* s = summary ? &*summary : nullptr;

  ojson j;
  j["format"] = kFormatName;
  j["format_version"] = kFormatVersion;
  j["tool"] = {{"name", "imgnorm"}, {"version", stats.tool_version}};
  j["source"] = stats.source;
  j["recipe"] = recipe_json(stats.recipe);
  j["ddof"] = stats.ddof;

  // Appended without ordered_map's search for an existing key (quadratic in the classes); the
  // names are distinct (a folder has each name once, and the reader refuses repeats).
  ojson per_class = ojson::object();
  auto& per_class_items =
      static_cast<ojson::object_t::Container&>(per_class.get_ref<ojson::object_t&>());
  per_class_items.reserve(stats.classes.size());
  for (std::size_t i = 0; i < stats.classes.size(); ++i)
    per_class_items.emplace_back(stats.classes[i], stats.class_images[i]);
  j["counts"] = {{"files_found", stats.files_found},   {"images", acc.images()},
                 {"pixels_per_channel", acc.pixels()}, {"skipped", stats.skipped.size()},
                 {"ignored", stats.ignored.size()},    {"per_class", std::move(per_class)}};
  j["classes"] = stats.classes;

  j["mean"] = per_channel(s, [](const ChannelSummary& c) { return c.mean; });
  j["std"] = per_channel(s, [](const ChannelSummary& c) { return c.std; });
  j["mean_unit"] = per_channel(s, [](const ChannelSummary& c) { return c.mean_unit; });
  j["std_unit"] = per_channel(s, [](const ChannelSummary& c) { return c.std_unit; });
  j["min"] = per_channel(s, [](const ChannelSummary& c) { return c.min; });
  j["max"] = per_channel(s, [](const ChannelSummary& c) { return c.max; });
  j["median"] = per_channel(s, [](const ChannelSummary& c) { return c.median; });
  if (s != nullptr) {
    static constexpr const char* kNames[4] = {"1", "5", "95", "99"};
    ojson p;
    for (int i = 0; i < 4; ++i)
      p[kNames[i]] = per_channel(s, [i](const ChannelSummary& c) { return c.percentiles[i]; });
    j["percentiles"] = std::move(p);
  } else {
    j["percentiles"] = nullptr;
  }
  j["mean_image_std"] = per_channel(s, [](const ChannelSummary& c) { return c.mean_image_std; });
  if (s != nullptr) {
    ojson cov = ojson::array();
    for (int a = 0; a < C; ++a) {
      ojson row = ojson::array();
      for (int b = 0; b < C; ++b) row.push_back(s->covariance[static_cast<std::size_t>(a) * C + b]);
      cov.push_back(std::move(row));
    }
    j["covariance"] = std::move(cov);
    // The covariance's eigen-decomposition (channel PCA): derived, for readers and --format
    // lighting; not read back (recomputed from the sums).
    ojson vals = ojson::array(), vals_unit = ojson::array(), vecs = ojson::array();
    for (int a = 0; a < C; ++a) {
      vals.push_back(s->eigenvalues[a]);
      vals_unit.push_back(s->eigenvalues[a] / (255.0 * 255.0));
      ojson row = ojson::array();
      for (int b = 0; b < C; ++b)
        row.push_back(s->eigenvectors[static_cast<std::size_t>(a) * C + b]);
      vecs.push_back(std::move(row));
    }
    j["eigenvalues"] = std::move(vals);
    j["eigenvalues_unit"] = std::move(vals_unit);
    j["eigenvectors"] = std::move(vecs);
  } else {
    j["covariance"] = nullptr;
  }

  if (stats.sample) {
    const SampleInfo& si = *stats.sample;
    ojson sample;
    sample["population"] = si.population;
    sample["sampled"] = si.sampled;
    sample["seed"] = si.seed;
    sample["spec"] = si.spec;
    sample["fraction"] = si.population > 0
                             ? static_cast<double>(si.sampled) / static_cast<double>(si.population)
                             : 0.0;
    if (s != nullptr && s->channel[0].mean_ci) {
      ojson mean_ci = ojson::array(), std_ci = ojson::array();
      for (const ChannelSummary& c : s->channel) {
        mean_ci.push_back({c.mean_ci->lo, c.mean_ci->hi});
        std_ci.push_back({c.std_ci->lo, c.std_ci->hi});
      }
      sample["mean_ci95"] = std::move(mean_ci);
      sample["std_ci95"] = std::move(std_ci);
    }
    j["sample"] = std::move(sample);
  }
  if (stats.shard_count > 1)
    j["shard"] = {{"index", stats.shard_index}, {"count", stats.shard_count}};
  if (!stats.covers.empty()) {
    ojson covers = ojson::array();
    for (const Coverage& c : stats.covers) {
      ojson o;
      o["selection"] = c.selection;
      o["files"] = c.files;
      if (!c.shards.empty()) {
        ojson shards = ojson::array();
        for (const Shard& sh : c.shards) shards.push_back(detail::shard_text(sh));
        o["shards"] = std::move(shards);
      }
      covers.push_back(std::move(o));
    }
    j["covers"] = std::move(covers);
  }
  if (pixcov)
    j["pixel_covariance"] = {
        {"file", pixcov->file}, {"sha256", pixcov->sha256}, {"dimension", pixcov->dimension}};

  ojson skipped = ojson::array();
  for (const Skipped& k : stats.skipped)
    skipped.push_back({{"path", k.path}, {"code", to_string(k.code)}, {"reason", k.reason}});
  j["skipped"] = std::move(skipped);
  ojson ignored = ojson::array();
  for (const Ignored& k : stats.ignored)
    ignored.push_back({{"path", k.path}, {"reason", k.reason}});
  j["ignored"] = std::move(ignored);

  ojson hists = ojson::array();
  for (int c = 0; c < C; ++c) hists.push_back(acc.histogram(c));
  j["histograms"] = std::move(hists);

  ojson sums;
  sums["images"] = acc.images();
  sums["pixels"] = acc.pixels();
  sums["pixels_squared"] = u128_to_string(detail::AccumulatorAccess::pixels_squared(acc));
  ojson sum = ojson::array(), sum_sq = ojson::array(), cross = ojson::array(),
        cluster = ojson::array();
  for (int c = 0; c < C; ++c) {
    sum.push_back(acc.sum(c));
    sum_sq.push_back(u128_to_string(detail::AccumulatorAccess::sum_squares(acc, c)));
    ojson row = ojson::array();
    for (int d = 0; d < C; ++d) row.push_back(acc.cross(c, d));
    cross.push_back(std::move(row));
    const ClusterSums& k = detail::AccumulatorAccess::cluster(acc, c);
    cluster.push_back({{"s_s", u128_to_string(k.s_s)},
                       {"s_n", u128_to_string(k.s_n)},
                       {"q_q", u128_to_string(k.q_q)},
                       {"q_s", u128_to_string(k.q_s)},
                       {"q_n", u128_to_string(k.q_n)},
                       {"image_std_fixed", u128_to_string(k.image_std_fixed)}});
  }
  sums["sum"] = std::move(sum);
  sums["sum_squares"] = std::move(sum_sq);
  sums["cross"] = std::move(cross);
  sums["cluster"] = std::move(cluster);
  if (acc.patch_size() > 0) {
    // The K×K patch moments (stats --patch K): one row of the D×D cross sums per line.
    const std::size_t dims = acc.patch_sums().size();
    ojson rows = ojson::array();
    for (std::size_t i = 0; i < dims; ++i) {
      ojson row = ojson::array();
      for (std::size_t k = 0; k < dims; ++k) row.push_back(acc.patch_cross()[i * dims + k]);
      rows.push_back(std::move(row));
    }
    ojson patch;
    patch["size"] = acc.patch_size();
    patch["count"] = acc.patch_count();
    patch["sum"] = acc.patch_sums();
    patch["cross"] = std::move(rows);
    sums["patch"] = std::move(patch);
  }
  j["sums"] = std::move(sums);

  std::string out;
  write_pretty(j, 0, out);
  out += "\n";
  return out;
}

StatsFile stats_from_json(const std::string& text) {
  const ojson root = detail::parse_json(text);
  if (!root.is_object()) bad("not a stats file: the top level must be a JSON object");
  const ojson& format = need(root, "format", "format");
  if (!format.is_string() || format != kFormatName)
    bad("not a stats file: 'format' is " + detail::dump_json(format) + ", expected \"" +
        kFormatName + "\"");
  const ojson& version = need(root, "format_version", "format_version");
  if (!version.is_number_unsigned() || version.get<std::uint64_t>() < 1)
    bad("field 'format_version' must be a positive integer");
  if (version.get<std::uint64_t>() > kFormatVersion)
    bad("written by a newer imgnorm (format_version " + version.dump() + "); this one reads " +
        std::to_string(kFormatVersion));

  StatsFile st;
  const ojson& tool = need_object(root, "tool", "tool");
  st.tool_version = need_string(tool, "version", "tool.version");
  st.source = need_string(root, "source", "source");
  st.recipe = read_recipe(root);
  const int C = channel_count(st.recipe.channels);
  st.ddof = static_cast<int>(need_u64(root, "ddof", "ddof", 1));

  const ojson& classes = need_array(root, "classes", "classes");
  std::unordered_set<std::string_view> class_names;
  st.classes.reserve(classes.size());
  for (const ojson& c : classes) {
    if (!c.is_string()) bad("field 'classes' must be a list of strings");
    const std::string& name = c.get_ref<const std::string&>();
    if (!class_names.insert(name).second) {
      std::string what = "field 'classes' lists the class ";
      detail::append_json_string(what, name);
      bad(what + " twice");
    }
    st.classes.push_back(name);
  }

  // Exact sums first: everything derived is checked against them.
  const ojson& sums = need_object(root, "sums", "sums");
  const std::uint64_t images = need_u64(sums, "images", "sums.images");
  const std::uint64_t pixels =
      need_u64(sums, "pixels", "sums.pixels", detail::kMaxAccumulatedPixels);
  const u128 pixels_squared =
      as_u128(need(sums, "pixels_squared", "sums.pixels_squared"), "sums.pixels_squared");
  if ((images == 0) != (pixels == 0) || images > pixels)
    bad("fields 'sums.images' and 'sums.pixels' are inconsistent");
  // Each image has n_i >= 1 pixels: Σn_i <= Σn_i² <= (Σn_i)².
  if (pixels_squared < pixels || pixels_squared > static_cast<u128>(pixels) * pixels)
    bad("field 'sums.pixels_squared' is inconsistent with 'sums.pixels'");

  const ojson& hj = need_array(root, "histograms", "histograms", static_cast<std::size_t>(C));
  std::vector<std::array<std::uint64_t, 256>> hists(C);
  for (int c = 0; c < C; ++c) {
    const std::string name = "histograms[" + std::to_string(c) + "]";
    if (!hj[c].is_array() || hj[c].size() != 256)
      bad("field " + quoted(name) + " must be a list of 256 counts");
    std::uint64_t total = 0;
    for (int v = 0; v < 256; ++v) {
      hists[c][v] = as_u64(hj[c][v], name);
      if (hists[c][v] > pixels - total)
        bad("field " + quoted(name) + " counts more than 'sums.pixels'");
      total += hists[c][v];
    }
    if (total != pixels)
      bad("field " + quoted(name) + " counts " + std::to_string(total) +
          " values, 'sums.pixels' is " + std::to_string(pixels));
  }

  const ojson& sum = need_array(sums, "sum", "sums.sum", static_cast<std::size_t>(C));
  const ojson& sum_sq =
      need_array(sums, "sum_squares", "sums.sum_squares", static_cast<std::size_t>(C));
  const ojson& cross_j = need_array(sums, "cross", "sums.cross", static_cast<std::size_t>(C));
  const ojson& cluster_j = need_array(sums, "cluster", "sums.cluster", static_cast<std::size_t>(C));
  std::vector<std::vector<std::uint64_t>> cross(C, std::vector<std::uint64_t>(C));
  std::vector<ClusterSums> clusters(C);
  for (int c = 0; c < C; ++c) {
    std::uint64_t s = 0;
    u128 q = 0;
    for (std::uint64_t v = 0; v < 256; ++v) {
      s += v * hists[c][v];
      q += static_cast<u128>(v * v) * hists[c][v];
    }
    const std::string idx = "[" + std::to_string(c) + "]";
    if (as_u64(sum[c], "sums.sum") != s)
      bad("field 'sums.sum" + idx + "' does not match the histogram");
    if (as_u128(sum_sq[c], "sums.sum_squares") != q)
      bad("field 'sums.sum_squares" + idx + "' does not match the histogram");
    if (!cross_j[c].is_array() || cross_j[c].size() != static_cast<std::size_t>(C))
      bad("field 'sums.cross' must be a " + std::to_string(C) + "x" + std::to_string(C) +
          " matrix");
    for (int d = 0; d < C; ++d) cross[c][d] = as_u64(cross_j[c][d], "sums.cross");
    if (cross[c][c] != q) bad("field 'sums.cross" + idx + idx + "' does not match the histogram");
    const ojson& k = cluster_j[c];
    const std::string name = "sums.cluster" + idx;
    if (!k.is_object()) bad("field " + quoted(name) + " must be an object");
    clusters[c].s_s = as_u128(need(k, "s_s", name + ".s_s"), name + ".s_s");
    clusters[c].s_n = as_u128(need(k, "s_n", name + ".s_n"), name + ".s_n");
    clusters[c].q_q = as_u128(need(k, "q_q", name + ".q_q"), name + ".q_q");
    clusters[c].q_s = as_u128(need(k, "q_s", name + ".q_s"), name + ".q_s");
    clusters[c].q_n = as_u128(need(k, "q_n", name + ".q_n"), name + ".q_n");
    clusters[c].image_std_fixed =
        as_u128(need(k, "image_std_fixed", name + ".image_std_fixed"), name + ".image_std_fixed");
  }
  for (int c = 0; c < C; ++c)
    for (int d = 0; d < c; ++d)
      if (cross[c][d] != cross[d][c]) bad("field 'sums.cross' must be symmetric");
  st.acc = Accumulator(C);
  detail::AccumulatorAccess::set_raw(st.acc, images, pixels, pixels_squared, hists, cross,
                                     clusters);
  if (auto it = sums.find("patch"); it != sums.end()) {
    if (!it->is_object()) bad("field 'sums.patch' must be an object");
    const std::uint64_t k = need_u64(*it, "size", "sums.patch.size",
                                     static_cast<std::uint64_t>(Accumulator::kMaxPatch));
    if (k % 2 == 0) bad("field 'sums.patch.size' must be odd");
    const std::uint64_t count = need_u64(*it, "count", "sums.patch.count", pixels);
    const std::size_t dims = static_cast<std::size_t>(k * k) * static_cast<std::size_t>(C);
    const ojson& sum_j = need_array(*it, "sum", "sums.patch.sum", dims);
    const ojson& cross_p = need_array(*it, "cross", "sums.patch.cross", dims);
    std::vector<std::uint64_t> psum(dims), pcross(dims * dims);
    for (std::size_t i = 0; i < dims; ++i) {
      psum[i] = as_u64(sum_j[i], "sums.patch.sum", count * 255);
      if (!cross_p[i].is_array() || cross_p[i].size() != dims)
        bad("field 'sums.patch.cross' must be a " + std::to_string(dims) + "x" +
            std::to_string(dims) + " matrix");
      for (std::size_t d = 0; d < dims; ++d)
        pcross[i * dims + d] = as_u64(cross_p[i][d], "sums.patch.cross");
    }
    for (std::size_t i = 0; i < dims; ++i)
      for (std::size_t d = 0; d < i; ++d)
        if (pcross[i * dims + d] != pcross[d * dims + i])
          bad("field 'sums.patch.cross' must be symmetric");
    detail::AccumulatorAccess::set_patch(st.acc, static_cast<int>(k), count, std::move(psum),
                                         std::move(pcross));
  }

  const ojson& counts = need_object(root, "counts", "counts");
  st.files_found = need_u64(counts, "files_found", "counts.files_found");
  if (need_u64(counts, "images", "counts.images") != images)
    bad("field 'counts.images' does not match 'sums.images'");
  if (need_u64(counts, "pixels_per_channel", "counts.pixels_per_channel") != pixels)
    bad("field 'counts.pixels_per_channel' does not match 'sums.pixels'");
  const ojson& per_class = need_object(counts, "per_class", "counts.per_class");
  if (per_class.size() != st.classes.size())
    bad("field 'counts.per_class' must have one entry per class");
  std::uint64_t class_total = 0;
  std::size_t i = 0;
  for (auto it = per_class.begin(); it != per_class.end(); ++it, ++i) {
    if (it.key() != st.classes[i])
      bad("field 'counts.per_class' must list the classes in the order of 'classes'");
    const std::uint64_t n = as_u64(it.value(), "counts.per_class." + it.key());
    if (n > images - class_total) bad("field 'counts.per_class' adds up to more than the images");
    class_total += n;
    st.class_images.push_back(n);
  }
  if (!st.classes.empty() && class_total != images)
    bad("field 'counts.per_class' does not add up to 'counts.images'");

  for (const ojson& k : need_array(root, "skipped", "skipped")) {
    if (!k.is_object()) bad("field 'skipped' must be a list of objects");
    Skipped s;
    s.path = need_string(k, "path", "skipped.path");
    s.code = parse_error_code(need_string(k, "code", "skipped.code"), "skipped.code");
    s.reason = need_string(k, "reason", "skipped.reason");
    st.skipped.push_back(std::move(s));
  }
  for (const ojson& k : need_array(root, "ignored", "ignored")) {
    if (!k.is_object()) bad("field 'ignored' must be a list of objects");
    st.ignored.push_back(
        {need_string(k, "path", "ignored.path"), need_string(k, "reason", "ignored.reason")});
  }
  if (need_u64(counts, "skipped", "counts.skipped") != st.skipped.size())
    bad("field 'counts.skipped' does not match the length of 'skipped'");
  if (need_u64(counts, "ignored", "counts.ignored") != st.ignored.size())
    bad("field 'counts.ignored' does not match the length of 'ignored'");

  if (auto it = root.find("sample"); it != root.end()) {
    if (!it->is_object()) bad("field 'sample' must be an object");
    SampleInfo si;
    si.population = need_u64(*it, "population", "sample.population");
    si.sampled = need_u64(*it, "sampled", "sample.sampled");
    si.seed = need_u64(*it, "seed", "sample.seed");
    si.spec = need_string(*it, "spec", "sample.spec");
    if (si.sampled > si.population)
      bad("field 'sample.sampled' is larger than 'sample.population'");
    st.sample = si;
  }
  if (auto it = root.find("shard"); it != root.end()) {
    if (!it->is_object()) bad("field 'shard' must be an object");
    const std::uint64_t count = need_u64(*it, "count", "shard.count", 1u << 20);
    const std::uint64_t index = need_u64(*it, "index", "shard.index", 1u << 20);
    if (count < 1 || index >= count) bad("field 'shard' must have 0 <= index < count");
    st.shard_index = static_cast<int>(index);
    st.shard_count = static_cast<int>(count);
  }
  if (auto it = root.find("covers"); it != root.end()) {
    st.covers = read_covers(*it);
    std::uint64_t covered = 0;
    for (const Coverage& c : st.covers) covered += detail::covered_files(c);
    if (covered != st.files_found)
      bad("field 'covers' accounts for " + std::to_string(covered) +
          " files, 'counts.files_found' is " + std::to_string(st.files_found));
    if (!(detail::single_shard(st.covers) == Shard{st.shard_index, st.shard_count}))
      bad("field 'shard' does not match 'covers'");
  }

  if (auto it = root.find("pixel_covariance"); it != root.end()) {
    if (!it->is_object()) bad("field 'pixel_covariance' must be an object");
    PixelCovarianceFile f;
    f.file = need_string(*it, "file", "pixel_covariance.file");
    f.sha256 = need_string(*it, "sha256", "pixel_covariance.sha256");
    f.dimension = need_u64(*it, "dimension", "pixel_covariance.dimension");
    if (f.file.empty() || f.file.find('/') != std::string::npos || f.file == "." || f.file == "..")
      bad("field 'pixel_covariance.file' must be a file name in the folder of stats.json");
    if (f.sha256.size() != 64 ||
        f.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
      bad("field 'pixel_covariance.sha256' must be 64 lower-case hex digits");
    const std::uint64_t d = static_cast<std::uint64_t>(st.recipe.size.width) *
                            static_cast<std::uint64_t>(st.recipe.size.height) *
                            static_cast<std::uint64_t>(C);
    if (f.dimension != d)
      bad("field 'pixel_covariance.dimension' is " + std::to_string(f.dimension) +
          ", the recipe's images have " + std::to_string(d) + " values");
    st.pixel_covariance = std::move(f);
  }

  // The derived numbers are recomputed from the sums; the per-channel ones written (mean, std, in
  // both units, min, max, median) must agree, so an edited file is refused rather than silently
  // overridden. Percentiles, covariance and intervals are recomputed and not compared.
  std::vector<double> mean, stddev, mean_unit, std_unit, lo, hi, median;
  if (pixels > 0) {
    if (st.ddof == 1 && pixels < 2) bad("field 'ddof' is 1 but there is only one pixel");
    const Summary s = summarize(st.acc, st.ddof);
    for (const ChannelSummary& c : s.channel) {
      mean.push_back(c.mean);
      stddev.push_back(c.std);
      mean_unit.push_back(c.mean_unit);
      std_unit.push_back(c.std_unit);
      lo.push_back(c.min);
      hi.push_back(c.max);
      median.push_back(c.median);
    }
  }
  if (st.sample && st.acc.images() > st.sample->sampled)
    bad("field 'sums.images' is larger than 'sample.sampled'");
  check_derived(root, "std", stddev);
  check_derived(root, "mean", mean);
  check_derived(root, "std_unit", std_unit);
  check_derived(root, "mean_unit", mean_unit);
  check_derived(root, "min", lo);
  check_derived(root, "max", hi);
  check_derived(root, "median", median);
  return st;
}

namespace {

// Loads and checks the sidecar stats.json at `path` names; errors name the sidecar.
void load_pixel_covariance(StatsFile& st, const std::string& path) {
  const PixelCovarianceFile& f = *st.pixel_covariance;
  const std::string side = (std::filesystem::path(path).parent_path() / f.file).string();
  auto bad_side = [&](const std::string& what) {
    throw Error(ErrorCode::format, side + ": " + what + " (the pixel covariance " + path +
                                       " records; rerun imgnorm stats --pixel-covariance)");
  };
  std::string bytes;
  {
    std::ifstream in(side, std::ios::binary | std::ios::ate);
    if (!in) bad_side("missing or unreadable");
    const std::streamoff size = in.tellg();
    if (size < 0) bad_side("unreadable");
    bytes.resize(
        static_cast<std::size_t>(size));  // one buffer of the file's size, not a growing one
    in.seekg(0);
    if (!in.read(bytes.data(), size)) bad_side("unreadable");
  }
  detail::Sha256 h;
  h.update(bytes);
  if (h.hex_digest() != f.sha256)
    bad_side("its SHA-256 differs from the one recorded: altered, or from another run");
  // The moments are parsed from the bytes just hashed: one copy of the (D+1)² matrix besides the
  // loaded one (the fit's memory check counts on it, full_fit_bytes).
  const std::uint64_t n = f.dimension + 1;
  NpyHeader header;
  try {
    header = parse_npy_header(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  } catch (const Error& e) {
    bad_side(e.what());
  }
  if (header.dtype != DType::float64 || header.shape != std::vector<std::uint64_t>{n, n})
    bad_side("not a float64 (D+1)x(D+1) moment matrix with D = " + std::to_string(f.dimension));
  if (bytes.size() != header.data_offset + header.data_bytes)
    bad_side("truncated, or followed by other bytes");
  // Moved to the (aligned) start of the buffer, in native byte order.
  std::memmove(bytes.data(), bytes.data() + header.data_offset, header.data_bytes);
  if (header.big_endian)
    for (std::size_t i = 0; i < header.data_bytes; i += 8) std::reverse(&bytes[i], &bytes[i] + 8);
  const auto* d = reinterpret_cast<const double*>(bytes.data());
  PixelCovariance pc;
  try {
    pc = PixelCovariance::from_moments(static_cast<std::size_t>(f.dimension), d);
  } catch (const Error& e) {
    bad_side(e.what());
  }
  std::string().swap(bytes);
  if (pc.images() != st.acc.images())
    bad_side("it counts " + std::to_string(pc.images()) + " images, the statistics " +
             std::to_string(st.acc.images()));
  detail::AccumulatorAccess::set_pixel_covariance(st.acc, std::move(pc));
}

}  // namespace

namespace detail {

StatsFile read_stats_json(const std::string& path) {
  try {
    return stats_from_json(read_text_file(path, kMaxTextFileBytes, "stats file"));
  } catch (const Error& e) {
    throw with_path(e, path);
  }
}

void load_pixel_covariance_sidecar(StatsFile& st, const std::string& path) {
  if (st.pixel_covariance && !st.acc.pixel_covariance().enabled()) load_pixel_covariance(st, path);
}

}  // namespace detail

StatsFile read_stats_file(const std::string& path) {
  StatsFile st = detail::read_stats_json(path);
  detail::load_pixel_covariance_sidecar(st, path);
  return st;
}

void merge_into(StatsFile& a, const StatsFile& b) {
  auto differ = [](const std::string& what) {
    throw Error(ErrorCode::invalid_argument, "cannot merge statistics: " + what + " differ");
  };
  if (!(a.recipe == b.recipe)) {
    // Named as normalize names them (recipe_differences, which leaves out the channel order), the
    // statistics merged so far first.
    std::string d = recipe_differences(b.recipe, a.recipe);
    if (a.recipe.channels != b.recipe.channels)
      d = std::string("channels ") + to_string(a.recipe.channels) + " vs " +
          to_string(b.recipe.channels) + (d.empty() ? "" : ", " + d);
    throw Error(ErrorCode::invalid_argument, "cannot merge statistics: recipes differ (" + d + ")");
  }
  if (a.ddof != b.ddof) differ("ddof values");
  if (a.classes != b.classes) differ("classes");
  if (a.class_images.size() != a.classes.size() || b.class_images.size() != b.classes.size())
    throw Error(ErrorCode::invalid_argument, "cannot merge statistics: per-class counts missing");
  if (a.sample.has_value() != b.sample.has_value() || (a.sample && !(*a.sample == *b.sample)))
    differ("samples");
  // What is covered: unknown when either side does not say; throws on an overlap.
  std::vector<Coverage> covers;
  if (!a.covers.empty() && !b.covers.empty()) {
    covers = a.covers;
    detail::unite(covers, b.covers);
  }
  a.acc.merge(b.acc);  // throws before anything in `a` changed when channels or mean image differ
  a.pixel_covariance.reset();  // the merged moments get a sidecar of their own when written
  a.files_found += b.files_found;
  for (std::size_t i = 0; i < a.class_images.size(); ++i) a.class_images[i] += b.class_images[i];
  a.skipped.insert(a.skipped.end(), b.skipped.begin(), b.skipped.end());
  std::stable_sort(a.skipped.begin(), a.skipped.end(),
                   [](const Skipped& x, const Skipped& y) { return x.path < y.path; });
  std::vector<Ignored> ignored = a.ignored;
  ignored.insert(ignored.end(), b.ignored.begin(), b.ignored.end());
  std::stable_sort(ignored.begin(), ignored.end(),
                   [](const Ignored& x, const Ignored& y) { return x.path < y.path; });
  ignored.erase(std::unique(ignored.begin(), ignored.end(),
                            [](const Ignored& x, const Ignored& y) { return x.path == y.path; }),
                ignored.end());
  a.ignored = std::move(ignored);
  a.covers = std::move(covers);
  // One shard of one selection stays that shard; anything else is written as "covers" alone.
  const Shard one = detail::single_shard(a.covers);
  a.shard_index = one.index;
  a.shard_count = one.count;
}

}  // namespace imgnorm
