// --threads above the hardware threads: the job really runs that many threads (TBB alone caps its
// workers at the cores − 1, prints a warning and ignores the rest) and the results do not change.

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "imgnorm/dataset.hpp"
#include "imgnorm/pipeline.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/stats_job.hpp"

using namespace imgnorm;

namespace {
const std::string kFlowers = std::string(IMGNORM_SOURCE_DIR) + "/examples/flowers";
}

TEST(threads, more_threads_than_cores_all_work_without_a_tbb_warning) {
  const Dataset ds = scan_folder(kFlowers);
  const int cores = effective_threads(0);
  PipelineOptions o;
  o.threads = cores + 3;
  Recipe r;
  r.size = {8, 8};
  std::mutex m;
  std::set<std::thread::id> ids;
  testing::internal::CaptureStderr();
  run_pipeline(
      ds.entries, r, o,
      [&](const LoadedImage&) {
        {
          std::lock_guard<std::mutex> lock(m);
          ids.insert(std::this_thread::get_id());
        }
        // Long enough that every thread of the arena picks up an image.
        std::this_thread::sleep_for(std::chrono::milliseconds(40));
      },
      [](std::size_t, int, const Error*) {});
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("TBB"), std::string::npos) << err;
  EXPECT_GT(static_cast<int>(ids.size()), cores) << "threads that processed images";
  EXPECT_LE(static_cast<int>(ids.size()), o.threads);
}

TEST(threads, stats_are_the_same_with_more_threads_than_cores) {
  const Dataset ds = scan_folder(kFlowers);
  PipelineOptions one, many;
  one.threads = 1;
  many.threads = effective_threads(0) + 5;
  StatsJob job;
  job.recipe.size = {16, 16};
  EXPECT_EQ(to_json(compute_stats(ds, job, one, "t")), to_json(compute_stats(ds, job, many, "t")));
}
