// Tests of the stats module: the fast accumulation against the plain reference, summaries against
// naive double loops over the same pixels, confidence-interval coverage, stats.json.

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "imgnorm/stats.hpp"
#include "stats_ref.hpp"

namespace imgnorm {
namespace {

using ojson = nlohmann::ordered_json;

// An owning test image with an arbitrary row stride (padding bytes filled with garbage, so a read
// past the row would change the result).
struct TestImage {
  std::vector<std::uint8_t> bytes;
  ImageView view;
};

TestImage make_image(int w, int h, int c, std::size_t pad, std::mt19937_64& rng, int kind = 0) {
  TestImage t;
  const std::size_t stride = static_cast<std::size_t>(w) * c + pad;
  t.bytes.resize(stride * h);
  for (auto& b : t.bytes) b = static_cast<std::uint8_t>(rng());
  const int base = static_cast<int>(rng() % 256);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w * c; ++x) {
      std::uint8_t v;
      switch (kind) {
        case 0:
          v = static_cast<std::uint8_t>(rng());
          break;  // uniform noise
        case 1:
          v = 255;
          break;  // saturated runs
        case 2:
          v = static_cast<std::uint8_t>(base);
          break;  // one flat value
        default:  // smooth, correlated channels around a per-image level
          v = static_cast<std::uint8_t>(
              std::clamp(base + static_cast<int>(rng() % 61) - 30 + (x % c) * 10, 0, 255));
      }
      t.bytes[y * stride + x] = v;
    }
  }
  t.view = ImageView{t.bytes.data(), w, h, c, stride};
  return t;
}

// Every value of channel ch over the images, as doubles.
std::vector<double> channel_values(const std::vector<TestImage>& images, int ch) {
  std::vector<double> v;
  for (const TestImage& t : images)
    for (int y = 0; y < t.view.height; ++y)
      for (int x = 0; x < t.view.width; ++x) v.push_back(t.view.row(y)[x * t.view.channels + ch]);
  return v;
}

// numpy.percentile(values, p) with the default 'linear' method, on a sorted copy.
double naive_percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double h = (v.size() - 1) * (p / 100.0);
  const std::size_t lo = static_cast<std::size_t>(std::floor(h));
  if (lo + 1 >= v.size()) return v.back();
  return v[lo] + (h - lo) * (v[lo + 1] - v[lo]);
}

double naive_median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// --------------------------------------------------------------------------------------------
// Accumulation

TEST(stats, fast_add_equals_reference_every_width) {
  std::mt19937_64 rng(1);
  for (int c : {1, 3}) {
    for (int w = 1; w <= 70; ++w) {
      for (int h : {1, 2, 7}) {
        for (std::size_t pad : {std::size_t{0}, std::size_t{1}, std::size_t{13}}) {
          for (int kind : {0, 1, 3}) {
            TestImage t = make_image(w, h, c, pad, rng, kind);
            Accumulator fast(c);
            fast.add(t.view);
            const Accumulator ref = detail::accumulate_reference(c, {t.view});
            ASSERT_TRUE(fast == ref) << "channels " << c << " width " << w << " height " << h
                                     << " pad " << pad << " kind " << kind;
          }
        }
      }
    }
  }
}

TEST(stats, fast_add_equals_reference_many_images_and_large_rows) {
  std::mt19937_64 rng(2);
  for (int c : {1, 3}) {
    std::vector<TestImage> images;
    // 1200x1000 of 255 needs the u32 lane fold of the cross products: 74000 blocks of 255² each
    // would wrap the lanes (66051 fit).
    images.push_back(make_image(1200, 1000, c, 0, rng, 1));
    images.push_back(make_image(70001, 1, c, 5, rng, 0));
    for (int i = 0; i < 20; ++i)
      images.push_back(make_image(1 + static_cast<int>(rng() % 300),
                                  1 + static_cast<int>(rng() % 9), c, rng() % 4, rng,
                                  static_cast<int>(rng() % 4)));
    Accumulator fast(c);
    std::vector<ImageView> views;
    for (const TestImage& t : images) {
      fast.add(t.view);
      views.push_back(t.view);
    }
    EXPECT_TRUE(fast == detail::accumulate_reference(c, views)) << "channels " << c;
  }
}

TEST(stats, mean_image_sums_pixels) {
  std::mt19937_64 rng(3);
  Accumulator plain(3), with_mean(3);
  with_mean.enable_mean_image({5, 4});
  std::vector<std::uint64_t> expected(5 * 4 * 3, 0);
  for (int i = 0; i < 6; ++i) {
    TestImage t = make_image(5, 4, 3, static_cast<std::size_t>(i), rng, i % 4);
    plain.add(t.view);
    with_mean.add(t.view);
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 15; ++x) expected[y * 15 + x] += t.view.row(y)[x];
  }
  EXPECT_EQ(with_mean.pixel_sums(), expected);
  EXPECT_EQ(with_mean.mean_image_size(), (Size{5, 4}));
  EXPECT_EQ(with_mean.images(), plain.images());
  EXPECT_EQ(with_mean.cross(0, 2), plain.cross(0, 2));
  EXPECT_EQ(with_mean.histogram(1), plain.histogram(1));

  TestImage other = make_image(4, 5, 3, 0, rng);
  try {
    with_mean.add(other.view);
    FAIL() << "size mismatch accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_STREQ(e.what(), "image is 4x5, mean image expects 5x4");
  }
  EXPECT_THROW(plain.merge(with_mean), Error);
}

TEST(stats, add_rejects_wrong_channels_and_empty_images) {
  std::mt19937_64 rng(4);
  Accumulator acc(3);
  TestImage gray = make_image(3, 3, 1, 0, rng);
  try {
    acc.add(gray.view);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_STREQ(e.what(), "image has 1 channels, statistics expect 3");
  }
  EXPECT_THROW(acc.add(ImageView{gray.bytes.data(), 0, 3, 3, 9}), Error);
  EXPECT_THROW(Accumulator(2), Error);
  EXPECT_EQ(acc.images(), 0u);
}

TEST(stats, merge_is_exact_and_order_free) {
  std::mt19937_64 rng(5);
  std::vector<TestImage> images;
  for (int i = 0; i < 30; ++i)
    images.push_back(make_image(1 + static_cast<int>(rng() % 40), 1 + static_cast<int>(rng() % 40),
                                3, rng() % 3, rng, static_cast<int>(rng() % 4)));
  Accumulator all(3), a(3), b(3), c(3);
  for (std::size_t i = 0; i < images.size(); ++i) {
    all.add(images[i].view);
    (i % 3 == 0 ? a : i % 3 == 1 ? b : c).add(images[i].view);
  }
  Accumulator abc = a, cba = c, bac = b;
  abc.merge(b), abc.merge(c);
  cba.merge(b), cba.merge(a);
  Accumulator ac = a;
  ac.merge(c);
  bac.merge(ac);
  EXPECT_TRUE(abc == all);
  EXPECT_TRUE(cba == all);
  EXPECT_TRUE(bac == all);
  EXPECT_THROW(all.merge(Accumulator(1)), Error);
}

// --------------------------------------------------------------------------------------------
// Summaries against naive double loops

TEST(stats, summarize_matches_naive_loops) {
  std::mt19937_64 rng(6);
  for (int C : {1, 3}) {
    std::vector<TestImage> images;
    for (int i = 0; i < 12; ++i)
      images.push_back(make_image(10 + static_cast<int>(rng() % 30),
                                  5 + static_cast<int>(rng() % 30), C, 3, rng, i % 2 ? 3 : 0));
    Accumulator acc(C);
    for (const TestImage& t : images) acc.add(t.view);
    std::vector<std::vector<double>> values(C);
    for (int c = 0; c < C; ++c) values[c] = channel_values(images, c);
    const double n = static_cast<double>(values[0].size());
    for (int ddof : {0, 1}) {
      const Summary s = summarize(acc, ddof);
      ASSERT_EQ(s.channels, C);
      EXPECT_EQ(s.pixels, values[0].size());
      EXPECT_EQ(s.images, images.size());
      std::vector<double> mean(C);
      for (int c = 0; c < C; ++c) {
        const ChannelSummary& cs = s.channel[c];
        double sum = 0;
        for (double x : values[c]) sum += x;
        mean[c] = sum / n;
        double ss = 0;
        for (double x : values[c]) ss += (x - mean[c]) * (x - mean[c]);
        const double sd = std::sqrt(ss / (n - ddof));
        EXPECT_DOUBLE_EQ(cs.mean, mean[c]);
        EXPECT_NEAR(cs.std, sd, 1e-13 * sd);
        EXPECT_NEAR(cs.variance, sd * sd, 1e-12 * sd * sd);
        EXPECT_DOUBLE_EQ(cs.mean_unit, mean[c] / 255);
        EXPECT_NEAR(cs.std_unit, sd / 255, 1e-13 * sd);
        EXPECT_EQ(cs.min, *std::min_element(values[c].begin(), values[c].end()));
        EXPECT_EQ(cs.max, *std::max_element(values[c].begin(), values[c].end()));
        EXPECT_DOUBLE_EQ(cs.median, naive_median(values[c]));
        const double ps[4] = {1, 5, 95, 99};
        for (int i = 0; i < 4; ++i)
          EXPECT_NEAR(cs.percentiles[i], naive_percentile(values[c], ps[i]), 1e-12) << "p" << ps[i];
        // Mean over images of each image's own population std.
        double image_std_sum = 0;
        for (const TestImage& t : images) {
          const std::vector<double> v = channel_values({t}, c);
          double m = 0, q = 0;
          for (double x : v) m += x;
          m /= v.size();
          for (double x : v) q += (x - m) * (x - m);
          image_std_sum += std::sqrt(q / v.size());
        }
        EXPECT_NEAR(cs.mean_image_std, image_std_sum / images.size(), 1e-9);
        EXPECT_FALSE(cs.mean_ci.has_value());
      }
      for (int i = 0; i < C; ++i) {
        for (int j = 0; j < C; ++j) {
          double cov = 0;
          for (std::size_t k = 0; k < values[i].size(); ++k)
            cov += (values[i][k] - mean[i]) * (values[j][k] - mean[j]);
          cov /= n - ddof;
          EXPECT_NEAR(s.covariance[i * C + j], cov, 1e-12 * std::max(1.0, std::fabs(cov)))
              << i << "," << j;
        }
        EXPECT_DOUBLE_EQ(s.covariance[i * C + i], s.channel[i].variance);
      }
    }
  }
}

TEST(stats, percentile_edge_cases) {
  std::array<std::uint64_t, 256> h{};
  h[7] = 1;
  EXPECT_EQ(histogram_percentile(h, 0), 7);
  EXPECT_EQ(histogram_percentile(h, 50), 7);
  EXPECT_EQ(histogram_percentile(h, 100), 7);
  h[9] = 1;  // values {7, 9}
  EXPECT_EQ(histogram_percentile(h, 50), 8);
  EXPECT_EQ(histogram_percentile(h, 100), 9);
  EXPECT_DOUBLE_EQ(histogram_percentile(h, 25), naive_percentile({7, 9}, 25));
  EXPECT_THROW(histogram_percentile(h, 101), Error);
  EXPECT_THROW(histogram_percentile(h, std::nan("")), Error);
  EXPECT_THROW(histogram_percentile(std::array<std::uint64_t, 256>{}, 50), Error);
}

TEST(stats, summarize_rejects_empty_and_bad_ddof) {
  try {
    summarize(Accumulator(3));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::empty);
  }
  std::uint8_t px[3] = {1, 2, 3};
  Accumulator one(3);
  one.add(ImageView{px, 1, 1, 3, 3});
  EXPECT_THROW(summarize(one, 2), Error);
  EXPECT_THROW(summarize(one, 1), Error);  // one pixel, ddof 1
  EXPECT_EQ(summarize(one, 0).channel[2].std, 0.0);
}

// --------------------------------------------------------------------------------------------
// Confidence intervals

TEST(stats, t_quantile) {
  // Closed forms for 1 and 2 degrees of freedom.
  EXPECT_NEAR(detail::t_quantile_975(1), std::tan(M_PI * 0.475), 1e-12);
  EXPECT_NEAR(detail::t_quantile_975(2), 0.95 * std::sqrt(2 / (4 * 0.975 * 0.025)), 1e-12);
  // Others: the density integrated from 0 to t must be 0.475 (Simpson's rule, independent of the
  // series the implementation inverts).
  for (std::uint64_t df : {3, 5, 10, 30, 100, 999, 1000, 1001, 5000, 100000}) {
    const double t = detail::t_quantile_975(df);
    const double v = static_cast<double>(df);
    const double log_norm =
        std::lgamma((v + 1) / 2) - std::lgamma(v / 2) - 0.5 * std::log(v * M_PI);
    auto density = [&](double x) {
      return std::exp(log_norm - (v + 1) / 2 * std::log1p(x * x / v));
    };
    const int steps = 20000;
    const double dx = t / steps;
    double integral = density(0) + density(t);
    for (int i = 1; i < steps; ++i) integral += density(i * dx) * (i % 2 ? 4 : 2);
    integral *= dx / 3;
    EXPECT_NEAR(integral, 0.475, 1e-10) << "df " << df;
  }
  EXPECT_NEAR(detail::t_quantile_975(UINT64_MAX / 2), 1.959963984540054, 1e-12);
}

// A synthetic population of images: each image has its own level (pixels of one image are
// correlated), sizes vary.
std::vector<TestImage> make_population(int count, std::mt19937_64& rng) {
  std::vector<TestImage> pop;
  for (int i = 0; i < count; ++i)
    pop.push_back(make_image(4 + static_cast<int>(rng() % 12), 4 + static_cast<int>(rng() % 12), 3,
                             0, rng, 3));
  return pop;
}

std::vector<std::size_t> draw(std::size_t n, std::size_t k, std::mt19937_64& rng) {
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  for (std::size_t i = 0; i < k; ++i) std::swap(idx[i], idx[i + rng() % (n - i)]);
  idx.resize(k);
  return idx;
}

TEST(stats, confidence_interval_matches_direct_residuals) {
  std::mt19937_64 rng(7);
  const std::vector<TestImage> pop = make_population(200, rng);
  const std::vector<std::size_t> idx = draw(pop.size(), 30, rng);
  Accumulator acc(3);
  for (std::size_t i : idx) acc.add(pop[i].view);
  const SampleInfo info{200, 30, 7, "30"};
  const Summary s = summarize(acc, 0, &info);
  const double m = 30, f = 30.0 / 200, t = detail::t_quantile_975(29);
  for (int c = 0; c < 3; ++c) {
    // Per-image sums, residuals formed directly (no expansion into stored sums).
    std::vector<double> S, Q, n;
    for (std::size_t i : idx) {
      const std::vector<double> v = channel_values({pop[i]}, c);
      double s1 = 0, s2 = 0;
      for (double x : v) s1 += x, s2 += x * x;
      S.push_back(s1), Q.push_back(s2), n.push_back(v.size());
    }
    const double sumS = std::accumulate(S.begin(), S.end(), 0.0);
    const double sumQ = std::accumulate(Q.begin(), Q.end(), 0.0);
    const double N = std::accumulate(n.begin(), n.end(), 0.0);
    const double R = sumS / N, R2 = sumQ / N, nbar = N / m;
    double dd = 0, uu = 0;
    for (std::size_t i = 0; i < S.size(); ++i) {
      const double d = S[i] - R * n[i];
      const double u = (Q[i] - R2 * n[i]) - 2 * R * d;
      dd += d * d, uu += u * u;
    }
    const double se_mean = std::sqrt((1 - f) * dd / (m * (m - 1) * nbar * nbar));
    const double sd = std::sqrt(R2 - R * R);
    const double se_sd = std::sqrt((1 - f) * uu / (m * (m - 1) * nbar * nbar)) / (2 * sd);
    ASSERT_TRUE(s.channel[c].mean_ci && s.channel[c].std_ci);
    EXPECT_NEAR(s.channel[c].mean_ci->lo, R - t * se_mean, 1e-9 * R);
    EXPECT_NEAR(s.channel[c].mean_ci->hi, R + t * se_mean, 1e-9 * R);
    EXPECT_NEAR(s.channel[c].std_ci->lo, s.channel[c].std - t * se_sd, 1e-9 * sd);
    EXPECT_NEAR(s.channel[c].std_ci->hi, s.channel[c].std + t * se_sd, 1e-9 * sd);
    EXPECT_GT(se_mean, 0);
  }
}

TEST(stats, confidence_interval_covers_in_about_95_percent) {
  std::mt19937_64 rng(8);
  const std::vector<TestImage> pop = make_population(500, rng);
  std::vector<Accumulator> per_image;
  Accumulator all(3);
  for (const TestImage& t : pop) {
    per_image.emplace_back(3);
    per_image.back().add(t.view);
    all.add(t.view);
  }
  const Summary truth = summarize(all);
  const SampleInfo info{500, 50, 0, "10%"};
  int covered_mean = 0, covered_std = 0, trials = 0;
  for (int draw_no = 0; draw_no < 1000; ++draw_no) {
    Accumulator acc(3);
    for (std::size_t i : draw(pop.size(), 50, rng)) acc.merge(per_image[i]);
    const Summary s = summarize(acc, 0, &info);
    for (int c = 0; c < 3; ++c) {
      const Interval m = *s.channel[c].mean_ci, d = *s.channel[c].std_ci;
      covered_mean += m.lo <= truth.channel[c].mean && truth.channel[c].mean <= m.hi;
      covered_std += d.lo <= truth.channel[c].std && truth.channel[c].std <= d.hi;
      ++trials;
    }
  }
  const double mean_rate = static_cast<double>(covered_mean) / trials;
  const double std_rate = static_cast<double>(covered_std) / trials;
  EXPECT_GE(mean_rate, 0.90);
  EXPECT_LE(mean_rate, 0.985);
  EXPECT_GE(std_rate, 0.90);
  EXPECT_LE(std_rate, 0.985);
}

TEST(stats, confidence_interval_has_zero_width_for_a_census) {
  std::mt19937_64 rng(9);
  const std::vector<TestImage> pop = make_population(10, rng);
  Accumulator acc(3);
  for (const TestImage& t : pop) acc.add(t.view);
  const SampleInfo info{10, 10, 1, "100%"};
  const Summary s = summarize(acc, 0, &info);
  for (const ChannelSummary& c : s.channel) {
    EXPECT_EQ(c.mean_ci->lo, c.mean);
    EXPECT_EQ(c.mean_ci->hi, c.mean);
    EXPECT_EQ(c.std_ci->lo, c.std);
    EXPECT_EQ(c.std_ci->hi, c.std);
  }
  const SampleInfo one{10, 1, 1, "1"};
  Accumulator single(3);
  single.add(pop[0].view);
  EXPECT_FALSE(summarize(single, 0, &one).channel[0].mean_ci.has_value());
}

// --------------------------------------------------------------------------------------------
// stats.json

StatsFile make_stats_file(int C, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  StatsFile st;
  st.tool_version = "0.1.0";
  st.source = "data/flowers \"quoted\" ünï";
  st.recipe.channels = C == 3 ? ChannelOrder::bgr : ChannelOrder::gray;
  st.recipe.size = {64, 48};
  st.recipe.resize = ResizeMode::crop;
  st.recipe.interp = Interp::area;
  st.recipe.pad_value = 114;
  st.recipe.exact_decode = true;
  st.recipe.max_pixels = 1000000;
  st.ddof = 1;
  st.classes = {"daisy", "roses"};
  st.acc = Accumulator(C);
  for (int i = 0; i < 7; ++i) {
    TestImage t = make_image(8 + i, 5, C, 0, rng, i % 4);
    st.acc.add(t.view);
  }
  st.class_images = {3, 4};
  st.files_found = 9;
  st.skipped = {{"data/flowers/roses/b.jpg", ErrorCode::corrupt, "truncated JPEG"},
                {"data/flowers/daisy/a.png", ErrorCode::too_large, "50000x50000 pixels"}};
  st.ignored = {{"data/flowers/notes.txt", "root-level file"}};
  st.sample = SampleInfo{20, 9, 42, "45%"};
  st.shard_index = 1;
  st.shard_count = 3;
  return st;
}

TEST(stats, json_round_trip_is_byte_identical) {
  for (int C : {1, 3}) {
    const StatsFile st = make_stats_file(C, 10 + C);
    const std::string text = to_json(st);
    const StatsFile back = stats_from_json(text);
    EXPECT_EQ(to_json(back), text);
    EXPECT_TRUE(back.acc == st.acc);
    EXPECT_EQ(back.recipe, st.recipe);
    EXPECT_EQ(back.classes, st.classes);
    EXPECT_EQ(back.class_images, st.class_images);
    EXPECT_EQ(back.skipped, st.skipped);
    EXPECT_EQ(back.ignored.size(), 1u);
    EXPECT_EQ(back.sample, st.sample);
    EXPECT_EQ(back.shard_index, 1);
    EXPECT_EQ(back.shard_count, 3);
    EXPECT_EQ(back.files_found, 9u);
    EXPECT_EQ(back.source, st.source);
    EXPECT_EQ(back.ddof, 1);

    // The derived numbers in the file are summarize()'s, exactly (shortest round-trip doubles).
    const ojson j = ojson::parse(text);
    const Summary s = summarize(st.acc, 1, &*st.sample);
    for (int c = 0; c < C; ++c) {
      EXPECT_EQ(j["mean"][c].get<double>(), s.channel[c].mean);
      EXPECT_EQ(j["std"][c].get<double>(), s.channel[c].std);
      EXPECT_EQ(j["percentiles"]["99"][c].get<double>(), s.channel[c].percentiles[3]);
      EXPECT_EQ(j["sample"]["mean_ci95"][c][0].get<double>(), s.channel[c].mean_ci->lo);
    }
    EXPECT_EQ(j["recipe"]["channel_order"].size(), static_cast<std::size_t>(C));
    EXPECT_EQ(j.begin().key(), "format");
  }
}

TEST(stats, json_round_trip_without_pixels) {
  StatsFile st;
  st.tool_version = "0.1.0";
  st.acc = Accumulator(3);
  st.files_found = 1;
  st.skipped = {{"x.jpg", ErrorCode::unsupported, "not an image"}};
  const std::string text = to_json(st);
  EXPECT_NE(text.find("\"mean\": null"), std::string::npos);
  EXPECT_EQ(to_json(stats_from_json(text)), text);
}

// Parses `text`, applies `edit`, and expects stats_from_json to fail with `message` in what().
void expect_rejected(const std::string& text, const std::function<void(ojson&)>& edit,
                     const std::string& message) {
  ojson j = ojson::parse(text);
  edit(j);
  try {
    stats_from_json(j.dump());
    ADD_FAILURE() << "accepted; expected: " << message;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::format);
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos)
        << "message: " << e.what() << "\nexpected: " << message;
  }
}

TEST(stats, json_rejects_malformed_files) {
  const std::string text = to_json(make_stats_file(3, 20));
  for (const std::string& bad : {std::string("{"), text.substr(0, text.size() / 2),
                                 std::string("not json"), std::string()}) {
    try {
      stats_from_json(bad);
      FAIL() << "accepted: " << bad.substr(0, 40);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::format);
      EXPECT_EQ(std::string(e.what()).rfind("not valid JSON: ", 0), 0u) << e.what();
    }
  }
  expect_rejected(
      text, [](ojson& j) { j = ojson::array(); }, "must be a JSON object");
  expect_rejected(
      text, [](ojson& j) { j["format"] = "npy"; }, "not a stats file");
  expect_rejected(
      text, [](ojson& j) { j.erase("format"); }, "missing field 'format'");
  expect_rejected(
      text, [](ojson& j) { j["format_version"] = 2; },
      "written by a newer imgnorm (format_version 2)");
  expect_rejected(
      text, [](ojson& j) { j["format_version"] = "1"; }, "'format_version'");
  expect_rejected(
      text, [](ojson& j) { j["sums"]["sum"][1] = j["sums"]["sum"][1].get<int>() + 1; },
      "field 'sums.sum[1]' does not match the histogram");
  expect_rejected(
      text, [](ojson& j) { j["histograms"][0][3] = j["histograms"][0][3].get<int>() + 1; },
      "field 'histograms[0]' counts");
  expect_rejected(
      text, [](ojson& j) { j["histograms"][2].erase(255); },
      "field 'histograms[2]' must be a list of 256 counts");
  expect_rejected(
      text, [](ojson& j) { j["sums"]["sum_squares"][0] = "12x"; },
      "field 'sums.sum_squares' must be a decimal integer string");
  expect_rejected(
      text, [](ojson& j) { j["sums"]["cross"][0][1] = 0; }, "must be symmetric");
  expect_rejected(
      text, [](ojson& j) { j["std"][1] = nullptr; }, "negative or NaN std");
  expect_rejected(
      text, [](ojson& j) { j["std"][0] = -1.5; }, "negative or NaN std");
  expect_rejected(
      text, [](ojson& j) { j["min"][2] = j["min"][2].get<int>() + 1; },
      "field 'min' does not match 'sums'");
  expect_rejected(
      text, [](ojson& j) { j["median"][0] = j["median"][0].get<double>() + 0.5; },
      "field 'median' does not match 'sums'");
  expect_rejected(
      text, [](ojson& j) { j["std_unit"][1] = j["std_unit"][1].get<double>() * 1.01; },
      "field 'std_unit' does not match 'sums'");
  expect_rejected(
      text, [](ojson& j) { j["mean"][2] = 1.0; }, "field 'mean' does not match");
  expect_rejected(
      text, [](ojson& j) { j["recipe"]["channels"] = "gray"; },
      "'recipe.channel_order' does not match");
  expect_rejected(
      text, [](ojson& j) { j["recipe"]["channels"] = "cmyk"; },
      "field 'recipe.channels': invalid channel order 'cmyk'");
  expect_rejected(
      text,
      [](ojson& j) {
        j["recipe"]["channels"] = "gray";
        j["recipe"]["channel_order"] = {"Y"};
      },
      "field 'histograms' must have 1 entries, not 3");
  expect_rejected(
      text, [](ojson& j) { j["recipe"]["size"] = {64}; }, "'recipe.size'");
  expect_rejected(
      text, [](ojson& j) { j["recipe"]["pad_value"] = 256; },
      "field 'recipe.pad_value' is out of range");
  expect_rejected(
      text, [](ojson& j) { j["counts"]["images"] = 1; }, "'counts.images' does not match");
  expect_rejected(
      text, [](ojson& j) { j["counts"]["skipped"] = 0; }, "'counts.skipped'");
  expect_rejected(
      text, [](ojson& j) { j["counts"]["per_class"]["daisy"] = 0; },
      "'counts.per_class' does not add up");
  expect_rejected(
      text, [](ojson& j) { j["skipped"][0]["code"] = "oops"; }, "unknown error code");
  expect_rejected(
      text, [](ojson& j) { j["sums"]["cluster"][1].erase("q_s"); },
      "missing field 'sums.cluster[1].q_s'");
  expect_rejected(
      text, [](ojson& j) { j["sample"]["sampled"] = 21; }, "'sample.sampled' is larger");
  expect_rejected(
      text, [](ojson& j) { j["ddof"] = 2; }, "field 'ddof' is out of range");
  expect_rejected(
      text, [](ojson& j) { j["shard"]["index"] = 3; }, "field 'shard'");
  expect_rejected(
      text, [](ojson& j) { j["sums"]["pixels_squared"] = "1"; },
      "'sums.pixels_squared' is inconsistent");
}

TEST(stats, read_stats_file_names_the_file) {
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "imgnorm_stats_test_good.json";
  const std::string bad = dir + "imgnorm_stats_test_bad.json";
  const std::string text = to_json(make_stats_file(3, 30));
  std::ofstream(good, std::ios::binary) << text;
  std::ofstream(bad, std::ios::binary) << "{\"format\": \"imgnorm-stats\"";
  EXPECT_EQ(to_json(read_stats_file(good)), text);
  try {
    read_stats_file(bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::format);
    EXPECT_EQ(std::string(e.what()).rfind(bad + ": not valid JSON", 0), 0u) << e.what();
  }
  try {
    read_stats_file(dir + "imgnorm_stats_test_missing.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_EQ(std::string(e.what()),
              dir + "imgnorm_stats_test_missing.json: cannot open the stats file: " +
                  std::strerror(ENOENT));
  }
  std::remove(good.c_str());
  std::remove(bad.c_str());
}

TEST(stats, merge_into_adds_and_checks) {
  StatsFile a = make_stats_file(3, 40), b = make_stats_file(3, 41);
  b.skipped = {{"data/flowers/daisy/0.jpg", ErrorCode::io, "unreadable"}};
  b.ignored = {{"data/flowers/notes.txt", "root-level file"},
               {"data/flowers/.DS_Store", "hidden file"}};
  b.shard_index = 2;
  Accumulator sum = a.acc;
  sum.merge(b.acc);
  StatsFile ab = a;
  merge_into(ab, b);
  EXPECT_TRUE(ab.acc == sum);
  EXPECT_EQ(ab.files_found, 18u);
  EXPECT_EQ(ab.class_images, (std::vector<std::uint64_t>{6, 8}));
  ASSERT_EQ(ab.skipped.size(), 3u);
  EXPECT_EQ(ab.skipped[0].path, "data/flowers/daisy/0.jpg");
  EXPECT_EQ(ab.skipped[1].path, "data/flowers/daisy/a.png");
  EXPECT_EQ(ab.skipped[2].path, "data/flowers/roses/b.jpg");
  ASSERT_EQ(ab.ignored.size(), 2u);
  EXPECT_EQ(ab.ignored[0].path, "data/flowers/.DS_Store");
  EXPECT_EQ(ab.ignored[1].path, "data/flowers/notes.txt");
  EXPECT_EQ(ab.shard_count, 1);
  EXPECT_EQ(ab.shard_index, 0);
  // Order does not matter for the numbers, and the written file is the same.
  StatsFile ba = b;
  merge_into(ba, a);
  EXPECT_TRUE(ba.acc == ab.acc);
  ba.source = ab.source;
  EXPECT_EQ(to_json(ba), to_json(ab));

  auto expect_differ = [&](StatsFile other, const std::string& what) {
    StatsFile target = a;
    try {
      merge_into(target, other);
      ADD_FAILURE() << "merged despite different " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_EQ(std::string(e.what()), "cannot merge statistics: " + what);
    }
    EXPECT_TRUE(target.acc == a.acc);  // nothing changed
  };
  StatsFile other = b;
  other.recipe.size = {32, 32};
  // The field named as normalize names it (recipe_differences), a's value first.
  expect_differ(other, "recipes differ (size 64x48 vs 32x32)");
  other = b, other.recipe.interp = Interp::linear, other.recipe.channels = ChannelOrder::rgb;
  expect_differ(other, "recipes differ (channels bgr vs rgb, interp area vs linear)");
  other = b, other.ddof = 0;
  expect_differ(other, "ddof values differ");
  other = b, other.classes = {"daisy", "tulips"};
  expect_differ(other, "classes differ");
  other = b, other.sample->seed = 1;
  expect_differ(other, "samples differ");
  other = b, other.sample.reset();
  expect_differ(other, "samples differ");
}

}  // namespace
}  // namespace imgnorm
