// The normalize job as library calls: Normalization (rows, order, labels, skipped files, sinks,
// --fit, array input), normalize_to_folder and denormalize, and the channel matrix. Expectations
// come from another path of the library (load_image + the plain reference kernel, summarize() of
// the exact statistics) or from the formula evaluated here in double.

#include "imgnorm/normalize.hpp"
#include "test_files.hpp"

#include "transform_kernels.hpp"

#include <gtest/gtest.h>
#include <spng.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "imgnorm/error.hpp"
#include "imgnorm/manifest.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/stats_job.hpp"

using namespace imgnorm;
namespace fs = std::filesystem;

namespace {

const std::string kData = IMGNORM_TEST_DATA;

using namespace imgnorm::testing;

// A class-folder dataset: the images that decode, in the order the manifest must list them
// (sorted by class, then relative path, bytewise), and the files that must be skipped.
struct TestDataset {
  std::string root;
  std::vector<std::string> classes;
  std::vector<std::pair<std::string, std::string>> images;  // (class, relative path)
  std::vector<std::string> broken;                          // full paths
  std::vector<std::string> files() const {
    std::vector<std::string> f;
    for (const auto& [cls, rel] : images) f.push_back(root + "/" + cls + "/" + rel);
    return f;
  }
  std::vector<std::int64_t> labels() const {
    std::vector<std::int64_t> l;
    for (const auto& im : images)
      l.push_back(std::find(classes.begin(), classes.end(), im.first) - classes.begin());
    return l;
  }
};

// `classes` is a subset of {"apple", "banana", "cherry", ...}: a few PNGs (RGB, gray, nested) and
// copies of the test images (JPEG, RGBA PNG) in each.
TestDataset make_dataset(const fs::path& root, const std::vector<std::string>& classes,
                         bool with_broken) {
  TestDataset ds;
  ds.root = root.string();
  unsigned seed = 1;
  for (const std::string& cls : classes) {
    fs::create_directories(root / cls / "sub");
    write_png(root / cls / "p0.png", 9 + static_cast<int>(seed), 7, 3, seed);
    ds.images.push_back({cls, "p0.png"});
    write_png(root / cls / "sub" / "g1.png", 14, 11, 1, seed + 100);
    ds.images.push_back({cls, "sub/g1.png"});
    const char* copy = seed % 2 ? "jpeg_444.jpg" : "png_rgba.png";
    fs::copy_file(kData + "/" + copy, root / cls / (std::string("c_") + copy));
    ds.images.push_back({cls, std::string("c_") + copy});
    ++seed;
  }
  if (with_broken) {
    // A text file named .jpg and a truncated PNG: both found, both skipped.
    const std::string& cls = classes.front();
    fs::copy_file(kData + "/text.jpg", root / cls / "broken.jpg");
    ds.broken.push_back((root / cls / "broken.jpg").string());
    std::string png = read_bytes(kData + "/png_rgb.png");
    write_bytes(root / classes.back() / "truncated.png", png.substr(0, png.size() / 2));
    ds.broken.push_back((root / classes.back() / "truncated.png").string());
  }
  ds.classes = classes;
  std::sort(ds.classes.begin(), ds.classes.end());
  std::sort(ds.images.begin(), ds.images.end());
  std::sort(ds.broken.begin(), ds.broken.end());
  return ds;
}

Recipe small_recipe() {
  Recipe r;
  r.size = {12, 10};
  return r;
}

StatsFile train_stats(const std::string& folder, int threads = 2) {
  SelectOptions sel;
  sel.folder = folder;
  StatsJob sj;
  sj.recipe = small_recipe();
  PipelineOptions o;
  o.threads = threads;
  return compute_stats(select_dataset(sel), sj, o);
}

PipelineOptions threads(int n, int tokens = 0) {
  PipelineOptions o;
  o.threads = n;
  o.tokens = tokens;
  return o;
}

NormalizeJob job_of(Mode mode) {
  NormalizeJob job;
  job.spec.mode = mode;
  job.recipe.size = Size{12, 10};
  return job;
}

struct JobRun {
  NormalizeResult result;
  std::vector<std::uint8_t> data;
  std::size_t row_bytes = 0;
};

JobRun run_job(NormalizeJob job, const std::string& input, const PipelineOptions& o = threads(2)) {
  Normalization n(std::move(job), input);
  n.prepare(o);
  MemorySink sink;
  JobRun r;
  r.result = n.run(sink, o);
  r.data = sink.data();
  r.row_bytes = sink.row_bytes();
  return r;
}

// The standardize map (unit 255) of the formula y = t + g·((x/d − m)/s) with the exact
// statistics of `stats`.
Affine standardize_map(const StatsFile& stats) {
  Summary s = summarize(stats.acc, stats.ddof);
  Affine a;
  a.channels = s.channels;
  for (int c = 0; c < s.channels; ++c) a.ch[c] = {1.0, s.channel[c].mean, s.channel[c].std, 1, 0};
  return a;
}

// Each file through the recipe (load_image) and the plain reference kernel.
std::vector<std::uint8_t> reference_rows(const std::vector<std::string>& files,
                                         const Recipe& recipe, const Affine& map, bool swap,
                                         Layout layout, DType dtype) {
  const std::size_t rb = static_cast<std::size_t>(recipe.size.width) * recipe.size.height *
                         channel_count(recipe.channels) * dtype_size(dtype);
  std::vector<std::uint8_t> out(files.size() * rb);
  for (std::size_t i = 0; i < files.size(); ++i) {
    Image img;
    load_image(files[i], recipe, img);
    detail::apply_reference(img.view(), map, swap, layout, dtype, out.data() + i * rb);
  }
  return out;
}

std::vector<std::string> temp_files(const fs::path& dir) {
  std::vector<std::string> t;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos)
      t.push_back(e.path().string());
  return t;
}

// A well-conditioned 3×3 mixing matrix (row-major).
const std::vector<double> kMatrix = {0.9, 0.05, 0.02, -0.1, 1.1, 0.03, 0.04, -0.2, 0.95};

}  // namespace

// --- rows, order, labels, skipped files --------------------------------------------------------

TEST(normalize, rows_equal_load_image_and_the_reference_map_in_manifest_order) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"cherry", "apple", "banana"}, true);
  StatsFile st = train_stats(ds.root);
  NormalizeJob job = job_of(Mode::standardize);
  job.stats = st;
  JobRun r = run_job(job, ds.root);

  const std::vector<std::string> files = ds.files();
  ASSERT_EQ(r.result.rows, files.size());
  EXPECT_EQ(r.result.files, files);
  EXPECT_EQ(r.result.labels, ds.labels());
  EXPECT_EQ(r.result.labels.front(), 0);
  EXPECT_EQ(r.result.labels.back(), 2);
  EXPECT_TRUE(r.result.per_image_maps.empty());
  EXPECT_EQ(r.row_bytes, 12u * 10 * 3 * sizeof(float));
  ASSERT_EQ(r.data.size(), r.result.rows * r.row_bytes);

  // Skipped: listed with a reason (dataset order), no row.
  ASSERT_EQ(r.result.skipped.size(), ds.broken.size());
  for (std::size_t i = 0; i < ds.broken.size(); ++i) {
    EXPECT_EQ(r.result.skipped[i].path, ds.broken[i]);
    EXPECT_FALSE(r.result.skipped[i].reason.empty());
    EXPECT_EQ(std::count(files.begin(), files.end(), ds.broken[i]), 0);
  }

  std::vector<std::uint8_t> want = reference_rows(files, small_recipe(), standardize_map(st), false,
                                                  Layout::nhwc, DType::float32);
  ASSERT_EQ(r.data.size(), want.size());
  for (std::size_t i = 0; i < files.size(); ++i)
    EXPECT_EQ(
        0, std::memcmp(r.data.data() + i * r.row_bytes, want.data() + i * r.row_bytes, r.row_bytes))
        << "row " << i << " " << files[i];
}

TEST(normalize, rows_equal_normalizer_apply_for_layouts_dtypes_and_channel_orders) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana"}, false);
  StatsFile st = train_stats(ds.root);
  Summary s = summarize(st.acc);
  for (Layout layout : {Layout::nhwc, Layout::nchw})
    for (DType dtype : {DType::float32, DType::float16})
      for (ChannelOrder out : {ChannelOrder::rgb, ChannelOrder::bgr}) {
        SCOPED_TRACE(std::string(to_string(layout)) + " " + to_string(dtype) + " " +
                     to_string(out));
        NormalizeJob job = job_of(Mode::standardize);
        job.stats = st;
        job.layout = layout;
        job.dtype = dtype;
        job.channels = out;
        JobRun r = run_job(job, ds.root);
        TransformSpec spec;
        spec.mode = Mode::standardize;
        for (const auto& c : s.channel) {
          spec.mean.push_back(c.mean);
          spec.std.push_back(c.std);
        }
        Normalizer norm(spec, ChannelOrder::rgb, {layout, dtype, out});
        const std::vector<std::string> files = ds.files();
        ASSERT_EQ(r.result.rows, files.size());
        ASSERT_EQ(r.row_bytes, 12u * 10 * 3 * dtype_size(dtype));
        std::vector<std::uint8_t> row(r.row_bytes);
        for (std::size_t i = 0; i < files.size(); ++i) {
          Image img;
          load_image(files[i], small_recipe(), img);
          norm.apply(img.view(), row.data());
          EXPECT_EQ(0, std::memcmp(r.data.data() + i * r.row_bytes, row.data(), r.row_bytes))
              << files[i];
        }
      }
}

TEST(normalize, per_image_mode_gives_one_map_per_row) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana", "cherry"}, true);
  for (Mode mode : {Mode::per_image, Mode::per_image_channel, Mode::minmax}) {
    SCOPED_TRACE(to_string(mode));
    JobRun r = run_job(job_of(mode), ds.root);
    const std::vector<std::string> files = ds.files();
    ASSERT_EQ(r.result.rows, files.size());
    ASSERT_EQ(r.result.per_image_maps.size(), r.result.rows);
    EXPECT_EQ(r.result.files.size(), r.result.rows);
    EXPECT_EQ(r.result.labels.size(), r.result.rows);
    EXPECT_EQ(r.result.skipped.size(), ds.broken.size());
    std::vector<float> row(12 * 10 * 3);
    for (std::size_t i = 0; i < files.size(); ++i) {
      Image img;
      load_image(files[i], small_recipe(), img);
      const Affine& a = r.result.per_image_maps[i];
      ASSERT_EQ(a.channels, 3);
      if (mode == Mode::per_image) {
        // Mean and std over all values of this image, from first principles.
        const std::size_t n = img.size_bytes();
        double sum = 0;
        for (std::size_t k = 0; k < n; ++k) sum += img.data()[k];
        const double mean = sum / static_cast<double>(n);
        double ss = 0;
        for (std::size_t k = 0; k < n; ++k) ss += (img.data()[k] - mean) * (img.data()[k] - mean);
        const double sd = std::max(std::sqrt(ss / static_cast<double>(n)), 1 / std::sqrt(n * 1.0));
        for (int c = 0; c < 3; ++c) {
          EXPECT_DOUBLE_EQ(a.ch[c].m, mean);
          EXPECT_NEAR(a.ch[c].s, sd, 1e-9 * sd);
        }
      } else if (mode == Mode::minmax) {
        for (int c = 0; c < 3; ++c) {
          int lo = 255, hi = 0;
          for (std::size_t k = c; k < img.size_bytes(); k += 3) {
            lo = std::min<int>(lo, img.data()[k]);
            hi = std::max<int>(hi, img.data()[k]);
          }
          EXPECT_EQ(a.ch[c].m, lo);
          if (hi > lo) {
            EXPECT_EQ(a.ch[c].s, hi - lo);
          }
        }
      }
      // The row is this image through its own map.
      detail::apply_reference(img.view(), a, false, Layout::nhwc, DType::float32, row.data());
      EXPECT_EQ(0, std::memcmp(r.data.data() + i * r.row_bytes, row.data(), r.row_bytes))
          << files[i];
    }
  }
}

TEST(normalize, result_is_independent_of_the_thread_count) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana", "cherry"}, true);
  StatsFile st = train_stats(ds.root);
  for (Mode mode : {Mode::standardize, Mode::per_image_channel}) {
    SCOPED_TRACE(to_string(mode));
    NormalizeJob job = job_of(mode);
    if (mode == Mode::standardize) job.stats = st;
    JobRun one = run_job(job, ds.root, threads(1));
    JobRun three = run_job(job, ds.root, threads(3, 2));
    EXPECT_EQ(one.data, three.data);
    EXPECT_EQ(one.result.rows, three.result.rows);
    EXPECT_EQ(one.result.files, three.result.files);
    EXPECT_EQ(one.result.labels, three.result.labels);
    EXPECT_EQ(one.result.skipped, three.result.skipped);
    ASSERT_EQ(one.result.per_image_maps.size(), three.result.per_image_maps.size());
    for (std::size_t i = 0; i < one.result.per_image_maps.size(); ++i)
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(one.result.per_image_maps[i].ch[c].m, three.result.per_image_maps[i].ch[c].m);
        EXPECT_EQ(one.result.per_image_maps[i].ch[c].s, three.result.per_image_maps[i].ch[c].s);
      }
  }
}

TEST(normalize, skipped_files_reach_on_skip_in_dataset_order) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana"}, true);
  NormalizeJob job = job_of(Mode::scale);
  Normalization n(job, ds.root);
  PipelineOptions o = threads(3);
  std::vector<std::string> seen;
  o.on_skip = [&](const std::string& path, const Error& e) {
    seen.push_back(path);
    EXPECT_FALSE(std::string(e.what()).empty());
  };
  n.prepare(o);
  MemorySink sink;
  NormalizeResult r = n.run(sink, o);
  EXPECT_EQ(seen, ds.broken);
  EXPECT_EQ(r.rows, ds.images.size());
}

// --- the RowSink protocol ----------------------------------------------------------------------

namespace {
struct RecordingSink : RowSink {
  std::vector<std::string> calls;
  std::uint64_t planned = 0, ended = 0;
  std::size_t row_bytes = 0;
  std::vector<std::uint64_t> rows;
  std::vector<std::uint8_t> data;
  void begin(std::uint64_t planned_rows, std::size_t rb) override {
    calls.push_back("begin");
    planned = planned_rows;
    row_bytes = rb;
  }
  void write_row(std::uint64_t row, const void* p) override {
    if (calls.empty() || calls.back() != "row") calls.push_back("row");
    rows.push_back(row);
    const auto* b = static_cast<const std::uint8_t*>(p);
    data.insert(data.end(), b, b + row_bytes);
  }
  void end(std::uint64_t n) override {
    calls.push_back("end");
    ended = n;
  }
};
}  // namespace

TEST(normalize, sink_sees_begin_rows_in_order_then_end) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana", "cherry"}, true);
  for (DType dtype : {DType::float32, DType::float16}) {
    NormalizeJob job = job_of(Mode::inception);
    job.dtype = dtype;
    job.layout = Layout::nchw;
    Normalization n(job, ds.root);
    n.prepare(threads(3, 2));
    RecordingSink sink;
    NormalizeResult r = n.run(sink, threads(3, 2));
    const std::uint64_t found = ds.images.size() + ds.broken.size();
    EXPECT_EQ(n.planned_rows(), found);
    EXPECT_EQ(sink.calls, (std::vector<std::string>{"begin", "row", "end"}));
    EXPECT_EQ(sink.planned, found);
    EXPECT_EQ(sink.row_bytes, 10u * 12 * 3 * dtype_size(dtype));
    EXPECT_EQ(sink.row_bytes, n.row_bytes());
    ASSERT_EQ(sink.rows.size(), ds.images.size());
    for (std::size_t i = 0; i < sink.rows.size(); ++i) EXPECT_EQ(sink.rows[i], i);
    EXPECT_EQ(sink.ended, ds.images.size());
    EXPECT_EQ(r.rows, sink.ended);
    EXPECT_EQ(n.shape(r.rows), (std::vector<std::uint64_t>{r.rows, 3, 10, 12}));
    // The same bytes as the memory sink.
    MemorySink mem;
    n.run(mem, threads(1));
    EXPECT_EQ(mem.data(), sink.data);
  }
}

// --- labels against the training class list ---------------------------------------------------

TEST(normalize, labels_are_training_class_ids) {
  TempDir tmp;
  TestDataset train = make_dataset(tmp.path / "train", {"apple", "banana", "cherry"}, false);
  TestDataset test = make_dataset(tmp.path / "test", {"banana", "cherry"}, true);
  StatsFile st = train_stats(train.root);
  ASSERT_EQ(st.classes, train.classes);
  NormalizeJob job = job_of(Mode::standardize);
  job.stats = st;
  JobRun r = run_job(job, test.root);
  std::vector<std::int64_t> want;
  for (const auto& im : test.images)
    want.push_back(std::find(train.classes.begin(), train.classes.end(), im.first) -
                   train.classes.begin());
  EXPECT_EQ(r.result.labels, want);
  EXPECT_EQ(r.result.labels.front(), 1);  // banana in the training list
  // The manifest keeps the training class list.
  Normalization n(job, test.root);
  n.prepare(threads(2));
  MemorySink sink;
  NormalizeResult res = n.run(sink, threads(2));
  EXPECT_EQ(n.manifest(res).classes, train.classes);
}

TEST(normalize, a_class_the_training_set_lacks_is_refused) {
  TempDir tmp;
  TestDataset train = make_dataset(tmp.path / "train", {"apple", "banana"}, false);
  TestDataset test = make_dataset(tmp.path / "test", {"banana", "durian"}, false);
  NormalizeJob job = job_of(Mode::standardize);
  job.stats = train_stats(train.root);
  try {
    Normalization n(job, test.root);
    FAIL() << "expected invalid_argument";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("durian"), std::string::npos) << e.what();
  }
  // Without labels the same input is accepted.
  job.labels = false;
  JobRun r = run_job(job, test.root);
  EXPECT_TRUE(r.result.labels.empty());
  EXPECT_EQ(r.result.rows, test.images.size());
}

// --- --fit
// ----------------------------------------------------------------------------------------

TEST(normalize, fit_equals_stats_computed_first) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana", "cherry"}, true);
  for (Mode mode : {Mode::standardize, Mode::center, Mode::minmax_dataset}) {
    SCOPED_TRACE(to_string(mode));
    NormalizeJob fit = job_of(mode);
    fit.fit = true;
    JobRun a = run_job(fit, ds.root, threads(3));
    NormalizeJob given = job_of(mode);
    given.stats = train_stats(ds.root, 1);
    JobRun b = run_job(given, ds.root, threads(1));
    EXPECT_EQ(a.data, b.data);
    EXPECT_EQ(a.result.files, b.result.files);
    EXPECT_EQ(a.result.labels, b.result.labels);
  }
  // --fit and --stats together are refused.
  NormalizeJob both = job_of(Mode::standardize);
  both.fit = true;
  both.stats = train_stats(ds.root);
  EXPECT_THROW({ Normalization n(both, ds.root); }, Error);
}

// --- array input ---------------------------------------------------------------------------------

TEST(normalize, u8_array_rows_equal_normalizer_apply) {
  const int n = 4, h = 6, w = 5;
  std::vector<std::uint8_t> px = test_pixels(w, h * n, 3, 7);
  NormalizeJob job;
  job.spec.mode = Mode::custom;
  job.spec.mean = {0.5, 0.4, 0.3};
  job.spec.std = {0.25, 0.2, 0.3};
  job.spec.unit = 1;
  job.layout = Layout::nchw;
  job.channels = ChannelOrder::bgr;
  NormalizeInput in;
  in.source = "memory";
  in.array = ImageArray::from_memory(px.data(), DType::uint8, n, h, w, 3);
  Normalization norm(job, std::move(in));
  EXPECT_FALSE(norm.labels());
  norm.prepare(threads(2));
  MemorySink sink;
  NormalizeResult r = norm.run(sink, threads(2));
  ASSERT_EQ(r.rows, static_cast<std::uint64_t>(n));
  EXPECT_TRUE(r.files.empty());
  EXPECT_TRUE(r.labels.empty());
  EXPECT_EQ(norm.shape(r.rows), (std::vector<std::uint64_t>{4, 3, 6, 5}));

  Normalizer ref(job.spec, ChannelOrder::rgb, {Layout::nchw, DType::float32, ChannelOrder::bgr});
  const std::size_t rb = static_cast<std::size_t>(h) * w * 3 * sizeof(float);
  ASSERT_EQ(sink.data().size(), n * rb);
  std::vector<std::uint8_t> row(rb);
  for (int i = 0; i < n; ++i) {
    ImageView v{px.data() + static_cast<std::size_t>(i) * h * w * 3, w, h, 3,
                static_cast<std::size_t>(w) * 3};
    ref.apply(v, row.data());
    EXPECT_EQ(0, std::memcmp(sink.data().data() + i * rb, row.data(), rb)) << "row " << i;
  }
}

TEST(normalize, float64_array_with_whole_values_equals_u8_array) {
  const int n = 3, h = 7, w = 4;
  std::vector<std::uint8_t> px = test_pixels(w, h * n, 3, 11);
  std::vector<double> values(px.begin(), px.end());
  std::vector<float> values32(px.begin(), px.end());
  auto run_array = [&](const void* data, DType dtype, const NormalizeJob& job) {
    NormalizeInput in;
    in.source = "memory";
    in.array = ImageArray::from_memory(data, dtype, n, h, w, 3);
    Normalization norm(job, std::move(in));
    norm.prepare(threads(2));
    MemorySink sink;
    norm.run(sink, threads(2));
    return sink.data();
  };
  for (Mode mode : {Mode::standardize, Mode::minmax_dataset, Mode::scale, Mode::imagenet,
                    Mode::caffe, Mode::custom}) {
    for (DType out : {DType::float32, DType::float16}) {
      SCOPED_TRACE(std::string(to_string(mode)) + " " + to_string(out));
      NormalizeJob job;
      job.spec.mode = mode;
      job.dtype = out;
      if (mode == Mode::standardize || mode == Mode::minmax_dataset) job.fit = true;
      if (mode == Mode::custom) job.spec.mean = {100, 120, 140};
      std::vector<std::uint8_t> u8 = run_array(px.data(), DType::uint8, job);
      EXPECT_EQ(u8, run_array(values.data(), DType::float64, job));
      EXPECT_EQ(u8, run_array(values32.data(), DType::float32, job));
      // The channel-mixing path: float input through apply_values equals the u8 kernel.
      job.spec.matrix = {0.9, -0.2, 0.1, 0.05, 1.1, -0.3, 0.2, 0.0, 0.7};
      std::vector<std::uint8_t> mixed = run_array(px.data(), DType::uint8, job);
      EXPECT_NE(mixed, u8);
      EXPECT_EQ(mixed, run_array(values.data(), DType::float64, job));
      EXPECT_EQ(mixed, run_array(values32.data(), DType::float32, job));
    }
  }
}

// --- the output folder ---------------------------------------------------------------------------

TEST(normalize, normalize_to_folder_writes_what_the_memory_run_gives) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana", "cherry"}, true);
  StatsFile st = train_stats(ds.root);
  NormalizeJob job = job_of(Mode::standardize);
  job.stats = st;
  job.layout = Layout::nchw;
  JobRun mem = run_job(job, ds.root);

  const std::string out = tmp.str("out");
  Normalization n(job, ds.root);
  NormalizeResult r = normalize_to_folder(n, out, false, threads(3));
  EXPECT_EQ(r.rows, mem.result.rows);
  EXPECT_EQ(r.files, mem.result.files);

  NpyArray images = read_npy(out + "/images.npy");
  EXPECT_EQ(images.header.dtype, DType::float32);
  EXPECT_EQ(images.header.shape, (std::vector<std::uint64_t>{r.rows, 3, 10, 12}));
  EXPECT_EQ(images.data, mem.data);
  NpyArray labels = read_npy(out + "/labels.npy");
  EXPECT_EQ(labels.header.dtype, DType::int64);
  ASSERT_EQ(labels.header.shape, (std::vector<std::uint64_t>{r.rows}));
  EXPECT_EQ(
      std::vector<std::int64_t>(labels.as<std::int64_t>(), labels.as<std::int64_t>() + r.rows),
      ds.labels());

  Manifest m = read_manifest(out + "/manifest.json");
  EXPECT_EQ(m.rows, r.rows);
  EXPECT_EQ(m.shape, images.header.shape);
  EXPECT_EQ(m.layout, Layout::nchw);
  EXPECT_EQ(m.mode, Mode::standardize);
  EXPECT_TRUE(m.labels);
  EXPECT_EQ(m.classes, ds.classes);
  ASSERT_EQ(m.files.size(), r.rows);
  const std::vector<std::int64_t> want_labels = ds.labels();
  for (std::size_t i = 0; i < m.files.size(); ++i) {
    EXPECT_EQ(m.files[i].path, ds.files()[i]);
    EXPECT_EQ(m.files[i].label, want_labels[i]);
  }
  ASSERT_EQ(m.skipped.size(), ds.broken.size());
  for (std::size_t i = 0; i < ds.broken.size(); ++i) EXPECT_EQ(m.skipped[i].path, ds.broken[i]);
  // The exact maps of the statistics.
  ASSERT_TRUE(m.maps.has_value());
  EXPECT_FALSE(m.maps->is_linear());
  Affine want = standardize_map(st);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(m.maps->affine.ch[c].m, want.ch[c].m);
    EXPECT_EQ(m.maps->affine.ch[c].s, want.ch[c].s);
  }
  EXPECT_TRUE(temp_files(out).empty());

  // Again without force: refused before any work, the files untouched.
  const std::string images_bytes = read_bytes(out + "/images.npy");
  const std::string manifest_bytes = read_bytes(out + "/manifest.json");
  const std::string labels_bytes = read_bytes(out + "/labels.npy");
  NormalizeJob other = job_of(Mode::scale);
  other.stats = st;
  {
    Normalization again(other, ds.root);
    try {
      normalize_to_folder(again, out, false, threads(2));
      FAIL() << "expected Error(io)";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::io);
      EXPECT_NE(std::string(e.what()).find("exists"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(again.prepared()) << "refused before any work";
  }
  EXPECT_EQ(read_bytes(out + "/images.npy"), images_bytes);
  EXPECT_EQ(read_bytes(out + "/manifest.json"), manifest_bytes);
  EXPECT_EQ(read_bytes(out + "/labels.npy"), labels_bytes);
  EXPECT_TRUE(temp_files(out).empty());

  // With force: replaced by the new job's output.
  Normalization forced(other, ds.root);
  NormalizeResult r2 = normalize_to_folder(forced, out, true, threads(2));
  JobRun scale = run_job(other, ds.root);
  EXPECT_EQ(read_npy(out + "/images.npy").data, scale.data);
  EXPECT_NE(read_bytes(out + "/images.npy"), images_bytes);
  EXPECT_EQ(read_manifest(out + "/manifest.json").mode, Mode::scale);
  EXPECT_EQ(r2.rows, scale.result.rows);
  EXPECT_TRUE(temp_files(out).empty());
}

TEST(normalize, forced_run_without_labels_removes_the_old_labels) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana"}, false);
  const std::string out = tmp.str("out");
  Normalization first(job_of(Mode::scale), ds.root);
  normalize_to_folder(first, out, false, threads(2));
  ASSERT_TRUE(fs::exists(out + "/labels.npy"));
  NormalizeJob job = job_of(Mode::inception);
  job.labels = false;
  Normalization second(job, ds.root);
  NormalizeResult r = normalize_to_folder(second, out, true, threads(2));
  EXPECT_TRUE(r.labels.empty());
  EXPECT_FALSE(fs::exists(out + "/labels.npy")) << "an old labels.npy beside new images";
  Manifest m = read_manifest(out + "/manifest.json");
  EXPECT_FALSE(m.labels);
  EXPECT_EQ(m.mode, Mode::inception);
  for (const ManifestFile& f : m.files) EXPECT_FALSE(f.label.has_value());
  EXPECT_TRUE(temp_files(out).empty());
}

TEST(normalize, output_folder_inside_the_dataset_is_refused) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple"}, false);
  Normalization n(job_of(Mode::scale), ds.root);
  EXPECT_THROW(normalize_to_folder(n, ds.root + "/out", false, threads(1)), Error);
  EXPECT_FALSE(fs::exists(ds.root + "/out"));
}

TEST(normalize, denormalize_recovers_the_loaded_pixels) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana"}, true);
  for (Mode mode : {Mode::standardize, Mode::per_image_channel, Mode::minmax, Mode::imagenet}) {
    SCOPED_TRACE(to_string(mode));
    NormalizeJob job = job_of(mode);
    if (mode == Mode::standardize) job.stats = train_stats(ds.root);
    const std::string out = tmp.str(std::string("out-") + to_string(mode));
    Normalization n(job, ds.root);
    NormalizeResult r = normalize_to_folder(n, out, false, threads(2));
    Manifest m = denormalize(out + "/images.npy", "", out + "/u8.npy", false);
    EXPECT_EQ(m.rows, r.rows);
    NpyArray u8 = read_npy(out + "/u8.npy");
    ASSERT_EQ(u8.header.shape, (std::vector<std::uint64_t>{r.rows, 10, 12, 3}));
    const std::size_t rb = 10 * 12 * 3;
    for (std::size_t i = 0; i < r.rows; ++i) {
      Image img;
      load_image(r.files[i], small_recipe(), img);
      EXPECT_EQ(0, std::memcmp(u8.data.data() + i * rb, img.data(), rb)) << r.files[i];
    }
  }
}

// --- the channel matrix --------------------------------------------------------------------------

namespace {

// y = M·((x − mean)/std) per pixel in double, rounded to float32. mean/std are custom constants in
// the output channel order; M is in input channel order (TransformSpec::matrix); output channel k
// holds input channel k, or 2 − k when the orders differ.
std::vector<float> matrix_reference(const ImageView& img, const std::vector<double>& mean,
                                    const std::vector<double>& sd, const std::vector<double>& M,
                                    bool swap, Layout layout) {
  const int w = img.width, h = img.height;
  std::vector<float> out(static_cast<std::size_t>(w) * h * 3);
  auto out_of = [&](int c) { return swap ? 2 - c : c; };  // input channel → output position
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double z[3];
      for (int c = 0; c < 3; ++c) z[c] = (img.row(y)[x * 3 + c] - mean[out_of(c)]) / sd[out_of(c)];
      for (int c = 0; c < 3; ++c) {
        double v = 0;
        for (int j = 0; j < 3; ++j) v += M[c * 3 + j] * z[j];
        const int k = out_of(c);
        const std::size_t o = layout == Layout::nhwc
                                  ? (static_cast<std::size_t>(y) * w + x) * 3 + k
                                  : (static_cast<std::size_t>(k) * h + y) * w + x;
        out[o] = static_cast<float>(v);
      }
    }
  return out;
}

std::vector<std::uint8_t> random_u8(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

}  // namespace

TEST(normalize, matrix_map_equals_the_formula_in_double) {
  const int w = 13, h = 9;
  std::vector<std::uint8_t> px = random_u8(static_cast<std::size_t>(w) * h * 3, 3);
  ImageView img{px.data(), w, h, 3, static_cast<std::size_t>(w) * 3};
  const std::vector<double> mean = {120.5, 110.25, 100.75}, sd = {60.0, 55.5, 58.125};
  for (ChannelOrder input : {ChannelOrder::rgb, ChannelOrder::bgr})
    for (ChannelOrder output : {ChannelOrder::rgb, ChannelOrder::bgr})
      for (Layout layout : {Layout::nhwc, Layout::nchw}) {
        SCOPED_TRACE(std::string(to_string(input)) + "->" + to_string(output) + " " +
                     to_string(layout));
        TransformSpec spec;
        spec.mode = Mode::custom;
        spec.mean = mean;
        spec.std = sd;
        spec.matrix = kMatrix;
        Normalizer norm(spec, input, {layout, DType::float32, output});
        EXPECT_TRUE(norm.pixel_map().is_linear());
        EXPECT_EQ(norm.pixel_map().matrix, kMatrix);
        std::vector<float> got(static_cast<std::size_t>(w) * h * 3);
        EXPECT_EQ(norm.apply(img, got.data()), 0);
        std::vector<float> want = matrix_reference(img, mean, sd, kMatrix, input != output, layout);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
      }
}

TEST(normalize, identity_matrix_gives_the_bytes_of_the_table_path) {
  const int w = 16, h = 16;  // every u8 value in every channel
  std::vector<std::uint8_t> px(static_cast<std::size_t>(w) * h * 3);
  for (std::size_t i = 0; i < px.size(); ++i)
    px[i] = static_cast<std::uint8_t>((i / 3) * (1 + 2 * (i % 3)) % 256);
  ImageView img{px.data(), w, h, 3, static_cast<std::size_t>(w) * 3};
  const std::vector<double> identity = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  std::vector<TransformSpec> specs;
  {
    TransformSpec s;
    s.mode = Mode::custom;
    s.mean = {0.5, 0.25, 0.75};
    s.std = {0.2, 0.3, 0.1};
    s.unit = 1;
    specs.push_back(s);
    s.mode = Mode::standardize;
    s.unit = 255;
    s.mean = {120.3, 111.7, 99.1};
    s.std = {61.2, 57.9, 58.8};
    specs.push_back(s);
    s.mean.clear();
    s.std.clear();
    s.mode = Mode::scale;
    s.range = std::make_pair(-1.0, 3.0);
    specs.push_back(s);
    s.range.reset();
    s.mode = Mode::imagenet;
    specs.push_back(s);
    s.mode = Mode::caffe;
    specs.push_back(s);
  }
  for (TransformSpec spec : specs)
    for (Layout layout : {Layout::nhwc, Layout::nchw})
      for (DType dtype : {DType::float32, DType::float16})
        for (ChannelOrder output : {ChannelOrder::rgb, ChannelOrder::bgr}) {
          SCOPED_TRACE(std::string(to_string(spec.mode)) + " " + to_string(layout) + " " +
                       to_string(dtype) + " " + to_string(output));
          OutputFormat f{layout, dtype, output};
          Normalizer table(spec, ChannelOrder::rgb, f);
          spec.matrix = identity;
          Normalizer linear(spec, ChannelOrder::rgb, f);
          spec.matrix.clear();
          ASSERT_TRUE(linear.pixel_map().is_linear());
          const std::size_t bytes = px.size() * dtype_size(dtype);
          std::vector<std::uint8_t> a(bytes), b(bytes);
          table.apply(img, a.data());
          linear.apply(img, b.data());
          EXPECT_EQ(a, b);
        }
}

TEST(normalize, per_image_modes_refuse_a_matrix) {
  for (Mode mode : {Mode::minmax, Mode::per_image, Mode::per_image_channel, Mode::mean_image}) {
    SCOPED_TRACE(to_string(mode));
    TransformSpec spec;
    spec.mode = mode;
    spec.matrix = kMatrix;
    if (mode == Mode::mean_image) {
      spec.mean_image.assign(4 * 4 * 3, 100.0);
      spec.mean_image_size = {4, 4};
    }
    try {
      Normalizer n(spec, ChannelOrder::rgb, {});
      FAIL() << "expected invalid_argument";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("matrix"), std::string::npos) << e.what();
    }
  }
  // Through the job: refused before any row is produced.
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple"}, false);
  NormalizeJob job = job_of(Mode::per_image);
  job.spec.matrix = kMatrix;
  RecordingSink sink;
  try {
    Normalization n(job, ds.root);
    n.prepare(threads(1));
    n.run(sink, threads(1));
    FAIL() << "expected invalid_argument";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  }
  EXPECT_TRUE(sink.calls.empty());
  // A matrix of the wrong size.
  TransformSpec spec;
  spec.mode = Mode::scale;
  spec.matrix = {1, 0, 0, 1};
  EXPECT_THROW({ Normalizer n(spec, ChannelOrder::rgb, {}); }, Error);
}

TEST(normalize, matrix_job_rows_manifest_and_denormalize) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana", "cherry"}, true);
  const std::vector<double> mean = {118.0, 109.5, 101.25}, sd = {59.0, 56.5, 57.75};
  for (Layout layout : {Layout::nhwc, Layout::nchw})
    for (ChannelOrder output : {ChannelOrder::rgb, ChannelOrder::bgr}) {
      SCOPED_TRACE(std::string(to_string(layout)) + " " + to_string(output));
      NormalizeJob job = job_of(Mode::custom);
      job.spec.mean = mean;
      job.spec.std = sd;
      job.spec.matrix = kMatrix;
      job.layout = layout;
      job.channels = output;
      const std::string out =
          tmp.str(std::string("out-") + to_string(layout) + "-" + to_string(output));
      Normalization n(job, ds.root);
      NormalizeResult r = normalize_to_folder(n, out, false, threads(3));
      ASSERT_EQ(r.rows, ds.images.size());
      const bool swap = output != ChannelOrder::rgb;

      // Rows: the formula for each loaded image.
      NpyArray images = read_npy(out + "/images.npy");
      const std::size_t rb = 10 * 12 * 3;
      ASSERT_EQ(images.data.size(), r.rows * rb * sizeof(float));
      for (std::size_t i = 0; i < r.rows; ++i) {
        Image img;
        load_image(r.files[i], small_recipe(), img);
        std::vector<float> want = matrix_reference(img.view(), mean, sd, kMatrix, swap, layout);
        EXPECT_EQ(0, std::memcmp(images.data.data() + i * rb * sizeof(float), want.data(),
                                 rb * sizeof(float)))
            << r.files[i];
      }

      // The manifest records the per-channel maps (input order) and the matrix.
      Manifest m = read_manifest(out + "/manifest.json");
      ASSERT_TRUE(m.maps.has_value());
      EXPECT_EQ(m.maps->matrix, kMatrix);
      EXPECT_EQ(m.input_channels, ChannelOrder::rgb);
      EXPECT_EQ(m.channels, output);
      for (int c = 0; c < 3; ++c) {
        const int k = swap ? 2 - c : c;
        EXPECT_EQ(m.maps->affine.ch[c].m, mean[k]);
        EXPECT_EQ(m.maps->affine.ch[c].s, sd[k]);
      }
      EXPECT_NE(read_bytes(out + "/manifest.json").find("\"matrix\""), std::string::npos);

      // denormalize recovers the loaded pixels exactly, in the tensor's channel order.
      denormalize(out + "/images.npy", "", out + "/u8.npy", false);
      NpyArray u8 = read_npy(out + "/u8.npy");
      ASSERT_EQ(u8.header.shape, (std::vector<std::uint64_t>{r.rows, 10, 12, 3}));
      for (std::size_t i = 0; i < r.rows; ++i) {
        Image img;
        load_image(r.files[i], small_recipe(), img);
        if (swap)
          for (std::size_t p = 0; p < img.size_bytes(); p += 3)
            std::swap(img.data()[p], img.data()[p + 2]);
        EXPECT_EQ(0, std::memcmp(u8.data.data() + i * rb, img.data(), rb)) << r.files[i];
      }
      EXPECT_TRUE(temp_files(out).empty());
    }
}

// --- arrays of images outside a job (the Python Normalizer) ----------------------------------

TEST(normalize, normalize_rows_equals_the_job_for_every_thread_count) {
  const int n = 9, h = 5, w = 7;
  std::vector<std::uint8_t> px = test_pixels(w, h * n, 3, 23);
  std::vector<double> values(px.begin(), px.end());
  for (Mode mode : {Mode::custom, Mode::per_image, Mode::minmax, Mode::imagenet}) {
    for (Layout layout : {Layout::nhwc, Layout::nchw}) {
      SCOPED_TRACE(std::string(to_string(mode)) + " " + to_string(layout));
      NormalizeJob job;
      job.spec.mode = mode;
      if (mode == Mode::custom) job.spec.mean = {100, 120, 140};
      job.layout = layout;
      NormalizeInput in;
      in.source = "memory";
      in.array = ImageArray::from_memory(px.data(), DType::uint8, n, h, w, 3);
      Normalization job_run(job, std::move(in));
      job_run.prepare(threads(2));
      MemorySink sink;
      const NormalizeResult r = job_run.run(sink, threads(2));

      const Normalizer norm = make_normalizer(job, {w, h});
      const ImageArray u8 = ImageArray::from_memory(px.data(), DType::uint8, n, h, w, 3);
      const ImageArray f64 = ImageArray::from_memory(values.data(), DType::float64, n, h, w, 3);
      for (int t : {1, 2, 5}) {
        std::vector<std::uint8_t> out(sink.data().size());
        std::vector<Affine> maps;
        const std::uint64_t constant = normalize_rows(norm, u8, out.data(), t, &maps);
        EXPECT_EQ(out, sink.data()) << "threads " << t;
        EXPECT_EQ(constant, r.constant_channels);
        EXPECT_EQ(maps.size(), is_per_image(mode) ? static_cast<std::size_t>(n) : 0u);
        if (!is_per_image(mode)) {  // float input: the same bits for dataset-level modes
          std::vector<std::uint8_t> from_values(out.size());
          normalize_rows(norm, f64, from_values.data(), t);
          EXPECT_EQ(from_values, out) << "float64, threads " << t;
        }
      }
    }
  }
}

TEST(normalize, make_normalizer_refuses_fit_and_checks_channels) {
  NormalizeJob job;
  job.spec.mode = Mode::standardize;
  job.fit = true;
  EXPECT_THROW(make_normalizer(job, {4, 4}), Error);
  job.fit = false;
  EXPECT_THROW(make_normalizer(job, {4, 4}), Error);  // standardize needs statistics
  job.spec.mode = Mode::scale;
  const Normalizer norm = make_normalizer(job, {4, 4});
  std::vector<std::uint8_t> gray(16, 255);
  std::vector<float> out(16);
  const ImageArray one = ImageArray::from_memory(gray.data(), DType::uint8, 1, 4, 4, 1);
  try {
    normalize_rows(norm, one, out.data());
    FAIL() << "a gray array through an RGB normalizer must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("channels"), std::string::npos) << e.what();
  }
}

TEST(normalize, output_folder_spelled_with_a_trailing_slash) {
  // The README's own example writes `-o test_out/`: a new folder named with a trailing slash.
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana"}, false);
  NormalizeJob job = job_of(Mode::scale);
  Normalization n(job, ds.root);
  const std::string out = tmp.str("out") + "/";
  const NormalizeResult r = normalize_to_folder(n, out, false, threads(2));
  EXPECT_EQ(read_npy(tmp.str("out") + "/images.npy").header.shape[0], r.rows);
  Normalization again(job, ds.root);
  EXPECT_THROW(normalize_to_folder(again, out + "/", false, threads(2)), Error);  // exists: --force
  Normalization forced(job, ds.root);
  EXPECT_EQ(normalize_to_folder(forced, out + "/", true, threads(2)).rows, r.rows);
}
