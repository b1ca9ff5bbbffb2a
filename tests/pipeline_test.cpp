#include "imgnorm/pipeline.hpp"
#include "imgnorm/stats_job.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgproc.hpp>
#include <random>

#include "imgnorm/resize.hpp"

using namespace imgnorm;
namespace fs = std::filesystem;

namespace {

const std::string kFlowers = std::string(IMGNORM_SOURCE_DIR) + "/examples/flowers";

StatsFile stats_of(const Dataset& ds, int threads, StatsJob job = {}) {
  PipelineOptions o;
  o.threads = threads;
  return compute_stats(ds, job, o, "test");
}

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/imgnorm-pipeline-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST(pipeline, stats_identical_whatever_the_thread_count) {
  Dataset ds = scan_folder(kFlowers);
  ASSERT_EQ(ds.entries.size(), 40u);
  StatsJob job;
  job.recipe.size = {64, 64};
  std::string one = to_json(stats_of(ds, 1, job));
  EXPECT_EQ(one, to_json(stats_of(ds, 2, job)));
  EXPECT_EQ(one, to_json(stats_of(ds, 8, job)));
}

TEST(pipeline, merged_shards_equal_the_single_run) {
  Dataset ds = scan_folder(kFlowers);
  StatsJob job;
  job.recipe.size = {48, 32};
  StatsFile whole = stats_of(ds, 2, job);
  StatsFile merged;
  for (int i = 0; i < 4; ++i) {
    Dataset part = ds;
    keep_shard(part, i, 4);
    StatsJob sj = job;
    sj.shard_index = i;
    sj.shard_count = 4;
    sj.selection = selection_digest(ds);  // what select_dataset records
    sj.selection_files = ds.entries.size();
    StatsFile s = stats_of(part, 2, sj);
    if (i == 0)
      merged = std::move(s);
    else
      merge_into(merged, s);
  }
  EXPECT_EQ(merged.shard_count, 1);  // all 4 shards: the whole selection, as the single run
  EXPECT_EQ(to_json(whole), to_json(merged));
  EXPECT_EQ(whole.acc, merged.acc);
}

TEST(pipeline, results_reach_the_serial_stage_in_order) {
  Dataset ds = scan_folder(kFlowers);
  std::vector<std::size_t> seen;
  std::atomic<int> processed{0};
  PipelineOptions o;
  o.threads = 2;
  o.tokens = 3;
  Recipe r;
  r.size = {16, 16};
  run_pipeline(
      ds.entries, r, o,
      [&](const LoadedImage& li) {
        ASSERT_GE(li.slot, 0);
        ASSERT_LT(li.slot, 3);
        ASSERT_EQ(li.image.width, 16);
        ++processed;
      },
      [&](std::size_t index, int, const Error* e) {
        EXPECT_EQ(e, nullptr);
        seen.push_back(index);
      });
  ASSERT_EQ(seen.size(), ds.entries.size());
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i);
  EXPECT_EQ(processed.load(), static_cast<int>(ds.entries.size()));
}

TEST(pipeline, cancel_stops_with_interrupted) {
  Dataset ds = scan_folder(kFlowers);
  std::atomic<bool> cancel{true};
  PipelineOptions o;
  o.cancel = &cancel;
  try {
    run_pipeline(
        ds.entries, Recipe{}, o, [](const LoadedImage&) {}, [](std::size_t, int, const Error*) {});
    FAIL() << "expected interrupted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted);
  }
}

TEST(pipeline, bad_files_are_skipped_with_reasons_and_do_not_change_the_stats) {
  TempDir good, mixed;
  Dataset src = scan_folder(kFlowers);
  for (const char* dir : {"a", "b"}) {
    fs::create_directories(good.path / dir);
    fs::create_directories(mixed.path / dir);
  }
  for (int i = 0; i < 6; ++i) {
    const char* cls = i % 2 ? "b" : "a";
    fs::path name = fs::path(src.entries[i * 5].path).filename();
    fs::copy_file(src.entries[i * 5].path, good.path / cls / name);
    fs::copy_file(src.entries[i * 5].path, mixed.path / cls / name);
  }
  std::string jpeg = read_bytes(src.entries[1].path);
  write_bytes(mixed.path / "a" / "empty.jpg", "");
  write_bytes(mixed.path / "a" / "page.jpg", "<html><body>404 not found</body></html>");
  write_bytes(mixed.path / "b" / "truncated.jpg", jpeg.substr(0, jpeg.size() / 2));

  StatsJob job;
  job.recipe.size = {32, 32};
  StatsFile ref = stats_of(scan_folder(good.path), 2, job);
  StatsFile got = stats_of(scan_folder(mixed.path), 2, job);
  ASSERT_EQ(got.skipped.size(), 3u);
  EXPECT_EQ(got.files_found, 9u);
  EXPECT_EQ(got.acc.images(), 6u);
  for (const Skipped& s : got.skipped) {
    EXPECT_FALSE(s.reason.empty());
    EXPECT_EQ(s.reason.find(s.path), std::string::npos) << "reason repeats the path: " << s.reason;
  }
  EXPECT_NE(got.skipped[0].path.find("empty.jpg"), std::string::npos);
  EXPECT_NE(got.skipped[2].path.find("truncated.jpg"), std::string::npos);
  EXPECT_EQ(got.skipped[2].code, ErrorCode::corrupt);
  EXPECT_EQ(got.acc, ref.acc);
}

TEST(pipeline, exact_decode_load_equals_decode_then_cv_resize) {
  Dataset ds = scan_folder(kFlowers);
  Recipe r;
  r.size = {224, 224};
  r.exact_decode = true;
  for (int i = 0; i < 40; i += 7) {
    Image got;
    load_image(ds.entries[i].path, r, got);
    DecodeOptions o;
    Image full = decode_file(ds.entries[i].path, o);
    cv::Mat ref;
    cv::resize(cv::Mat(full.height(), full.width(), CV_8UC3, full.data()), ref, cv::Size(224, 224));
    ASSERT_EQ(0, std::memcmp(got.data(), ref.data, got.size_bytes())) << ds.entries[i].path;
  }
}

TEST(pipeline, dct_prescale_keeps_at_least_the_target_size) {
  Dataset ds = scan_folder(kFlowers);
  Recipe r;
  r.size = {64, 64};
  int scaled = 0;
  for (const Entry& e : ds.entries) {
    Image out;
    DecodeInfo info;
    load_image(e.path, r, out, &info);
    ASSERT_EQ(out.width(), 64);
    if (info.format == Format::jpeg) {
      EXPECT_GE((info.width + info.scale_denom - 1) / info.scale_denom, 64) << e.path;
      EXPECT_GE((info.height + info.scale_denom - 1) / info.scale_denom, 64) << e.path;
      scaled += info.scale_denom > 1;
    }
  }
  EXPECT_GT(scaled, 20) << "320-400 px photos at 64 should decode at 1/4";
}

// The 95% interval of a sample's mean should cover the full-dataset mean about 95% of the time.
// Population: 600 random 12x12 crops of the sample photographs (one "image" each); draws with
// fixed seeds, so the test is deterministic.
TEST(pipeline, sample_confidence_interval_covers_the_full_mean) {
  Dataset ds = scan_folder(kFlowers);
  std::vector<Image> photos;
  for (const Entry& e : ds.entries) photos.push_back(decode_file(e.path));
  std::mt19937 rng(5);
  const int kPop = 600, kCrop = 12;
  std::vector<Accumulator> units;
  Accumulator all(3);
  for (int i = 0; i < kPop; ++i) {
    const Image& p = photos[rng() % photos.size()];
    int x = rng() % (p.width() - kCrop), y = rng() % (p.height() - kCrop);
    ImageView v = p.view();
    v.data = p.data() + y * v.stride + x * 3;
    v.width = v.height = kCrop;
    Accumulator a(3);
    a.add(v);
    all.add(v);
    units.push_back(std::move(a));
  }
  const Summary truth = summarize(all);
  const int kDraws = 600, kSample = 60;
  int mean_cover = 0, std_cover = 0, total = 0;
  for (int seed = 0; seed < kDraws; ++seed) {
    Accumulator s(3);
    for (std::size_t i : sample_indices(kPop, kSample, seed)) s.merge(units[i]);
    SampleInfo info{kPop, kSample, static_cast<std::uint64_t>(seed), "60"};
    Summary got = summarize(s, 0, &info);
    for (int c = 0; c < 3; ++c) {
      ASSERT_TRUE(got.channel[c].mean_ci && got.channel[c].std_ci);
      mean_cover += got.channel[c].mean_ci->lo <= truth.channel[c].mean &&
                    truth.channel[c].mean <= got.channel[c].mean_ci->hi;
      std_cover += got.channel[c].std_ci->lo <= truth.channel[c].std &&
                   truth.channel[c].std <= got.channel[c].std_ci->hi;
      ++total;
    }
  }
  double mean_rate = static_cast<double>(mean_cover) / total;
  double std_rate = static_cast<double>(std_cover) / total;
  EXPECT_GT(mean_rate, 0.91);
  EXPECT_LT(mean_rate, 0.985);
  EXPECT_GT(std_rate, 0.88);
  EXPECT_LT(std_rate, 0.99);
  std::printf("coverage: mean %.3f, std %.3f over %d intervals\n", mean_rate, std_rate, total);
}
