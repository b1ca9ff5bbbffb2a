// to_bytes / stats_from_bytes (include/imgnorm/stats.hpp): the statistics with their whole-image
// moments in one block (Python pickles Stats so); stats.json text alone drops the moments.

#include <gtest/gtest.h>

#include "imgnorm/select.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/stats_job.hpp"
#include "test_files.hpp"

namespace imgnorm {
namespace {

StatsFile pixel_stats(const testing::TempDir& dir) {
  std::filesystem::create_directories(dir.path / "data" / "a");
  for (int i = 0; i < 5; ++i)
    testing::write_png(dir.path / "data" / "a" / ("x" + std::to_string(i) + ".png"), 7, 6, 3,
                       static_cast<unsigned>(i + 3));
  SelectOptions sel;
  sel.folder = dir.str("data");
  StatsJob job;
  job.recipe.size = Size{4, 3};
  job.pixel_covariance = true;
  return compute_stats(select_dataset(sel), job, {});
}

TEST(stats_bytes, the_pixel_covariance_comes_back_exactly) {
  testing::TempDir dir;
  const StatsFile st = pixel_stats(dir);
  ASSERT_TRUE(st.acc.pixel_covariance().enabled());
  EXPECT_FALSE(stats_from_json(to_json(st)).acc.pixel_covariance().enabled())
      << "the JSON text alone does not carry them";
  const StatsFile back = stats_from_bytes(to_bytes(st));
  EXPECT_EQ(back.acc.pixel_covariance().dimension(), 36u);
  EXPECT_TRUE(back.acc.pixel_covariance() == st.acc.pixel_covariance());
  EXPECT_EQ(to_json(back), to_json(st));
}

TEST(stats_bytes, damaged_bytes_are_refused) {
  testing::TempDir dir;
  std::vector<std::uint8_t> b = to_bytes(pixel_stats(dir));
  b.pop_back();
  try {
    stats_from_bytes(b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::format);
    EXPECT_STREQ(e.what(), "statistics bytes: truncated");
  }
  try {
    stats_from_bytes({'{', '}'});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "statistics bytes: truncated");
  }
  std::vector<std::uint8_t> other(16, 0);
  try {
    stats_from_bytes(other);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "statistics bytes: not written by imgnorm's to_bytes");
  }
}

}  // namespace
}  // namespace imgnorm
