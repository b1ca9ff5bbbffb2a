#include "whitening_kernel.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>

#include "imgnorm/dtype.hpp"
#include "imgnorm/recipe.hpp"
#include "imgnorm/transform.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define IMGNORM_WHITENING_AVX2 1
#endif

namespace imgnorm::detail {

namespace {

constexpr std::size_t kPanel = WhiteningKernel::kPanel;
constexpr std::size_t kGroup = WhiteningKernel::kGroup;
constexpr std::size_t kBlock = WhiteningKernel::kBlock;

// The reference order over the packed panel: y[b][r] for the batch rows [b0, b0+mb) and the
// panel's 12 outputs, j over [j0, j1), the running sum carried in y (0 when j0 == 0).
void tile_portable(const double* panel, const double* zp, std::size_t mb, std::size_t j0,
                   std::size_t j1, double* y, std::size_t ldy) {
  for (std::size_t m = 0; m < mb; ++m)
    for (std::size_t r = 0; r < kPanel; ++r) {
      double acc = j0 == 0 ? 0.0 : y[m * ldy + r];
      for (std::size_t j = j0; j < j1; ++j)
        acc = std::fma(panel[j * kPanel + r], zp[j * kGroup + m], acc);
      y[m * ldy + r] = acc;
    }
}

#ifdef IMGNORM_WHITENING_AVX2
// MB batch rows × 12 outputs in 3·MB accumulators; lane r of accumulator (m, v) is output 4v + r
// of row m, one fma per j in order: the reference's operations exactly (_mm256_fmadd_pd rounds
// once, as std::fma). Named variables rather than an array: GCC 12 keeps an array of __m256d in
// memory and stores all of it every iteration (half the speed).
template <int MB>
__attribute__((target("avx2,fma"))) void tile_avx2(const double* panel, const double* zp,
                                                   std::size_t j0, std::size_t j1, double* y,
                                                   std::size_t ldy) {
  __m256d a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32;
  a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = a30 = a31 = a32 = _mm256_setzero_pd();
  if (j0 != 0) {
    a00 = _mm256_loadu_pd(y), a01 = _mm256_loadu_pd(y + 4), a02 = _mm256_loadu_pd(y + 8);
    if constexpr (MB > 1)
      a10 = _mm256_loadu_pd(y + ldy), a11 = _mm256_loadu_pd(y + ldy + 4),
      a12 = _mm256_loadu_pd(y + ldy + 8);
    if constexpr (MB > 2)
      a20 = _mm256_loadu_pd(y + 2 * ldy), a21 = _mm256_loadu_pd(y + 2 * ldy + 4),
      a22 = _mm256_loadu_pd(y + 2 * ldy + 8);
    if constexpr (MB > 3)
      a30 = _mm256_loadu_pd(y + 3 * ldy), a31 = _mm256_loadu_pd(y + 3 * ldy + 4),
      a32 = _mm256_loadu_pd(y + 3 * ldy + 8);
  }
  const double* w = panel + j0 * kPanel;
  const double* z = zp + j0 * kGroup;
  for (std::size_t j = j0; j < j1; ++j, w += kPanel, z += kGroup) {
    const __m256d w0 = _mm256_loadu_pd(w), w1 = _mm256_loadu_pd(w + 4), w2 = _mm256_loadu_pd(w + 8);
    __m256d b = _mm256_broadcast_sd(z);
    a00 = _mm256_fmadd_pd(w0, b, a00), a01 = _mm256_fmadd_pd(w1, b, a01),
    a02 = _mm256_fmadd_pd(w2, b, a02);
    if constexpr (MB > 1) {
      b = _mm256_broadcast_sd(z + 1);
      a10 = _mm256_fmadd_pd(w0, b, a10), a11 = _mm256_fmadd_pd(w1, b, a11),
      a12 = _mm256_fmadd_pd(w2, b, a12);
    }
    if constexpr (MB > 2) {
      b = _mm256_broadcast_sd(z + 2);
      a20 = _mm256_fmadd_pd(w0, b, a20), a21 = _mm256_fmadd_pd(w1, b, a21),
      a22 = _mm256_fmadd_pd(w2, b, a22);
    }
    if constexpr (MB > 3) {
      b = _mm256_broadcast_sd(z + 3);
      a30 = _mm256_fmadd_pd(w0, b, a30), a31 = _mm256_fmadd_pd(w1, b, a31),
      a32 = _mm256_fmadd_pd(w2, b, a32);
    }
  }
  _mm256_storeu_pd(y, a00), _mm256_storeu_pd(y + 4, a01), _mm256_storeu_pd(y + 8, a02);
  if constexpr (MB > 1)
    _mm256_storeu_pd(y + ldy, a10), _mm256_storeu_pd(y + ldy + 4, a11),
        _mm256_storeu_pd(y + ldy + 8, a12);
  if constexpr (MB > 2)
    _mm256_storeu_pd(y + 2 * ldy, a20), _mm256_storeu_pd(y + 2 * ldy + 4, a21),
        _mm256_storeu_pd(y + 2 * ldy + 8, a22);
  if constexpr (MB > 3)
    _mm256_storeu_pd(y + 3 * ldy, a30), _mm256_storeu_pd(y + 3 * ldy + 4, a31),
        _mm256_storeu_pd(y + 3 * ldy + 8, a32);
}

__attribute__((target("avx2,fma"))) void run_avx2(const double* packed, std::size_t dims,
                                                  const double* zp, std::size_t batch, double* y,
                                                  std::size_t ldy, std::size_t p0, std::size_t p1) {
  for (std::size_t j0 = 0; j0 < dims; j0 += kBlock) {
    const std::size_t j1 = std::min(dims, j0 + kBlock);
    for (std::size_t p = p0; p < p1; ++p) {
      const double* panel = packed + p * dims * kPanel;
      for (std::size_t b = 0; b < batch; b += kGroup) {
        const double* zg = zp + b * dims;  // group b / 4: dims × 4 values
        double* yb = y + b * ldy + p * kPanel;
        switch (std::min(kGroup, batch - b)) {
          case 4:
            tile_avx2<4>(panel, zg, j0, j1, yb, ldy);
            break;
          case 3:
            tile_avx2<3>(panel, zg, j0, j1, yb, ldy);
            break;
          case 2:
            tile_avx2<2>(panel, zg, j0, j1, yb, ldy);
            break;
          default:
            tile_avx2<1>(panel, zg, j0, j1, yb, ldy);
            break;
        }
      }
    }
  }
}

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

}  // namespace

WhiteningKernel::WhiteningKernel(const double* w, std::size_t rows, std::size_t dims)
    : rows_(rows), dims_(dims), panels_((rows + kPanel - 1) / kPanel) {
  packed_.assign(panels_ * dims_ * kPanel, 0.0);
  for (std::size_t i = 0; i < rows_; ++i) {
    double* panel = packed_.data() + (i / kPanel) * dims_ * kPanel;
    for (std::size_t j = 0; j < dims_; ++j) panel[j * kPanel + i % kPanel] = w[i * dims_ + j];
  }
}

bool WhiteningKernel::vectorized() {
#ifdef IMGNORM_WHITENING_AVX2
  return cpu_has_avx2_fma();
#else
  return false;
#endif
}

void WhiteningKernel::run_panels(const double* z, std::size_t batch, double* y, std::size_t p0,
                                 std::size_t p1, bool portable) const {
  const std::size_t ldy = stride();
  if (dims_ == 0) {  // no j: every sum is 0
    for (std::size_t b = 0; b < batch; ++b)
      std::fill(y + b * ldy + p0 * kPanel, y + b * ldy + p1 * kPanel, 0.0);
    return;
  }
#ifdef IMGNORM_WHITENING_AVX2
  if (!portable && cpu_has_avx2_fma()) {
    run_avx2(packed_.data(), dims_, z, batch, y, ldy, p0, p1);
    return;
  }
#endif
  (void)portable;
  for (std::size_t j0 = 0; j0 < dims_; j0 += kBlock) {
    const std::size_t j1 = std::min(dims_, j0 + kBlock);
    for (std::size_t p = p0; p < p1; ++p)
      for (std::size_t b = 0; b < batch; b += kGroup)
        tile_portable(packed_.data() + p * dims_ * kPanel, z + b * dims_,
                      std::min(kGroup, batch - b), j0, j1, y + b * ldy + p * kPanel, ldy);
  }
}

void WhiteningKernel::run_parallel(const double* z, std::size_t batch, double* y) const {
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, panels_),
                    [&](const tbb::blocked_range<std::size_t>& r) {
                      run_panels(z, batch, y, r.begin(), r.end());
                    });
}

void WhiteningKernel::pack_rows(const double* z, std::size_t batch, std::size_t dims, double* zp) {
  std::fill(zp, zp + packed_size(batch, dims), 0.0);
  for (std::size_t b = 0; b < batch; ++b) pack_row(z + b * dims, b, dims, zp);
}

void whitening_reference(const double* w, std::size_t rows, std::size_t dims, const double* z,
                         std::size_t batch, double* y, std::size_t ldy) {
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t i = 0; i < rows; ++i) {
      double acc = 0.0;
      for (std::size_t j = 0; j < dims; ++j) acc = std::fma(w[i * dims + j], z[b * dims + j], acc);
      y[b * ldy + i] = acc;
    }
}

// ---- FullImageBatch ----

FullImageBatch::FullImageBatch(const Normalizer& n, std::size_t capacity)
    : norm_(&n),
      kernel_(&FullImageAccess::kernel(n)),
      capacity_(std::max<std::size_t>(capacity, 1)),
      z_(WhiteningKernel::packed_size(capacity_, kernel_->dims())),
      y_(capacity_ * kernel_->stride()),
      row_z_(kernel_->dims()),
      sizes_(capacity_),
      row_(kernel_->rows() * dtype_size(n.format().dtype)) {}

std::size_t FullImageBatch::bytes_per_image(const Normalizer& n) {
  const WhiteningKernel& k = FullImageAccess::kernel(n);
  return (k.dims() + k.stride()) * sizeof(double);
}

std::size_t FullImageBatch::capacity_for(const Normalizer& n, std::uint64_t bytes,
                                         std::size_t images) {
  const std::uint64_t fit = bytes / std::max<std::size_t>(bytes_per_image(n), 1);
  return static_cast<std::size_t>(std::max<std::uint64_t>(
      1, std::min<std::uint64_t>({fit, kDefaultCapacity, static_cast<std::uint64_t>(images)})));
}

void FullImageBatch::add(const ImageView& img) {
  FullImageAccess::centre(*norm_, img, row_z_.data());
  WhiteningKernel::pack_row(row_z_.data(), count_, kernel_->dims(), z_.data());
  sizes_[count_] = {img.width, img.height};
  ++count_;
}

void FullImageBatch::add_values(const double* values, int width, int height) {
  FullImageAccess::centre_values(*norm_, values, width, height, row_z_.data());
  WhiteningKernel::pack_row(row_z_.data(), count_, kernel_->dims(), z_.data());
  sizes_[count_] = {width, height};
  ++count_;
}

}  // namespace imgnorm::detail
