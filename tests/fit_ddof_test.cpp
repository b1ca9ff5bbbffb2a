// normalize --fit --ddof N (issue 13): the fitted statistics use the job's ddof — the saved
// stats.json is the bytes `imgnorm stats --ddof N` writes, in one process and over ranks (threads,
// tests/thread_communicator.hpp) —, the map uses the sample std, the manifest records the ddof;
// --ddof without --fit, with a stats file, out of range or with too few values is refused.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>

#include "imgnorm/distributed.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/npy.hpp"
#include "test_files.hpp"
#include "thread_communicator.hpp"

namespace imgnorm {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

// 7 PNGs of different sizes in 2 classes.
void make_dataset(const fs::path& root) {
  unsigned seed = 11;
  for (const char* c : {"a", "b"}) {
    fs::create_directories(root / c);
    for (int i = 0; i < (c[0] == 'a' ? 4 : 3); ++i)
      testing::write_png(root / c / ("img" + std::to_string(i) + ".png"), 9 + i * 3, 8 + i, 3,
                         seed++);
  }
}

PipelineOptions one_thread() {
  PipelineOptions o;
  o.threads = 1;
  return o;
}

NormalizeJob fit_job(Mode mode, std::optional<int> ddof, const std::string& save) {
  NormalizeJob job;
  job.spec.mode = mode;
  job.recipe.size = Size{4, 3};
  job.fit = true;
  job.ddof = ddof;
  job.save_stats = save;
  return job;
}

// What `imgnorm stats DATA --size 4x3 --ddof N -o path` writes.
void write_stats(const std::string& data, int ddof, const std::string& path) {
  SelectOptions sel;
  sel.folder = data;
  StatsJob job;
  job.recipe.size = Size{4, 3};
  job.ddof = ddof;
  write_outputs(compute_stats(select_dataset(sel), job, one_thread()), {path, "", false});
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(fit_ddof, saved_statistics_are_the_bytes_of_stats_with_the_same_ddof) {
  TempDir dir;
  make_dataset(dir.path / "data");
  for (int ddof : {0, 1}) {
    SCOPED_TRACE("ddof " + std::to_string(ddof));
    const std::string ref = dir.str("ref" + std::to_string(ddof) + ".json");
    write_stats(dir.str("data"), ddof, ref);
    // zca-channels and standardize: the covariance and the std of the fit.
    for (Mode mode : {Mode::standardize, Mode::zca_channels}) {
      const std::string saved = dir.str("fit.json"), out = dir.str("out");
      Normalization n(fit_job(mode, ddof, saved), dir.str("data"));
      normalize_to_folder(n, out, true, one_thread());
      EXPECT_EQ(testing::read_bytes(saved), testing::read_bytes(ref)) << to_string(mode);
      const Manifest m = read_manifest(out + "/manifest.json");
      EXPECT_TRUE(m.fit);
      EXPECT_EQ(m.ddof, ddof);
      fs::remove(saved);
    }
  }
  // Unset is 0: the file of stats without --ddof.
  Normalization n(fit_job(Mode::standardize, std::nullopt, dir.str("fit.json")), dir.str("data"));
  normalize_to_folder(n, dir.str("out"), true, one_thread());
  EXPECT_EQ(testing::read_bytes(dir.str("fit.json")), testing::read_bytes(dir.str("ref0.json")));
  EXPECT_EQ(read_manifest(dir.str("out/manifest.json")).ddof, 0);
}

TEST(fit_ddof, the_map_divides_by_the_sample_std) {
  TempDir dir;
  make_dataset(dir.path / "data");
  write_stats(dir.str("data"), 1, dir.str("ref1.json"));
  const StatsFile ref = read_stats_file(dir.str("ref1.json"));
  const Summary s = summarize(ref.acc, 1);
  Normalization n(fit_job(Mode::standardize, 1, ""), dir.str("data"));
  normalize_to_folder(n, dir.str("out"), false, one_thread());
  const Manifest m = read_manifest(dir.str("out/manifest.json"));
  ASSERT_EQ(m.dataset_std.size(), 3u);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(m.dataset_std[c], s.channel[c].std) << c;
    // n/(n−1) apart from the population std.
    const double n_pixels = static_cast<double>(ref.acc.pixels());
    EXPECT_NEAR(m.dataset_std[c],
                summarize(ref.acc, 0).channel[c].std * std::sqrt(n_pixels / (n_pixels - 1)),
                1e-9 * m.dataset_std[c]);
  }
  // The same rows as --stats with the ddof-1 file.
  NormalizeJob with_stats;
  with_stats.spec.mode = Mode::standardize;
  with_stats.stats_path = dir.str("ref1.json");
  Normalization t(with_stats, dir.str("data"));
  normalize_to_folder(t, dir.str("out_stats"), false, one_thread());
  EXPECT_EQ(read_npy(dir.str("out/images.npy")).data,
            read_npy(dir.str("out_stats/images.npy")).data);
  EXPECT_EQ(read_manifest(dir.str("out_stats/manifest.json")).ddof, 1) << "the stats file's";
}

TEST(fit_ddof, ranks_fit_with_the_ddof_and_save_what_stats_writes) {
  TempDir dir;
  make_dataset(dir.path / "data");
  write_stats(dir.str("data"), 1, dir.str("ref1.json"));
  Normalization one(fit_job(Mode::zca_channels, 1, ""), dir.str("data"));
  normalize_to_folder(one, dir.str("single"), false, one_thread());
  for (int k : {1, 3}) {
    std::string out = "k";
    out += std::to_string(k);
    const std::string saved = dir.str(out + ".json");
    thread_ranks::run_ranks(k, [&](Communicator& comm) {
      Normalization n(fit_job(Mode::zca_channels, 1, saved), open_input(comm, dir.str("data")));
      normalize_to_folder(comm, n, dir.str(out), false, one_thread());
    });
    EXPECT_EQ(testing::read_bytes(saved), testing::read_bytes(dir.str("ref1.json")))
        << k << " ranks";
    EXPECT_EQ(read_npy(dir.str(out + "/images.npy")).data,
              read_npy(dir.str("single/images.npy")).data)
        << k << " ranks";
    EXPECT_EQ(read_manifest(dir.str(out + "/manifest.json")).ddof, 1) << k << " ranks";
  }
}

TEST(fit_ddof, refusals_name_the_reason) {
  TempDir dir;
  make_dataset(dir.path / "data");
  write_stats(dir.str("data"), 0, dir.str("ref0.json"));
  const std::string data = dir.str("data");
  for (int bad : {-1, 2})
    EXPECT_EQ(message_of([&] { Normalization(fit_job(Mode::standardize, bad, ""), data); }),
              "--ddof " + std::to_string(bad) +
                  ": must be 0 (population, numpy's default) or 1 (sample)");
  NormalizeJob no_fit;
  no_fit.spec.mode = Mode::scale;
  no_fit.ddof = 1;
  EXPECT_EQ(message_of([&] { Normalization(no_fit, data); }),
            "--ddof needs --fit (it sets the ddof of the statistics --fit computes)");
  NormalizeJob with_stats;
  with_stats.stats_path = dir.str("ref0.json");
  with_stats.ddof = 0;  // even the value the file has: the file decides
  EXPECT_EQ(message_of([&] { Normalization(with_stats, data); }),
            dir.str("ref0.json") +
                ": the statistics' own ddof (0) applies; --ddof is for --fit only (for another "
                "ddof, recompute them with imgnorm stats --ddof N)");
  // A Stats object (Python's stats=) instead of a file.
  with_stats.stats = read_stats_file(dir.str("ref0.json"));
  with_stats.stats_path.clear();
  EXPECT_EQ(message_of([&] { Normalization(with_stats, data); }),
            "the statistics: the statistics' own ddof (0) applies; --ddof is for --fit only (for "
            "another ddof, recompute them with imgnorm stats --ddof N)");
  with_stats.ddof.reset();
  EXPECT_NO_THROW(Normalization(with_stats, data));

  // n <= ddof: one image for the pixel covariance, one patch, one pixel.
  fs::create_directories(dir.path / "one");
  testing::write_png(dir.path / "one" / "x.png", 5, 5, 3, 3);
  const std::string one = dir.str("one");
  auto fit_one = [&](Mode mode, Size size) {
    NormalizeJob job = fit_job(mode, 1, "");
    job.recipe.size = size;
    if (mode == Mode::zca_patch) job.spec.patch = 3;
    Normalization n(job, one);
    n.prepare(one_thread());
  };
  EXPECT_EQ(message_of([&] {
              fit_one(Mode::zca, Size{2, 2});
            }),
            one +
                ": --fit --ddof 1: the pixel covariance of --mode zca needs at least 2 images, "
                "the input has 1");
  EXPECT_EQ(message_of([&] {
              fit_one(Mode::zca_patch, Size{3, 3});
            }),
            one +
                ": --fit --ddof 1: the patch covariance of --mode zca-patch needs at least 2 "
                "patches, the input has 1");
  EXPECT_EQ(message_of([&] {
              fit_one(Mode::standardize, Size{1, 1});
            }),
            one + ": --fit --ddof 1: the channel std needs at least 2 pixels, the input has 1");
  // With ddof 0 the same inputs fit.
  NormalizeJob zero = fit_job(Mode::standardize, 0, "");
  zero.recipe.size = Size{1, 1};
  zero.spec.eps = 1.0;  // a single pixel has std 0
  Normalization z(zero, one);
  EXPECT_NO_THROW(z.prepare(one_thread()));
}

TEST(fit_ddof, manifest_round_trip_and_bad_values) {
  Manifest m;
  m.fit = true;
  m.ddof = 1;
  m.shape = {0, 1, 1, 3};
  const std::string text = to_json(m);
  EXPECT_NE(text.find("\"fit\": true,\n  \"ddof\": 1,"), std::string::npos) << text;
  EXPECT_EQ(manifest_from_json(text).ddof, 1);
  EXPECT_EQ(to_json(manifest_from_json(text)), text);
  m.ddof.reset();
  const std::string none = to_json(m);
  EXPECT_NE(none.find("\"ddof\": null,"), std::string::npos) << none;
  EXPECT_FALSE(manifest_from_json(none).ddof.has_value());
  std::string bad = text;
  bad.replace(bad.find("\"ddof\": 1"), 9, "\"ddof\": 2");
  EXPECT_EQ(message_of([&] { manifest_from_json(bad); }), "field 'ddof' must be 0 or 1");
}

}  // namespace
}  // namespace imgnorm
