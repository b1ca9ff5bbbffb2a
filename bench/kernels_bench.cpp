// Micro-benchmarks of the per-pixel kernels, on one core, over one in-memory batch of u8 images:
//
//   normalize   u8 → float32 through imgnorm::Normalizer (NHWC / NCHW, RGB / BGR output), against
//               a plain memcpy of the same number of output bytes (the bandwidth ceiling) and the
//               plain per-pixel reference (detail::apply_reference);
//   accumulate  exact statistics, imgnorm::Accumulator::add, against detail::accumulate_reference.
//
// The batch is IMGNORM_BENCH_BATCH (a uint8 .npy of shape (N, H, W, 3), RGB; bench/run.py writes
// it from the benchmark dataset so that bench/peers/kernels.py times numpy and
// cv2.dnn.blobFromImages on the very same pixels), else a synthetic 64×224×224×3 batch.
//
//   build-bench/bench/imgnorm_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "imgnorm/npy.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/transform.hpp"
#include "stats_ref.hpp"
#include "transform_kernels.hpp"

namespace {

struct Batch {
  int n = 0, h = 0, w = 0, c = 3;
  std::vector<std::uint8_t> pixels;
  std::size_t image_bytes() const { return static_cast<std::size_t>(h) * w * c; }
  imgnorm::ImageView view(int i) const {
    return {pixels.data() + i * image_bytes(), w, h, c, static_cast<std::size_t>(w) * c};
  }
  std::size_t values() const { return image_bytes() * n; }
};

Batch load_batch() {
  Batch b;
  if (const char* path = std::getenv("IMGNORM_BENCH_BATCH"); path != nullptr && *path) {
    imgnorm::NpyArray a = imgnorm::read_npy(path);
    if (a.header.dtype != imgnorm::DType::uint8 || a.header.shape.size() != 4 ||
        a.header.shape[3] != 3) {
      std::fprintf(stderr, "%s: expected a uint8 array of shape (N, H, W, 3)\n", path);
      std::exit(2);
    }
    b.n = static_cast<int>(a.header.shape[0]);
    b.h = static_cast<int>(a.header.shape[1]);
    b.w = static_cast<int>(a.header.shape[2]);
    b.pixels = std::move(a.data);
    return b;
  }
  // Smooth gradients with noise: photo-like value statistics, deterministic.
  b.n = 64, b.h = 224, b.w = 224;
  b.pixels.resize(b.values());
  std::uint32_t seed = 12345;
  std::size_t i = 0;
  for (int k = 0; k < b.n; ++k)
    for (int y = 0; y < b.h; ++y)
      for (int x = 0; x < b.w; ++x)
        for (int ch = 0; ch < 3; ++ch) {
          seed = seed * 1664525u + 1013904223u;
          const int v = (x * (ch + 1) + y * (3 - ch) + k * 17) / 3 + static_cast<int>(seed >> 29);
          b.pixels[i++] = static_cast<std::uint8_t>(v & 0xff);
        }
  return b;
}

const Batch& batch() {
  static const Batch b = load_batch();
  return b;
}

// Output of the whole batch, allocated and touched once (page faults are not the kernel's cost).
float* output_buffer() {
  static std::unique_ptr<float[]> out = [] {
    std::unique_ptr<float[]> p(new float[batch().values()]);
    std::memset(p.get(), 0, batch().values() * sizeof(float));
    return p;
  }();
  return out.get();
}

imgnorm::TransformSpec standardize_spec() {
  imgnorm::TransformSpec spec;
  spec.mode = imgnorm::Mode::standardize;
  spec.mean = {117.9, 112.4, 87.3};  // flower_photos-like constants, 0–255, RGB
  spec.std = {68.1, 62.2, 67.5};
  return spec;
}

void set_counters(benchmark::State& state, std::size_t out_bytes) {
  const Batch& b = batch();
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out_bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * b.n);  // images
  state.counters["px/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * b.n * b.h * b.w, benchmark::Counter::kIsRate);
}

// The ceiling: copying as many bytes as the kernel writes (float32 output of the batch).
void BM_memcpy_output_bytes(benchmark::State& state) {
  const std::size_t bytes = batch().values() * sizeof(float);
  static std::unique_ptr<float[]> src = [&] {
    std::unique_ptr<float[]> p(new float[batch().values()]);
    std::memset(p.get(), 1, bytes);
    return p;
  }();
  float* dst = output_buffer();
  for (auto _ : state) {
    std::memcpy(dst, src.get(), bytes);
    benchmark::ClobberMemory();
  }
  set_counters(state, bytes);
}
BENCHMARK(BM_memcpy_output_bytes)->Unit(benchmark::kMillisecond)->UseRealTime();

// imgnorm::Normalizer::apply (table lookup fused with channel order and layout), standardize mode.
// Arguments: layout (0 NHWC, 1 NCHW), output order (0 RGB, 1 BGR: swaps R and B).
void BM_normalize(benchmark::State& state) {
  const Batch& b = batch();
  imgnorm::OutputFormat format;
  format.layout = state.range(0) ? imgnorm::Layout::nchw : imgnorm::Layout::nhwc;
  format.dtype = imgnorm::DType::float32;
  format.channels = state.range(1) ? imgnorm::ChannelOrder::bgr : imgnorm::ChannelOrder::rgb;
  const imgnorm::Normalizer norm(standardize_spec(), imgnorm::ChannelOrder::rgb, format);
  float* out = output_buffer();
  for (auto _ : state) {
    for (int i = 0; i < b.n; ++i) norm.apply(b.view(i), out + i * b.image_bytes());
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(state.range(0) ? "nchw" : "nhwc") + "/" +
                 (state.range(1) ? "bgr" : "rgb"));
  set_counters(state, b.values() * sizeof(float));
}
BENCHMARK(BM_normalize)
    ->ArgNames({"nchw", "bgr"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The plain reference path (the formula in double per pixel), NCHW RGB: what the table saves.
void BM_normalize_reference(benchmark::State& state) {
  const Batch& b = batch();
  const imgnorm::Normalizer norm(
      standardize_spec(), imgnorm::ChannelOrder::rgb,
      {imgnorm::Layout::nchw, imgnorm::DType::float32, imgnorm::ChannelOrder::rgb});
  const imgnorm::Affine affine = norm.affine_for(b.view(0));
  float* out = output_buffer();
  for (auto _ : state) {
    for (int i = 0; i < b.n; ++i)
      imgnorm::detail::apply_reference(b.view(i), affine, false, imgnorm::Layout::nchw,
                                       imgnorm::DType::float32, out + i * b.image_bytes());
    benchmark::ClobberMemory();
  }
  set_counters(state, b.values() * sizeof(float));
}
BENCHMARK(BM_normalize_reference)->Unit(benchmark::kMillisecond)->UseRealTime();

// Exact statistics of the batch: histograms, cross products, per-image sums.
void BM_accumulate(benchmark::State& state) {
  const Batch& b = batch();
  for (auto _ : state) {
    imgnorm::Accumulator acc(3);
    for (int i = 0; i < b.n; ++i) acc.add(b.view(i));
    benchmark::DoNotOptimize(acc);
  }
  set_counters(state, b.values());
}
BENCHMARK(BM_accumulate)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_accumulate_reference(benchmark::State& state) {
  const Batch& b = batch();
  std::vector<imgnorm::ImageView> views;
  for (int i = 0; i < b.n; ++i) views.push_back(b.view(i));
  for (auto _ : state) {
    imgnorm::Accumulator acc = imgnorm::detail::accumulate_reference(3, views);
    benchmark::DoNotOptimize(acc);
  }
  set_counters(state, b.values());
}
BENCHMARK(BM_accumulate_reference)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
