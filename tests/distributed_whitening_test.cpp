// normalize --mode zca|pca over K "ranks" (threads sharing an in-process Communicator, as
// distributed_test): the whitening matrix is rank 0's, broadcast, and the committed set (rows,
// labels, manifest.json, whitening.npy) equals a single-process run's byte for byte, with --stats
// and with --fit, as one images.npy or as shards. And the agreement before prepare()'s collective
// steps: one rank failing a check of its own before the --fit pass (or before the whitening
// matrix is shared) fails every rank with its message instead of leaving them waiting.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "imgnorm/distributed.hpp"
#include "imgnorm/npy.hpp"
#include "test_files.hpp"
#include "thread_communicator.hpp"

namespace imgnorm {
namespace {

using testing::TempDir;
using thread_ranks::run_ranks;

// 9 PNGs in 2 classes and one broken file (the first of class b).
void make_dataset(const std::filesystem::path& root, int width, int height) {
  for (const char* c : {"a", "b"}) std::filesystem::create_directories(root / c);
  unsigned seed = 7;
  for (const char* c : {"a", "b"})
    for (int i = 0; i < (c[0] == 'a' ? 5 : 4); ++i)
      testing::write_png(root / c / ("img" + std::to_string(i) + ".png"), width, height, 3, seed++);
  testing::write_bytes(root / "b" / "0_broken.png", "not a png");
}

PipelineOptions quiet(int threads = 2) {
  PipelineOptions o;
  o.threads = threads;
  return o;
}

// run_ranks, but a run that does not end within a minute (ranks left waiting in a collective
// call) fails the test program instead of hanging it.
void run_ranks_or_fail(int ranks, const std::function<void(Communicator&)>& body) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(m);
    if (!cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; })) {
      std::fprintf(stderr, "FAILED: the ranks are still waiting after 60 s (a rank left)\n");
      std::_Exit(1);
    }
  });
  try {
    run_ranks(ranks, body);
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(m);
      done = true;
    }
    cv.notify_all();
    watchdog.join();
    throw;
  }
  {
    std::lock_guard<std::mutex> lock(m);
    done = true;
  }
  cv.notify_all();
  watchdog.join();
}

std::size_t entries_in(const std::string& dir) {
  return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
}

// The single-process set of `job` and the set of 1 to 4 ranks, member by member.
void expect_same_sets(const NormalizeJob& job, const std::string& data, const std::string& root) {
  std::filesystem::create_directories(root);
  Normalization one(job, data);
  normalize_to_folder(one, root + "/single", false, quiet());
  ASSERT_EQ(entries_in(root + "/single"), 4u);
  for (int k = 1; k <= 4; ++k) {
    const std::string out = root + "/k" + std::to_string(k);
    run_ranks_or_fail(k, [&](Communicator& comm) {
      Normalization n(job, open_input(comm, data));
      const NormalizeResult r = normalize_to_folder(comm, n, out, false, quiet(1));
      if (comm.rank() == 0) {
        EXPECT_EQ(r.rows, 9u);
      }
    });
    for (const char* f : {"images.npy", "labels.npy", "manifest.json", "whitening.npy"})
      EXPECT_EQ(testing::read_bytes(out + "/" + f), testing::read_bytes(root + "/single/" + f))
          << k << " ranks: " << f;
    EXPECT_EQ(entries_in(out), 4u) << k << " ranks: no temporary";
  }
}

StatsFile pixel_stats(const std::string& data, Size size) {
  SelectOptions sel;
  sel.folder = data;
  StatsJob sj;
  sj.recipe.size = size;
  sj.pixel_covariance = true;
  return compute_stats(select_dataset(sel), sj, quiet());
}

TEST(distributed_whitening, zca_with_stats_equals_a_single_run_for_1_to_4_ranks) {
  TempDir dir;
  make_dataset(dir.path / "data", 9, 7);
  NormalizeJob job;
  job.spec.mode = Mode::zca;
  job.recipe.size = Size{5, 4};  // D = 60
  job.stats = pixel_stats(dir.str("data"), Size{5, 4});
  expect_same_sets(job, dir.str("data"), dir.str("zca"));
}

TEST(distributed_whitening, pca_components_with_fit_equals_a_single_run_for_1_to_4_ranks) {
  TempDir dir;
  make_dataset(dir.path / "data", 9, 7);
  NormalizeJob job;
  job.spec.mode = Mode::pca;
  job.spec.components = 7;
  job.fit = true;
  job.recipe.size = Size{4, 4};  // D = 48
  expect_same_sets(job, dir.str("data"), dir.str("pca"));
}

TEST(distributed_whitening, shards_carry_whitening_npy_and_the_single_runs_rows) {
  TempDir dir;
  make_dataset(dir.path / "data", 9, 7);
  NormalizeJob job;
  job.spec.mode = Mode::zca;
  job.fit = true;
  job.recipe.size = Size{4, 3};
  Normalization one(job, dir.str("data"));
  normalize_to_folder(one, dir.str("single"), false, quiet());
  const NpyArray single = read_npy(dir.str("single/images.npy"));
  const std::string out = dir.str("shards");
  run_ranks_or_fail(3, [&](Communicator& comm) {
    Normalization n(job, open_input(comm, dir.str("data")));
    normalize_to_folder(comm, n, out, false, quiet(1), true);
  });
  EXPECT_EQ(testing::read_bytes(out + "/whitening.npy"),
            testing::read_bytes(dir.str("single/whitening.npy")));
  std::vector<std::uint8_t> rows;
  for (int r = 0; r < 3; ++r) {
    const NpyArray shard = read_npy(out + "/images-0000" + std::to_string(r) + ".npy");
    rows.insert(rows.end(), shard.data.begin(), shard.data.end());
  }
  EXPECT_EQ(rows, single.data);
  const std::string manifest = testing::read_bytes(out + "/manifest.json");
  EXPECT_NE(manifest.find("\"whitening\": \"whitening.npy\""), std::string::npos) << manifest;
  EXPECT_EQ(entries_in(out), 8u) << "3 shards, 3 label shards, manifest.json, whitening.npy";
}

// Rank 1 stops before the fit (its cancel flag stands for any failure of its own there, as an
// I/O error on the first image --resize none reads): the others are already in the fit's
// agreement and fail with rank 1's message; nothing is written.
TEST(distributed_whitening, one_rank_failing_before_the_fit_fails_every_rank) {
  TempDir dir;
  make_dataset(dir.path / "data", 6, 5);
  for (Mode mode : {Mode::standardize, Mode::zca}) {
    NormalizeJob job;
    job.spec.mode = mode;
    job.fit = true;
    job.recipe.resize = ResizeMode::none;
    const std::atomic<bool> stop{true};
    std::vector<std::string> seen(3);
    run_ranks_or_fail(3, [&](Communicator& comm) {
      Normalization n(job, open_input(comm, dir.str("data")));
      PipelineOptions o = quiet(1);
      if (comm.rank() == 1) o.cancel = &stop;
      try {
        normalize_to_folder(comm, n, dir.str("out"), false, o);
      } catch (const SharedError& e) {
        seen[static_cast<std::size_t>(comm.rank())] = e.what();
      }
    });
    for (const auto& s : seen) EXPECT_EQ(s, "rank 1: interrupted") << to_string(mode);
    EXPECT_FALSE(std::filesystem::exists(dir.path / "out"));
  }
}

// Without --fit, zca's one collective step in prepare() is the matrix from rank 0.
TEST(distributed_whitening, one_rank_failing_before_the_matrix_is_shared_fails_every_rank) {
  TempDir dir;
  make_dataset(dir.path / "data", 6, 5);
  NormalizeJob job;
  job.spec.mode = Mode::zca;
  job.recipe.resize = ResizeMode::none;
  job.stats = pixel_stats(dir.str("data"), Size{6, 5});
  const std::atomic<bool> stop{true};
  std::vector<std::string> seen(3);
  run_ranks_or_fail(3, [&](Communicator& comm) {
    Normalization n(job, open_input(comm, dir.str("data")));
    PipelineOptions o = quiet(1);
    if (comm.rank() == 2) o.cancel = &stop;
    try {
      normalize_to_folder(comm, n, dir.str("out"), false, o);
    } catch (const SharedError& e) {
      seen[static_cast<std::size_t>(comm.rank())] = e.what();
    }
  });
  for (const auto& s : seen) EXPECT_EQ(s, "rank 2: interrupted");
  EXPECT_FALSE(std::filesystem::exists(dir.path / "out"));
}

// A given matrix of the wrong size is refused, naming both sizes.
TEST(distributed_whitening, a_given_matrix_must_fit_the_mean) {
  TransformSpec spec;
  spec.mode = Mode::zca;
  spec.pixel_mean.assign(12, 100.0);
  spec.whitening.assign(12 * 11, 0.0);
  try {
    Normalizer n(spec, ChannelOrder::rgb, OutputFormat{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "--mode zca: a given whitening matrix of 132 values, not the 12 x D = 12 the "
                 "per-pixel mean and --components give");
  }
  spec.mode = Mode::standardize;
  spec.pixel_mean.clear();
  spec.mean = {1, 2, 3};
  spec.std = {1, 1, 1};
  EXPECT_THROW(Normalizer(spec, ChannelOrder::rgb, OutputFormat{}), Error);
}

}  // namespace
}  // namespace imgnorm
