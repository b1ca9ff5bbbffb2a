// manifest.json: writing and validating reading. Schema: docs/normalize.md.

#include "imgnorm/manifest.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "imgnorm/error.hpp"
#include "imgnorm/output.hpp"
#include "json_internal.hpp"

namespace imgnorm {

namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* kFormatName = "imgnorm-manifest";
constexpr int kFormatVersion = 1;

[[noreturn]] void bad(const std::string& message) { throw Error(ErrorCode::format, message); }

// One key per line; arrays of objects or arrays (files, skipped, per-image maps) one element per
// line; everything else compact. Readable, and grep-able line by line. Strings through
// append_json_string: names that are not UTF-8 are written losslessly.
std::string manifest_text(const ojson& m) {
  std::string s = "{";
  bool first = true;
  for (const auto& [key, v] : m.items()) {
    s += first ? "\n  " : ",\n  ";
    first = false;
    detail::append_json_string(s, key);
    s += ": ";
    if (v.is_array() && !v.empty() && v[0].is_structured()) {
      s += "[";
      for (std::size_t i = 0; i < v.size(); ++i) {
        s += i ? ",\n    " : "\n    ";
        detail::append_json(s, v[i]);
      }
      s += "\n  ]";
    } else {
      detail::append_json(s, v);
    }
  }
  return s + "\n}\n";
}

ojson affine_json(const Affine& a) {
  ojson j = ojson::array();
  for (int c = 0; c < a.channels; ++c) {
    const ChannelMap& f = a.ch[c];
    j.push_back(ojson::array({f.d, f.m, f.s, f.g, f.t}));
  }
  return j;
}

ojson matrix_json(const std::vector<double>& m, int channels) {
  ojson j = ojson::array();
  for (int k = 0; k < channels; ++k) {
    ojson row = ojson::array();
    for (int c = 0; c < channels; ++c) row.push_back(m[k * channels + c]);
    j.push_back(std::move(row));
  }
  return j;
}

// Slope and intercept per *output* channel (the order of the tensor).
ojson slopes_json(const Affine& a, bool swap_rb) {
  ojson as = ojson::array(), bs = ojson::array();
  for (int k = 0; k < a.channels; ++k) {
    int c = (a.channels == 3 && swap_rb) ? 2 - k : k;
    as.push_back(a.ch[c].a());
    bs.push_back(a.ch[c].b());
  }
  return ojson{{"a", as}, {"b", bs}};
}

double finite_number(const ojson& j, const std::string& where) {
  if (!j.is_number()) bad(where + ": a value is not a number");
  double v = j.get<double>();
  if (!std::isfinite(v)) bad(where + ": a value is not finite");
  return v;
}

Affine affine_from_json(const ojson& j, int channels, const std::string& where) {
  Affine a;
  a.channels = channels;
  if (!j.is_array() || static_cast<int>(j.size()) != channels)
    bad(where + ": expected " + std::to_string(channels) + " maps");
  for (int c = 0; c < channels; ++c) {
    const ojson& m = j[c];
    if (!m.is_array() || m.size() != 5) bad(where + ": a map is [d, m, s, g, t]");
    double v[5];
    for (int k = 0; k < 5; ++k) v[k] = finite_number(m[k], where);
    if (v[0] == 0 || v[2] == 0) bad(where + ": d and s may not be 0");
    a.ch[c] = {v[0], v[1], v[2], v[3], v[4]};
  }
  return a;
}

std::vector<double> matrix_from_json(const ojson& j, int channels, const std::string& where) {
  std::vector<double> m;
  if (!j.is_array() || static_cast<int>(j.size()) != channels)
    bad(where + ": expected a " + std::to_string(channels) + "x" + std::to_string(channels) +
        " matrix");
  for (const ojson& row : j) {
    if (!row.is_array() || static_cast<int>(row.size()) != channels)
      bad(where + ": expected a " + std::to_string(channels) + "x" + std::to_string(channels) +
          " matrix");
    for (const ojson& v : row) m.push_back(finite_number(v, where));
  }
  return m;
}

const ojson& need(const ojson& m, const char* key) {
  auto it = m.find(key);
  if (it == m.end()) bad(std::string("missing field '") + key + "'");
  return *it;
}

std::string need_string(const ojson& m, const char* key) {
  const ojson& v = need(m, key);
  if (!v.is_string()) bad(std::string("missing field '") + key + "'");
  return v.get<std::string>();
}

std::uint64_t need_u64(const ojson& m, const char* key) {
  const ojson& v = need(m, key);
  if (!v.is_number_unsigned()) bad(std::string("field '") + key + "' must be an unsigned integer");
  return v.get<std::uint64_t>();
}

template <typename F>
auto field(const char* key, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    bad(std::string("field '") + key + "': " + e.what());
  }
}

std::vector<double> numbers(const ojson& j, const char* key) {
  if (!j.is_array()) bad(std::string("field '") + key + "' must be a list");
  std::vector<double> v;
  for (const ojson& x : j) v.push_back(finite_number(x, std::string("field '") + key + "'"));
  return v;
}

}  // namespace

std::string to_json(const Manifest& mf) {
  const int nc = channel_count(mf.input_channels);
  ojson m;
  m["format"] = kFormatName;
  m["version"] = kFormatVersion;
  m["tool_version"] = mf.tool_version;
  m["source"] = mf.source;
  m["stats"] = mf.stats ? ojson(*mf.stats) : ojson(nullptr);
  m["fit"] = mf.fit;
  m["ddof"] = mf.ddof ? ojson(*mf.ddof) : ojson(nullptr);
  m["mode"] = to_string(mf.mode);
  m["formula"] = mf.formula;
  m["unit"] = mf.unit;
  if (mf.range) m["range"] = {mf.range->first, mf.range->second};
  if (mf.eps) m["eps"] = *mf.eps;
  if (mf.mode == Mode::mean_image) {
    m["mean_image"] = mf.mean_image ? ojson(*mf.mean_image) : ojson(nullptr);
    m["divide_std"] = mf.divide_std;
  }
  m["layout"] = to_string(mf.layout);
  m["dtype"] = to_string(mf.dtype);
  m["channels"] = to_string(mf.channels);
  m["shape"] = mf.shape;
  m["recipe"] = ojson::parse(to_json(mf.recipe));
  m["input_channels"] = to_string(mf.input_channels);
  if (!mf.dataset_mean.empty()) {
    m["dataset_mean"] = mf.dataset_mean;
    m["dataset_std"] = mf.dataset_std;
  }
  // Per input channel: y = t + g * ((x / d - m) / s) as [d, m, s, g, t]; and per output channel
  // the affine y = a*x + b.
  if (is_full_image(mf.mode)) {
    // D×D: too large for JSON; the matrix and the mean are in the whitening file.
    m["whitening"] = mf.whitening ? ojson(*mf.whitening) : ojson(nullptr);
    if (mf.mode == Mode::pca) {
      m["components"] = mf.components;
      m["whiten"] = mf.whiten;
    }
  } else if (mf.mode == Mode::zca_patch) {
    // A convolution: the K×K×C → C filter of the centre rows of W_patch, one output channel (in
    // input channel order) per line, and the patch mean it centres with.
    m["patch"] = mf.patch;
    m["patch_mean"] = mf.patch_mean;
    ojson rows = ojson::array();
    const std::size_t dims = mf.patch_mean.size();
    for (int c = 0; c < nc && dims > 0; ++c)
      rows.push_back(std::vector<double>(mf.patch_filter.begin() + c * dims,
                                         mf.patch_filter.begin() + (c + 1) * dims));
    m["patch_filter"] = std::move(rows);
  } else if (mf.maps) {
    m["maps"] = affine_json(mf.maps->affine);
    if (mf.maps->is_linear()) {
      m["matrix"] = matrix_json(mf.maps->matrix, nc);
    } else {
      if (mf.mode == Mode::mean_image)
        m["affine_note"] = "m is 0 here: the mean image M[h,w,c] is subtracted per pixel";
      m["affine"] = slopes_json(mf.maps->affine, nc == 3 && mf.channels != mf.input_channels);
    }
  } else {
    ojson per = ojson::array();
    for (const PixelMap& p : mf.per_image_maps) per.push_back(affine_json(p.affine));
    m["per_image_maps"] = std::move(per);
  }
  m["constant_channels"] = mf.constant_channels;
  m["classes"] = mf.classes;
  m["labels"] =
      mf.labels ? ojson(mf.shards.empty() ? "labels.npy" : "labels-RRRRR.npy") : ojson(nullptr);
  m["rows"] = mf.rows;
  if (!mf.shards.empty()) {
    ojson shards = ojson::array();
    for (const ManifestShard& s : mf.shards) {
      ojson shard{{"images", s.images}};
      if (!s.labels.empty()) shard["labels"] = s.labels;
      shard["rows"] = s.rows;
      shards.push_back(std::move(shard));
    }
    m["shards"] = std::move(shards);
  }
  ojson files = ojson::array();
  for (const ManifestFile& f : mf.files) {
    ojson file{{"path", f.path}};
    if (f.label) file["label"] = *f.label;
    files.push_back(std::move(file));
  }
  m["files"] = std::move(files);
  ojson sk = ojson::array();
  for (const auto& s : mf.skipped)
    sk.push_back({{"path", s.path}, {"code", to_string(s.code)}, {"reason", s.reason}});
  m["skipped"] = std::move(sk);
  if (!mf.ignored.empty()) {
    ojson ig = ojson::array();
    for (const auto& i : mf.ignored) ig.push_back({{"path", i.path}, {"reason", i.reason}});
    m["ignored"] = std::move(ig);
  }
  return manifest_text(m);
}

Manifest manifest_from_json(const std::string& text) {
  const ojson m = [&] {
    try {
      return detail::parse_json(text);
    } catch (const Error&) {
      bad("not an imgnorm manifest.json");
    }
  }();
  if (!m.is_object() || !m.contains("format") || m["format"] != kFormatName)
    bad("not an imgnorm manifest.json");
  if (!m.contains("version") || !m["version"].is_number_unsigned() ||
      m["version"].get<std::uint64_t>() != kFormatVersion)
    bad("unsupported manifest version (this imgnorm reads version 1)");
  Manifest mf;
  if (m.contains("tool_version") && m["tool_version"].is_string())
    mf.tool_version = m["tool_version"].get<std::string>();
  if (m.contains("source") && m["source"].is_string()) mf.source = m["source"].get<std::string>();
  if (m.contains("stats") && m["stats"].is_string()) mf.stats = m["stats"].get<std::string>();
  if (m.contains("fit") && m["fit"].is_boolean()) mf.fit = m["fit"].get<bool>();
  if (m.contains("ddof") && !m["ddof"].is_null()) {
    const std::uint64_t ddof = need_u64(m, "ddof");
    if (ddof > 1) bad("field 'ddof' must be 0 or 1");
    mf.ddof = static_cast<int>(ddof);
  }
  mf.mode = field("mode", [&] { return parse_mode(need_string(m, "mode")); });
  if (m.contains("formula") && m["formula"].is_string())
    mf.formula = m["formula"].get<std::string>();
  if (m.contains("unit")) {
    mf.unit = static_cast<int>(need_u64(m, "unit"));
    if (mf.unit != 1 && mf.unit != 255) bad("field 'unit' must be 1 or 255");
  }
  if (m.contains("range")) {
    auto r = numbers(m["range"], "range");
    if (r.size() != 2) bad("field 'range' must have 2 entries");
    mf.range = std::make_pair(r[0], r[1]);
  }
  if (m.contains("eps")) mf.eps = finite_number(m["eps"], "field 'eps'");
  if (m.contains("mean_image") && m["mean_image"].is_string())
    mf.mean_image = m["mean_image"].get<std::string>();
  if (m.contains("divide_std") && m["divide_std"].is_boolean())
    mf.divide_std = m["divide_std"].get<bool>();
  mf.layout = field("layout", [&] { return parse_layout(need_string(m, "layout")); });
  mf.dtype = field("dtype", [&] { return parse_dtype(need_string(m, "dtype")); });
  if (mf.dtype != DType::float32 && mf.dtype != DType::float16)
    bad("field 'dtype' must be float32 or float16");
  mf.channels = field("channels", [&] { return parse_channel_order(need_string(m, "channels")); });
  mf.input_channels = field("input_channels",
                            [&] { return parse_channel_order(need_string(m, "input_channels")); });
  const int nc = channel_count(mf.input_channels);
  if (m.contains("shape")) {
    const ojson& sh = m["shape"];
    if (!sh.is_array()) bad("field 'shape' must be a list");
    for (const ojson& d : sh) {
      if (!d.is_number_unsigned()) bad("field 'shape' must hold unsigned integers");
      mf.shape.push_back(d.get<std::uint64_t>());
    }
  }
  if (m.contains("recipe")) mf.recipe = detail::read_recipe_field(m);
  if (m.contains("dataset_mean")) mf.dataset_mean = numbers(m["dataset_mean"], "dataset_mean");
  if (m.contains("dataset_std")) mf.dataset_std = numbers(m["dataset_std"], "dataset_std");
  if (is_full_image(mf.mode)) {
    if (mf.mode == Mode::pca) {
      const std::uint64_t k = need_u64(m, "components");
      if (k < 1 || k > (std::uint64_t{1} << 30)) bad("field 'components' must be at least 1");
      mf.components = static_cast<int>(k);
      const ojson& wh = need(m, "whiten");
      if (!wh.is_boolean()) bad("field 'whiten' must be true or false");
      mf.whiten = wh.get<bool>();
    }
    const ojson& w = need(m, "whitening");
    if (!w.is_string() || w.get<std::string>().empty() ||
        w.get<std::string>().find('/') != std::string::npos)
      bad("field 'whitening' must name a file in the manifest's folder");
    mf.whitening = w.get<std::string>();
  } else if (mf.mode == Mode::zca_patch) {
    const std::uint64_t k = need_u64(m, "patch");
    if (k < 1 || k > static_cast<std::uint64_t>(Accumulator::kMaxPatch) || k % 2 == 0)
      bad("field 'patch' must be odd, 1 to " + std::to_string(Accumulator::kMaxPatch));
    mf.patch = static_cast<int>(k);
    const std::size_t dims = static_cast<std::size_t>(k * k) * static_cast<std::size_t>(nc);
    mf.patch_mean = numbers(need(m, "patch_mean"), "patch_mean");
    const ojson& rows = need(m, "patch_filter");
    if (mf.patch_mean.size() != dims || !rows.is_array() ||
        rows.size() != static_cast<std::size_t>(nc))
      bad("fields 'patch_mean' and 'patch_filter' do not match 'patch'");
    for (const ojson& row : rows) {
      const std::vector<double> v = numbers(row, "patch_filter");
      if (v.size() != dims) bad("fields 'patch_mean' and 'patch_filter' do not match 'patch'");
      mf.patch_filter.insert(mf.patch_filter.end(), v.begin(), v.end());
    }
  } else if (m.contains("maps")) {
    PixelMap p;
    p.affine = affine_from_json(m["maps"], nc, "maps");
    if (m.contains("matrix")) p.matrix = matrix_from_json(m["matrix"], nc, "matrix");
    mf.maps = std::move(p);
  } else if (m.contains("per_image_maps") && m["per_image_maps"].is_array()) {
    const ojson& per = m["per_image_maps"];
    for (std::size_t r = 0; r < per.size(); ++r)
      mf.per_image_maps.push_back(
          {affine_from_json(per[r], nc, "per_image_maps row " + std::to_string(r)), {}});
  } else {
    bad("no maps");
  }
  if (m.contains("constant_channels")) mf.constant_channels = need_u64(m, "constant_channels");
  if (m.contains("classes") && m["classes"].is_array())
    for (const ojson& c : m["classes"])
      if (c.is_string()) mf.classes.push_back(c.get<std::string>());
  mf.labels = m.contains("labels") && m["labels"].is_string();
  if (m.contains("rows")) mf.rows = need_u64(m, "rows");
  if (m.contains("shards")) {
    const ojson& sh = m["shards"];
    if (!sh.is_array() || sh.empty()) bad("field 'shards' must be a non-empty list");
    std::uint64_t total = 0;
    // A shard names a file beside manifest.json: a plain .npy name, nothing that leaves the folder.
    auto plain = [](const ojson& v) {
      if (!v.is_string()) return false;
      const std::string s = v.get<std::string>();
      return s.size() > 4 && s.find('/') == std::string::npos && s[0] != '.' &&
             s.compare(s.size() - 4, 4, ".npy") == 0;
    };
    for (const ojson& e : sh) {
      if (!e.is_object() || !e.contains("images") || !plain(e["images"]))
        bad("field 'shards': an entry has no plain .npy file name 'images'");
      ManifestShard s;
      s.images = e["images"].get<std::string>();
      if (e.contains("labels")) {
        if (!plain(e["labels"])) bad("field 'shards': 'labels' is not a plain .npy file name");
        s.labels = e["labels"].get<std::string>();
      }
      s.rows = field("shards", [&] { return need_u64(e, "rows"); });
      if (s.labels.empty() == mf.labels) bad("field 'shards': 'labels' does not match 'labels'");
      total += s.rows;
      mf.shards.push_back(std::move(s));
    }
    if (total != mf.rows)
      bad("field 'shards': the shards hold " + std::to_string(total) + " rows, 'rows' says " +
          std::to_string(mf.rows));
  }
  if (m.contains("files") && m["files"].is_array())
    for (const ojson& f : m["files"]) {
      if (!f.is_object() || !f.contains("path") || !f["path"].is_string())
        bad("field 'files': an entry has no path");
      ManifestFile file{f["path"].get<std::string>(), std::nullopt};
      if (f.contains("label") && f["label"].is_number_integer())
        file.label = f["label"].get<std::int64_t>();
      mf.files.push_back(std::move(file));
    }
  auto read_pairs = [&](const char* key, auto add) {
    if (!m.contains(key) || !m[key].is_array()) return;
    for (const ojson& e : m[key])
      if (e.is_object() && e.contains("path") && e["path"].is_string() && e.contains("reason") &&
          e["reason"].is_string())
        add(e);
  };
  read_pairs("skipped", [&](const ojson& e) {
    Skipped s{e["path"].get<std::string>(), ErrorCode::corrupt, e["reason"].get<std::string>()};
    if (e.contains("code") && e["code"].is_string())
      for (ErrorCode c :
           {ErrorCode::invalid_argument, ErrorCode::io, ErrorCode::unsupported, ErrorCode::corrupt,
            ErrorCode::too_large, ErrorCode::format, ErrorCode::empty, ErrorCode::interrupted})
        if (e["code"] == to_string(c)) s.code = c;
    mf.skipped.push_back(std::move(s));
  });
  read_pairs("ignored", [&](const ojson& e) {
    mf.ignored.push_back({e["path"].get<std::string>(), e["reason"].get<std::string>()});
  });
  return mf;
}

Manifest read_manifest(const std::string& path) {
  const std::string text = read_text_file(path, kMaxTextFileBytes, "manifest");
  try {
    return manifest_from_json(text);
  } catch (const Error& e) {
    throw with_path(e, path);
  }
}

}  // namespace imgnorm
