// Applying the full-image whitening (zca, pca) in batches: the folder job, the array job and
// normalize_rows give the same bytes for every thread count and batch size (--max-memory), and
// each row equals Normalizer::apply of that image alone.

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "imgnorm/array.hpp"
#include "imgnorm/dtype.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/pipeline.hpp"
#include "test_files.hpp"
#include "whitening_kernel.hpp"

using namespace imgnorm;
using namespace imgnorm::testing;

namespace {

constexpr int kW = 8, kH = 6, kImages = 150;  // D = 144; 150 images: a batch of 128 and a tail

struct Folder {
  TempDir dir;
  Folder() {
    for (int i = 0; i < kImages; ++i) {
      const std::string cls = i % 3 ? "b" : "a";
      fs::create_directories(dir.path / cls);
      write_png(dir.path / cls / ("img" + std::to_string(1000 + i) + ".png"), kW, kH, 3,
                static_cast<unsigned>(i + 1));
    }
    write_bytes(dir.path / "a" / "broken.png", "not a png");  // skipped, in the middle
  }
};

PipelineOptions with(int threads, std::uint64_t max_memory = 0) {
  PipelineOptions o;
  o.threads = threads;
  o.max_memory = max_memory;
  return o;
}

NormalizeJob job_of(Mode mode, int components) {
  NormalizeJob job;
  job.spec.mode = mode;
  job.spec.components = components;
  job.fit = true;
  job.recipe.size = Size{kW, kH};
  return job;
}

struct JobRun {
  std::vector<std::uint8_t> data;
  NormalizeResult result;
  std::size_t row_bytes = 0;
};

JobRun run_folder(const std::string& folder, const NormalizeJob& job, const PipelineOptions& o,
                  std::unique_ptr<Normalizer>* norm = nullptr) {
  Normalization n(job, folder);
  n.prepare(with(2));  // the fit, the same for every run
  MemorySink sink;
  JobRun r;
  r.result = n.run(sink, o);
  r.data = sink.data();
  r.row_bytes = sink.row_bytes();
  if (norm) *norm = std::make_unique<Normalizer>(n.normalizer());
  return r;
}

// Each row of `r` against Normalizer::apply of its file alone.
void expect_rows_equal_apply(const JobRun& r, const Normalizer& norm) {
  Recipe recipe;
  recipe.size = Size{kW, kH};
  ASSERT_EQ(r.result.files.size(), r.result.rows);
  std::vector<std::uint8_t> one(r.row_bytes);
  for (std::size_t i = 0; i < r.result.rows; ++i) {
    Image img;
    load_image(r.result.files[i], recipe, img);
    norm.apply(img.view(), one.data());
    ASSERT_EQ(0, std::memcmp(one.data(), r.data.data() + i * r.row_bytes, r.row_bytes))
        << "row " << i << " (" << r.result.files[i] << ")";
  }
}

}  // namespace

TEST(whitening_apply, folder_rows_are_the_same_bytes_for_every_thread_count_and_batch) {
  Folder f;
  for (const auto& [mode, k] : {std::pair{Mode::zca, 0}, std::pair{Mode::pca, 5}}) {
    SCOPED_TRACE(to_string(mode));
    const NormalizeJob job = job_of(mode, k);
    std::unique_ptr<Normalizer> norm;
    const JobRun base = run_folder(f.dir.str(""), job, with(1), &norm);
    EXPECT_EQ(base.result.rows, static_cast<std::uint64_t>(kImages));
    ASSERT_EQ(base.result.skipped.size(), 1u);
    EXPECT_NE(base.result.skipped[0].path.find("broken.png"), std::string::npos);
    EXPECT_EQ(base.result.labels.size(), base.result.rows);
    EXPECT_EQ(base.row_bytes, (mode == Mode::pca ? 5u : 144u) * sizeof(float));
    expect_rows_equal_apply(base, *norm);
    // A small --max-memory makes the batches a few images each.
    const std::uint64_t small = 4 * detail::FullImageBatch::bytes_per_image(*norm) * 5;
    EXPECT_EQ(detail::FullImageBatch::capacity_for(*norm, small / 4, kImages), 5u);
    for (const PipelineOptions& o : {with(2), with(3), with(2, small), with(3, small)}) {
      const JobRun r = run_folder(f.dir.str(""), job, o);
      EXPECT_EQ(r.result.files, base.result.files);
      EXPECT_EQ(r.result.labels, base.result.labels);
      EXPECT_TRUE(r.data == base.data) << o.threads << " threads, max_memory " << o.max_memory;
    }
  }
}

TEST(whitening_apply, arrays_and_normalize_rows_equal_apply_for_every_thread_count) {
  const int n = 140;  // a batch of 128 and a ragged tail
  std::vector<std::uint8_t> px = test_pixels(kW, kH * n, 3, 41);
  std::vector<double> values(px.begin(), px.end());
  for (const auto& [mode, k] : {std::pair{Mode::zca, 0}, std::pair{Mode::pca, 7}}) {
    SCOPED_TRACE(to_string(mode));
    NormalizeJob job = job_of(mode, k);
    job.recipe = {};
    std::unique_ptr<Normalizer> norm;
    std::vector<std::uint8_t> base;
    for (int t : {1, 2, 3}) {
      NormalizeInput in;
      in.source = "memory";
      in.array = ImageArray::from_memory(px.data(), DType::uint8, n, kH, kW, 3);
      Normalization job_run(job, std::move(in));
      job_run.prepare(with(2));
      MemorySink sink;
      const NormalizeResult r = job_run.run(sink, with(t));
      EXPECT_EQ(r.rows, static_cast<std::uint64_t>(n));
      if (!norm) {
        norm = std::make_unique<Normalizer>(job_run.normalizer());
        base = sink.data();
      }
      EXPECT_TRUE(sink.data() == base) << "array job, threads " << t;
    }
    const std::size_t rb = base.size() / n;
    EXPECT_EQ(rb, (mode == Mode::pca ? 7u : 144u) * sizeof(float));
    std::vector<std::uint8_t> one(rb);
    for (int i = 0; i < n; ++i) {
      ImageView v{px.data() + static_cast<std::size_t>(i) * kW * kH * 3, kW, kH, 3,
                  static_cast<std::size_t>(kW) * 3};
      norm->apply(v, one.data());
      ASSERT_EQ(0, std::memcmp(one.data(), base.data() + i * rb, rb)) << "row " << i;
    }
    const ImageArray u8 = ImageArray::from_memory(px.data(), DType::uint8, n, kH, kW, 3);
    const ImageArray f64 = ImageArray::from_memory(values.data(), DType::float64, n, kH, kW, 3);
    for (int t : {1, 2, 3}) {
      std::vector<std::uint8_t> out(base.size()), from_values(base.size());
      std::vector<Affine> maps(3);
      EXPECT_EQ(normalize_rows(*norm, u8, out.data(), t, &maps), 0u);
      EXPECT_TRUE(maps.empty());
      EXPECT_TRUE(out == base) << "normalize_rows, threads " << t;
      normalize_rows(*norm, f64, from_values.data(), t);
      EXPECT_TRUE(from_values == base) << "normalize_rows of float64, threads " << t;
    }
  }
}

TEST(whitening_apply, a_wrong_image_size_is_refused_naming_the_row) {
  const int n = 3;
  std::vector<std::uint8_t> px = test_pixels(kW, kH * n, 3, 5);
  NormalizeJob job = job_of(Mode::zca, 0);
  job.recipe = {};
  NormalizeInput in;
  in.source = "memory";
  in.array = ImageArray::from_memory(px.data(), DType::uint8, n, kH, kW, 3);
  Normalization job_run(job, std::move(in));
  job_run.prepare(with(1));
  const Normalizer& norm = job_run.normalizer();
  std::vector<std::uint8_t> px2(static_cast<std::size_t>(kW + 1) * kH * 3 * 2);
  const ImageArray wider = ImageArray::from_memory(px2.data(), DType::uint8, 2, kH, kW + 1, 3, "w");
  std::vector<float> out(2 * 162);
  try {
    normalize_rows(norm, wider, out.data());
    FAIL() << "a 9x6 image through a 144-value whitening must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_EQ(std::string(e.what()),
              "w: row 0: image is 9x6x3 = 162 values, but the whitening matrix of --mode zca is "
              "for 144");
  }
}
