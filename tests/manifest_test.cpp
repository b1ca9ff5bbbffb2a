// manifest.json (write, read, validate), inspect_npy and the atomic outputs.

#include "imgnorm/manifest.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "imgnorm/error.hpp"
#include "imgnorm/inspect.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/output.hpp"

using namespace imgnorm;
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/imgnorm-manifest-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str(const std::string& name) const { return (path / name).string(); }
};

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> e;
  for (const auto& d : fs::directory_iterator(dir)) e.push_back(d.path().filename().string());
  std::sort(e.begin(), e.end());
  return e;
}

Affine affine3(double base) {
  Affine a;
  a.channels = 3;
  for (int c = 0; c < 3; ++c)
    a.ch[c] = {1.0, base + c / 3.0, 58.123456789 + c * 0.1, 1.0 + c * 0.25, -0.5 * c};
  return a;
}

Manifest common() {
  Manifest m;
  m.tool_version = "0.1.0";
  m.source = "data/test";
  m.stats = "train/stats.json";
  m.formula = "y = (x - mean_c) / std_c";
  m.layout = Layout::nchw;
  m.dtype = DType::float16;
  m.channels = ChannelOrder::bgr;
  m.input_channels = ChannelOrder::rgb;
  m.shape = {3, 3, 10, 12};
  m.recipe.size = {12, 10};
  m.recipe.resize = ResizeMode::crop;
  m.recipe.interp = Interp::area;
  m.recipe.exact_decode = true;
  m.classes = {"apple", "banana", "cherry"};
  m.labels = true;
  m.rows = 3;
  m.files = {{"data/test/apple/a.jpg", 0},
             {"data/test/banana/b é.png", 1},
             {"data/test/cherry/c\"q.webp", 2}};
  m.skipped = {{"data/test/apple/x.jpg", ErrorCode::unsupported, "not an image (text)"},
               {"data/test/cherry/t.png", ErrorCode::corrupt, "truncated"}};
  m.ignored = {{"data/test/apple/notes.txt", "not an image extension"}};
  return m;
}

Manifest dataset_manifest() {
  Manifest m = common();
  m.mode = Mode::standardize;
  m.eps = 1e-6;
  m.dataset_mean = {124.25, 116.875, 104.0625};
  m.dataset_std = {58.395, 57.12, 57.375};
  m.maps = PixelMap{affine3(124.25), {}};
  return m;
}

Manifest per_image_manifest() {
  Manifest m = common();
  m.mode = Mode::minmax;
  m.stats.reset();
  m.range = std::make_pair(-1.0, 1.0);
  m.labels = false;
  for (auto& f : m.files) f.label.reset();
  for (int r = 0; r < 3; ++r) m.per_image_maps.push_back({affine3(10.0 * r), {}});
  m.per_image_maps[1].affine.ch[2] = {1.0, 77.0, 1.0, 0.0, -1.0};  // a constant channel
  m.constant_channels = 1;
  return m;
}

Manifest mean_image_manifest() {
  Manifest m = common();
  m.mode = Mode::mean_image;
  m.unit = 1;
  m.mean_image = "/abs/train/mean.npy";
  m.divide_std = true;
  m.fit = false;
  Affine a = affine3(0);
  for (int c = 0; c < 3; ++c) a.ch[c].m = 0;
  m.maps = PixelMap{a, {}};
  m.dataset_mean = {124.25, 116.875, 104.0625};
  m.dataset_std = {58.395, 57.12, 57.375};
  return m;
}

Manifest matrix_manifest() {
  Manifest m = common();
  m.mode = Mode::custom;
  m.stats.reset();
  m.fit = true;
  m.maps = PixelMap{affine3(100), {0.9, 0.05, 0.02, -0.1, 1.1, 0.03, 0.04, -0.2, 0.95}};
  return m;
}

Manifest gray_manifest() {
  Manifest m = common();
  m.mode = Mode::scale;
  m.channels = ChannelOrder::gray;
  m.input_channels = ChannelOrder::gray;
  m.recipe.channels = ChannelOrder::gray;
  m.shape = {3, 10, 12, 1};
  m.layout = Layout::nhwc;
  m.dtype = DType::float32;
  Affine a;
  a.channels = 1;
  a.ch[0] = {255.0, 0.0, 1.0, 2.0, -1.0};
  m.maps = PixelMap{a, {}};
  return m;
}

void expect_format_error(const std::string& text, const std::string& needle) {
  try {
    manifest_from_json(text);
    ADD_FAILURE() << "expected Error(format) mentioning '" << needle << "' for:\n" << text;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::format) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' does not mention '" << needle << "'";
  }
}

std::string edited(const Manifest& m, const std::function<void(ojson&)>& edit) {
  ojson j = ojson::parse(to_json(m));
  edit(j);
  return j.dump(2);
}

}  // namespace

// --- manifest.json -------------------------------------------------------------------------------

TEST(manifest, to_json_from_json_round_trip_is_byte_identical) {
  const std::vector<std::pair<std::string, Manifest>> cases = {
      {"dataset", dataset_manifest()},
      {"per-image", per_image_manifest()},
      {"mean-image", mean_image_manifest()},
      {"matrix", matrix_manifest()},
      {"gray", gray_manifest()}};
  for (const auto& [name, m] : cases) {
    SCOPED_TRACE(name);
    const std::string text = to_json(m);
    Manifest back = manifest_from_json(text);
    EXPECT_EQ(to_json(back), text);
    // The fields themselves, not only their text.
    EXPECT_EQ(back.mode, m.mode);
    EXPECT_EQ(back.layout, m.layout);
    EXPECT_EQ(back.dtype, m.dtype);
    EXPECT_EQ(back.channels, m.channels);
    EXPECT_EQ(back.input_channels, m.input_channels);
    EXPECT_EQ(back.shape, m.shape);
    EXPECT_EQ(back.recipe, m.recipe);
    EXPECT_EQ(back.files, m.files);
    EXPECT_EQ(back.skipped, m.skipped);
    EXPECT_EQ(back.classes, m.classes);
    EXPECT_EQ(back.labels, m.labels);
    EXPECT_EQ(back.rows, m.rows);
    EXPECT_EQ(back.stats, m.stats);
    EXPECT_EQ(back.fit, m.fit);
    EXPECT_EQ(back.unit, m.unit);
    EXPECT_EQ(back.range, m.range);
    EXPECT_EQ(back.eps, m.eps);
    EXPECT_EQ(back.mean_image, m.mean_image);
    EXPECT_EQ(back.divide_std, m.divide_std);
    EXPECT_EQ(back.dataset_mean, m.dataset_mean);
    EXPECT_EQ(back.dataset_std, m.dataset_std);
    EXPECT_EQ(back.constant_channels, m.constant_channels);
    ASSERT_EQ(back.maps.has_value(), m.maps.has_value());
    auto same_affine = [](const Affine& a, const Affine& b) {
      ASSERT_EQ(a.channels, b.channels);
      for (int c = 0; c < a.channels; ++c) {
        EXPECT_EQ(a.ch[c].d, b.ch[c].d);
        EXPECT_EQ(a.ch[c].m, b.ch[c].m);
        EXPECT_EQ(a.ch[c].s, b.ch[c].s);
        EXPECT_EQ(a.ch[c].g, b.ch[c].g);
        EXPECT_EQ(a.ch[c].t, b.ch[c].t);
      }
    };
    if (m.maps) {
      same_affine(back.maps->affine, m.maps->affine);
      EXPECT_EQ(back.maps->matrix, m.maps->matrix);
    }
    ASSERT_EQ(back.per_image_maps.size(), m.per_image_maps.size());
    for (std::size_t r = 0; r < m.per_image_maps.size(); ++r)
      same_affine(back.per_image_maps[r].affine, m.per_image_maps[r].affine);
    ASSERT_EQ(back.ignored.size(), m.ignored.size());
    for (std::size_t i = 0; i < m.ignored.size(); ++i) {
      EXPECT_EQ(back.ignored[i].path, m.ignored[i].path);
      EXPECT_EQ(back.ignored[i].reason, m.ignored[i].reason);
    }
    // One key per line: every line of the object is a key (or an element of a list of objects).
    EXPECT_EQ(text.front(), '{');
    EXPECT_EQ(text.back(), '\n');
  }
}

TEST(manifest, matrix_and_per_channel_slopes_are_written_as_documented) {
  ojson lin = ojson::parse(to_json(matrix_manifest()));
  ASSERT_TRUE(lin.contains("matrix"));
  EXPECT_EQ(lin["matrix"].size(), 3u);
  EXPECT_EQ(lin["matrix"][1][0].get<double>(), -0.1);
  EXPECT_EQ(lin["maps"].size(), 3u);

  // Without a matrix: slopes a, b per *output* channel (bgr here: reversed).
  Manifest m = dataset_manifest();
  ojson j = ojson::parse(to_json(m));
  EXPECT_FALSE(j.contains("matrix"));
  ASSERT_TRUE(j.contains("affine"));
  for (int k = 0; k < 3; ++k) {
    const ChannelMap& f = m.maps->affine.ch[2 - k];
    EXPECT_EQ(j["affine"]["a"][k].get<double>(), f.g / (f.d * f.s));
    EXPECT_EQ(j["affine"]["b"][k].get<double>(), f.t - f.g * f.m / f.s);
  }
}

TEST(manifest, read_manifest_names_the_file) {
  TempDir tmp;
  const std::string path = tmp.str("manifest.json");
  write_file_atomic(path, to_json(dataset_manifest()), false);
  EXPECT_EQ(to_json(read_manifest(path)), to_json(dataset_manifest()));
  write_file_atomic(path, "{\"format\": \"imgnorm-stats\"}", true);
  try {
    read_manifest(path);
    FAIL() << "expected Error(format)";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::format);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  try {
    read_manifest(tmp.str("missing.json"));
    FAIL() << "expected Error(io)";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
  }
}

TEST(manifest, malformed_manifests_are_format_errors_naming_the_problem) {
  const Manifest good = dataset_manifest();
  EXPECT_NO_THROW(manifest_from_json(edited(good, [](ojson&) {})));

  expect_format_error("this is not JSON {", "not an imgnorm manifest");
  expect_format_error("[1, 2, 3]", "not an imgnorm manifest");
  expect_format_error(edited(good, [](ojson& j) { j["format"] = "imgnorm-stats"; }),
                      "not an imgnorm manifest");
  expect_format_error(edited(good, [](ojson& j) { j.erase("format"); }), "not an imgnorm manifest");
  expect_format_error(edited(good, [](ojson& j) { j["version"] = 2; }), "version");
  expect_format_error(edited(good, [](ojson& j) { j["version"] = "1"; }), "version");
  expect_format_error(edited(good, [](ojson& j) { j.erase("layout"); }), "layout");
  expect_format_error(edited(good, [](ojson& j) { j["layout"] = "hwcn"; }), "layout");
  expect_format_error(edited(good, [](ojson& j) { j.erase("mode"); }), "mode");
  expect_format_error(edited(good, [](ojson& j) { j["dtype"] = "uint8"; }), "dtype");
  expect_format_error(edited(good, [](ojson& j) { j["unit"] = 100; }), "unit");
  expect_format_error(edited(good, [](ojson& j) { j["maps"][1][2] = 0; }), "s may not be 0");
  expect_format_error(edited(good, [](ojson& j) { j["maps"][0][0] = 0; }), "d and s");
  expect_format_error(edited(good, [](ojson& j) { j["maps"].erase(2); }), "maps");
  expect_format_error(edited(good, [](ojson& j) { j["maps"][0] = {1, 2, 3}; }), "[d, m, s, g, t]");
  expect_format_error(edited(good, [](ojson& j) { j["maps"][0][1] = "x"; }), "not a number");
  expect_format_error(edited(good,
                             [](ojson& j) {
                               j.erase("maps");
                               j.erase("affine");
                             }),
                      "no maps");
  expect_format_error(edited(good, [](ojson& j) { j["range"] = ojson::array({0.0}); }), "range");

  // The matrix must be C×C.
  const Manifest lin = matrix_manifest();
  EXPECT_NO_THROW(manifest_from_json(edited(lin, [](ojson&) {})));
  expect_format_error(edited(lin, [](ojson& j) { j["matrix"].erase(2); }), "3x3 matrix");
  expect_format_error(edited(lin, [](ojson& j) { j["matrix"][1].erase(0); }), "3x3 matrix");
  expect_format_error(edited(lin, [](ojson& j) { j["matrix"] = {1, 0, 0, 0, 1, 0, 0, 0, 1}; }),
                      "3x3 matrix");
  expect_format_error(edited(lin, [](ojson& j) { j["matrix"][2][2] = "one"; }), "matrix");

  // Per-image maps: one map list per row, checked like `maps`.
  const Manifest per = per_image_manifest();
  expect_format_error(edited(per, [](ojson& j) { j["per_image_maps"][2][0][2] = 0; }),
                      "per_image_maps row 2");
}

// --- inspect_npy ---------------------------------------------------------------------------------

namespace {

struct Direct {
  long double mean = 0, std = 0;
  double min = INFINITY, max = -INFINITY;
  std::uint64_t count = 0, nan = 0;
};

// Two passes in long double over the values of each channel, `channel_of(i)` giving the channel of
// element i.
std::vector<Direct> direct(const std::vector<float>& v, int channels,
                           const std::function<int(std::size_t)>& channel_of) {
  std::vector<Direct> d(channels);
  std::vector<long double> sum(channels, 0);
  for (std::size_t i = 0; i < v.size(); ++i) {
    Direct& c = d[channel_of(i)];
    if (std::isnan(v[i])) {
      ++c.nan;
      continue;
    }
    sum[channel_of(i)] += v[i];
    ++c.count;
    c.min = std::min<double>(c.min, v[i]);
    c.max = std::max<double>(c.max, v[i]);
  }
  for (int c = 0; c < channels; ++c) d[c].mean = sum[c] / d[c].count;
  std::vector<long double> ss(channels, 0);
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isnan(v[i])) {
      const long double e = v[i] - d[channel_of(i)].mean;
      ss[channel_of(i)] += e * e;
    }
  for (int c = 0; c < channels; ++c) d[c].std = std::sqrt(ss[c] / d[c].count);
  return d;
}

std::vector<float> test_values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.25f, 1.5f);
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = dist(rng) + static_cast<float>(i % 3);
  return v;
}

void expect_matches(const NpyInspection& got, const std::vector<Direct>& want) {
  ASSERT_EQ(got.channels.size(), want.size());
  for (std::size_t c = 0; c < want.size(); ++c) {
    SCOPED_TRACE("channel " + std::to_string(c));
    const ValueMoments& g = got.channels[c];
    EXPECT_NEAR(g.mean, static_cast<double>(want[c].mean), 1e-12);
    EXPECT_NEAR(g.std, static_cast<double>(want[c].std), 1e-9 * static_cast<double>(want[c].std));
    EXPECT_EQ(g.min, want[c].min);
    EXPECT_EQ(g.max, want[c].max);
    EXPECT_EQ(g.count, want[c].count);
    EXPECT_EQ(g.nan, want[c].nan);
  }
}

}  // namespace

TEST(manifest, inspect_npy_nhwc_per_channel_moments_and_nans) {
  TempDir tmp;
  const std::size_t n = 3, h = 5, w = 7, c = 3;
  std::vector<float> v = test_values(n * h * w * c, 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  v[0] = nan;       // channel 0
  v[4] = nan;       // channel 1
  v[3 * 50] = nan;  // channel 0
  const std::string path = tmp.str("nhwc.npy");
  write_npy(path, DType::float32, {n, h, w, c}, v.data());
  auto want = direct(v, 3, [](std::size_t i) { return static_cast<int>(i % 3); });
  ASSERT_EQ(want[0].nan, 2u);
  ASSERT_EQ(want[1].nan, 1u);
  ASSERT_EQ(want[2].nan, 0u);
  for (std::optional<Layout> layout : {std::optional<Layout>(), std::optional(Layout::nhwc)}) {
    NpyInspection r = inspect_npy(path, layout);
    EXPECT_EQ(r.header.shape, (std::vector<std::uint64_t>{n, h, w, c}));
    EXPECT_EQ(r.header.dtype, DType::float32);
    EXPECT_EQ(r.axis, 3u);
    expect_matches(r, want);
  }
}

TEST(manifest, inspect_npy_nchw_with_the_layout_given) {
  TempDir tmp;
  // N, C, H, W with W = 3: without the layout the last axis would be taken for the channels.
  const std::size_t n = 2, c = 3, h = 4, w = 3;
  std::vector<float> v = test_values(n * c * h * w, 2);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] += 10.0f * static_cast<float>((i / (h * w)) % c);
  v[h * w + 5] = std::numeric_limits<float>::quiet_NaN();        // row 0, channel 1
  v[(c + 2) * h * w] = std::numeric_limits<float>::quiet_NaN();  // row 1, channel 2
  const std::string path = tmp.str("nchw.npy");
  write_npy(path, DType::float32, {n, c, h, w}, v.data());

  NpyInspection r = inspect_npy(path, Layout::nchw);
  EXPECT_EQ(r.axis, 1u);
  auto want = direct(v, 3, [&](std::size_t i) { return static_cast<int>((i / (h * w)) % c); });
  ASSERT_EQ(want[1].nan, 1u);
  ASSERT_EQ(want[2].nan, 1u);
  expect_matches(r, want);

  // Unset layout: the last axis (3 entries) is taken.
  NpyInspection last = inspect_npy(path);
  EXPECT_EQ(last.axis, 3u);
  expect_matches(last, direct(v, 3, [&](std::size_t i) { return static_cast<int>(i % w); }));
}

// --- atomic outputs ------------------------------------------------------------------------------

TEST(manifest, atomic_file_uncommitted_leaves_nothing) {
  TempDir tmp;
  const std::string path = tmp.str("out.json");
  {
    AtomicFile f(path);
    EXPECT_EQ(f.path(), path);
    EXPECT_EQ(f.temp_path().rfind(path + ".tmp-", 0), 0u) << f.temp_path();
    EXPECT_TRUE(fs::exists(f.temp_path()));
    EXPECT_GE(f.fd(), 0);
    f.write("partial", 7);
    EXPECT_FALSE(fs::exists(path));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(entries(tmp.path).empty());

  // discard() now, explicitly.
  AtomicFile g(path);
  const std::string temp = g.temp_path();
  g.write("x", 1);
  g.discard();
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_EQ(g.fd(), -1);
  EXPECT_TRUE(entries(tmp.path).empty());
}

TEST(manifest, atomic_file_committed_has_the_content) {
  TempDir tmp;
  const std::string path = tmp.str("out.bin");
  std::string content(100000, '\0');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 7);
  {
    AtomicFile f(path);
    f.write(content.data(), 1000);
    f.write(content.data() + 1000, content.size() - 1000);
    f.commit(true);
    EXPECT_EQ(f.fd(), -1);
  }
  EXPECT_EQ(read_bytes(path), content);
  EXPECT_EQ(entries(tmp.path), std::vector<std::string>{"out.bin"});
}

TEST(manifest, write_file_atomic_refuses_an_existing_file_without_force) {
  TempDir tmp;
  const std::string path = tmp.str("stats.json");
  write_file_atomic(path, "first\n", false);
  EXPECT_EQ(read_bytes(path), "first\n");
  try {
    write_file_atomic(path, "second\n", false);
    FAIL() << "expected Error(io)";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(path), "first\n");
  write_file_atomic(path, "second\n", true);
  EXPECT_EQ(read_bytes(path), "second\n");
  EXPECT_EQ(entries(tmp.path), std::vector<std::string>{"stats.json"});

  // Interrupted before the rename: nothing replaced, no temporary left.
  std::atomic<bool> cancel{true};
  try {
    write_file_atomic(path, "third\n", true, &cancel);
    FAIL() << "expected Error(interrupted)";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted);
  }
  EXPECT_EQ(read_bytes(path), "second\n");
  EXPECT_EQ(entries(tmp.path), std::vector<std::string>{"stats.json"});

  // A missing folder is refused.
  EXPECT_THROW(write_file_atomic(tmp.str("no/such/file.json"), "x", false), Error);
}
