// The distributed jobs (include/imgnorm/distributed.hpp) without MPI: K "ranks" as K threads
// sharing an in-process Communicator. The results must equal a single-process run byte for byte,
// whatever K, with broken files in different blocks and blocks without files.

#include "imgnorm/distributed.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "imgnorm/npy.hpp"
#include "test_files.hpp"
#include "thread_communicator.hpp"

namespace imgnorm {
namespace {

using testing::TempDir;
using thread_ranks::run_ranks;

// 11 PNGs in 3 classes and 2 broken files (the first of class b, the last of class c).
void make_dataset(const std::filesystem::path& root) {
  for (const char* c : {"a", "b", "c"}) std::filesystem::create_directories(root / c);
  unsigned seed = 1;
  for (const char* c : {"a", "b", "c"})
    for (int i = 0; i < (c[0] == 'b' ? 3 : 4); ++i)
      testing::write_png(root / c / ("img" + std::to_string(i) + ".png"), 20 + i * 3, 17 + i, 3,
                         seed++);
  testing::write_bytes(root / "b" / "0_broken.png", "not a png");
  testing::write_bytes(root / "c" / "zz_broken.png", "\x89PNG\r\n\x1a\n truncated");
}

PipelineOptions quiet(int threads = 2) {
  PipelineOptions o;
  o.threads = threads;
  return o;
}

TEST(distributed, rank_blocks_cover_the_files_in_order) {
  for (std::size_t n : {0, 1, 3, 10, 13})
    for (int k = 1; k <= 5; ++k) {
      std::size_t next = 0;
      for (int r = 0; r < k; ++r) {
        auto [lo, hi] = rank_block(n, r, k);
        EXPECT_EQ(lo, next);
        EXPECT_LE(hi - lo, n / k + 1);
        EXPECT_GE(hi - lo, n / k);
        next = hi;
      }
      EXPECT_EQ(next, n);
    }
}

TEST(distributed, stats_equal_a_single_run_for_1_to_5_ranks) {
  TempDir dir;
  make_dataset(dir.path / "data");
  SelectOptions sel;
  sel.folder = dir.str("data");
  StatsJob job;
  job.recipe.size = {12, 10};
  job.mean_image = true;
  const StatsFile single = compute_stats(select_dataset(sel), job, quiet());
  ASSERT_EQ(single.skipped.size(), 2u);
  for (int k = 1; k <= 5; ++k) {
    StatsFile got;
    run_ranks(k, [&](Communicator& comm) {
      StatsFile st = compute_stats(comm, select_dataset(comm, sel), job, quiet(1));
      if (comm.rank() == 0) got = std::move(st);
    });
    EXPECT_EQ(to_json(got), to_json(single)) << k << " ranks";
    EXPECT_TRUE(got.acc == single.acc) << k << " ranks (mean image sums included)";
  }
}

TEST(distributed, sampled_stats_equal_a_single_run) {
  TempDir dir;
  make_dataset(dir.path / "data");
  SelectOptions sel;
  sel.folder = dir.str("data");
  sel.sample = "7";
  sel.seed = 3;
  StatsJob job;
  job.recipe.size = {9, 9};
  const StatsFile single = compute_stats(select_dataset(sel), job, quiet());
  StatsFile got;
  run_ranks(3, [&](Communicator& comm) {
    StatsFile st = compute_stats(comm, select_dataset(comm, sel), job, quiet(1));
    if (comm.rank() == 0) got = std::move(st);
  });
  EXPECT_EQ(to_json(got), to_json(single));
}

TEST(distributed, normalize_equals_a_single_run_for_1_to_5_ranks) {
  TempDir dir;
  make_dataset(dir.path / "data");
  NormalizeJob job;
  job.spec.mode = Mode::per_image;  // per-row maps travel to rank 0 too
  job.recipe.size = Size{8, 6};
  Normalization one(job, dir.str("data"));
  normalize_to_folder(one, dir.str("single"), false, quiet());
  for (int k = 1; k <= 5; ++k) {
    const std::string out = dir.str("k" + std::to_string(k));
    run_ranks(k, [&](Communicator& comm) {
      Normalization n(job, open_input(comm, dir.str("data")));
      NormalizeResult r = normalize_to_folder(comm, n, out, false, quiet(1));
      if (comm.rank() == 0) {
        EXPECT_EQ(r.rows, 11u);
      }
    });
    for (const char* f : {"images.npy", "labels.npy", "manifest.json"})
      EXPECT_EQ(testing::read_bytes(out + "/" + f), testing::read_bytes(dir.str("single/") + f))
          << k << " ranks: " << f;
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(out), {}), 3) << "no temporary";
  }
}

TEST(distributed, every_file_broken_is_one_shared_error_and_no_output) {
  TempDir dir;
  std::filesystem::create_directories(dir.path / "data" / "a");
  testing::write_bytes(dir.path / "data" / "a" / "x.png", "no");
  testing::write_bytes(dir.path / "data" / "a" / "y.png", "no");
  NormalizeJob job;
  job.spec.mode = Mode::scale;
  job.recipe.size = Size{4, 4};
  try {
    run_ranks(3, [&](Communicator& comm) {
      Normalization n(job, open_input(comm, dir.str("data")));
      normalize_to_folder(comm, n, dir.str("out"), false, quiet(1));
    });
    FAIL() << "expected an error";
  } catch (const SharedError& e) {
    EXPECT_EQ(e.code(), ErrorCode::empty);
    EXPECT_STREQ(e.what(), "no image could be used: all 2 files were skipped");
  }
  // The temporary is removed, and the folder the run created (OutputFolder).
  EXPECT_FALSE(std::filesystem::exists(dir.path / "out"));
}

TEST(distributed, one_rank_error_is_every_rank_error) {
  std::vector<std::string> seen(3);
  run_ranks(3, [&](Communicator& comm) {
    try {
      collective(comm, [&] {
        if (comm.rank() == 2) throw Error(ErrorCode::io, "out/x: cannot write: No space left");
      });
    } catch (const SharedError& e) {
      seen[comm.rank()] = e.what();
    }
  });
  for (const auto& s : seen) EXPECT_EQ(s, "rank 2: out/x: cannot write: No space left");
}

TEST(distributed, array_input_is_refused) {
  run_ranks(2, [&](Communicator& comm) {
    try {
      open_input(comm, "x.npy");
      ADD_FAILURE() << "expected an error";
    } catch (const SharedError& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("run it without mpirun"), std::string::npos);
    }
  });
}

}  // namespace
}  // namespace imgnorm
