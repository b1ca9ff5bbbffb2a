// Cross products only when a job needs them (issue 15 item 3): Accumulator::skip_cross_products
// leaves every other sum as a full accumulator has it, and normalize --fit skips them unless its
// mode uses the channel covariance or --save-stats writes a stats.json.

#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "accumulator_access.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/stats_job.hpp"
#include "test_files.hpp"

using namespace imgnorm;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

std::vector<std::uint8_t> random_pixels(int w, int h, int c, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> px(static_cast<std::size_t>(w) * h * c);
  for (auto& v : px) v = static_cast<std::uint8_t>(rng() % 256);
  return px;
}

TEST(cross_products, skipped_leaves_every_other_sum_as_a_full_accumulator) {
  for (int c : {1, 3}) {
    SCOPED_TRACE(c);
    Accumulator full(c), skip(c);
    skip.skip_cross_products();
    EXPECT_TRUE(full.has_cross_products());
    EXPECT_FALSE(skip.has_cross_products());
    // Widths around the 16-pixel blocks of the cross-product loop.
    for (int w : {1, 2, 17, 18, 33, 224}) {
      const int h = 5;
      const auto px = random_pixels(w, h, c, static_cast<unsigned>(w * 7 + c));
      const ImageView v{px.data(), w, h, c, static_cast<std::size_t>(w) * c};
      full.add(v);
      skip.add(v);
    }
    EXPECT_EQ(skip.images(), full.images());
    EXPECT_EQ(skip.pixels(), full.pixels());
    for (int i = 0; i < c; ++i) {
      EXPECT_EQ(skip.histogram(i), full.histogram(i));
      EXPECT_EQ(skip.sum(i), full.sum(i));
      EXPECT_EQ(detail::AccumulatorAccess::sum_squares(skip, i),
                detail::AccumulatorAccess::sum_squares(full, i));
      EXPECT_EQ(detail::AccumulatorAccess::cluster(skip, i),
                detail::AccumulatorAccess::cluster(full, i));
      for (int j = 0; j < c; ++j) {
        if (i == j) {
          EXPECT_EQ(skip.cross(i, j), full.cross(i, j));
        } else {
          EXPECT_EQ(skip.cross(i, j), 0u);
          EXPECT_NE(full.cross(i, j), 0u);
        }
      }
    }
    const Summary a = summarize(full), b = summarize(skip);
    ASSERT_EQ(a.channel.size(), b.channel.size());
    for (std::size_t i = 0; i < a.channel.size(); ++i) {
      EXPECT_EQ(a.channel[i].mean, b.channel[i].mean);
      EXPECT_EQ(a.channel[i].std, b.channel[i].std);
      EXPECT_EQ(a.channel[i].median, b.channel[i].median);
      EXPECT_EQ(a.channel[i].mean_image_std, b.channel[i].mean_image_std);
    }
    EXPECT_EQ(a.covariance.size(), static_cast<std::size_t>(c * c));
    EXPECT_TRUE(b.covariance.empty());
    EXPECT_TRUE(b.eigenvalues.empty());
    EXPECT_TRUE(b.eigenvectors.empty());
  }
}

TEST(cross_products, refusals_name_the_reason) {
  Accumulator full(3), skip(3);
  skip.skip_cross_products();
  EXPECT_EQ(error_of([&] { full.merge(skip); }),
            "cannot merge statistics with and without cross products");
  EXPECT_EQ(error_of([&] { skip.merge(full); }),
            "cannot merge statistics with and without cross products");
  const auto px = random_pixels(4, 4, 3, 1);
  full.add(ImageView{px.data(), 4, 4, 3, 12});
  EXPECT_EQ(error_of([&] { full.skip_cross_products(); }),
            "cross products must be skipped before adding images");
  skip.add(ImageView{px.data(), 4, 4, 3, 12});
  Accumulator more(3);
  more.skip_cross_products();
  more.merge(skip);  // two without them merge
  EXPECT_EQ(more, skip);
  StatsFile st;
  st.acc = skip;
  EXPECT_EQ(error_of([&] { to_json(st); }),
            "statistics without cross products (skip_cross_products) cannot be written as "
            "stats.json, which holds the covariance");
}

// --fit on the bundled photos: the fitted statistics carry cross products exactly when the mode or
// --save-stats needs them, and their per-channel sums are those of `imgnorm stats` either way.
TEST(cross_products, normalize_fit_computes_them_only_when_needed) {
  imgnorm::testing::TempDir tmp;
  const fs::path data = tmp.path / "photos" / "all";
  fs::create_directories(data);
  for (const auto& e : fs::directory_iterator(std::string(IMGNORM_TEST_DATA) + "/photos"))
    if (e.path().extension() == ".jpg") fs::copy_file(e.path(), data / e.path().filename());
  const std::string root = (tmp.path / "photos").string();

  SelectOptions sel;
  sel.folder = root;
  StatsJob sj;
  sj.recipe.size = {48, 40};
  PipelineOptions o;
  o.threads = 2;
  const StatsFile reference = compute_stats(select_dataset(sel), sj, o);
  ASSERT_EQ(reference.acc.images(), 6u);

  struct Case {
    Mode mode;
    bool save;
    bool cross;
  };
  for (const Case& k :
       {Case{Mode::standardize, false, false}, Case{Mode::center, false, false},
        Case{Mode::minmax_dataset, false, false}, Case{Mode::zca_channels, false, true},
        Case{Mode::pca_channels, false, true}, Case{Mode::standardize, true, true}}) {
    SCOPED_TRACE(std::string(to_string(k.mode)) + (k.save ? " --save-stats" : ""));
    NormalizeJob job;
    job.spec.mode = k.mode;
    job.recipe.size = sj.recipe.size;
    job.fit = true;
    if (k.save) job.save_stats = tmp.str("fitted.json");
    Normalization n(job, root);
    n.prepare(o);
    ASSERT_NE(n.fitted_stats(), nullptr);
    const Accumulator& acc = n.fitted_stats()->acc;
    EXPECT_EQ(acc.has_cross_products(), k.cross);
    if (k.cross) {
      EXPECT_EQ(acc, reference.acc);
    } else {
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(acc.histogram(c), reference.acc.histogram(c));
        EXPECT_EQ(detail::AccumulatorAccess::cluster(acc, c),
                  detail::AccumulatorAccess::cluster(reference.acc, c));
      }
    }
  }
}

}  // namespace
