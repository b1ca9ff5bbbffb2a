#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "accumulator_access.hpp"
#include "imgnorm/stats.hpp"
#include "stats_ref.hpp"

// Accumulator::add is built twice on x86-64 with GCC or Clang on glibc (target_clones, an ifunc
// picks one at load time): for the baseline and for AVX2, where the cross-product blocks run on
// 256-bit vectors. Integer sums, so both give the same bits; measured on 200 photos at 224×224:
// 16% fewer instructions, 9% less CPU time (docs/design.md, issue 15).
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && !defined(__AVX2__)
#define IMGNORM_CLONE_AVX2 __attribute__((target_clones("avx2", "default")))
#else
#define IMGNORM_CLONE_AVX2
#endif

namespace imgnorm {

namespace {

using detail::kMaxAccumulatedPixels;

// Interleaved sub-histograms: consecutive pixels count into different tables, so a run of equal
// values (flat sky, padding) does not serialize on one counter through store forwarding. Gray has
// one table per pixel, so it gets twice as many. Tables are padded off a 1 KiB stride: with 1 KiB
// tables, equal values in different tables sit a multiple of 4 KiB apart and the CPU's
// store-to-load disambiguation (which compares only the low 12 address bits) stalls on them;
// measured, that made flat images 1.9x slower.
constexpr int kSubHists3 = 4;
constexpr int kSubHists1 = 8;
constexpr int kTables = 12;  // kSubHists3 * 3 == kSubHists1 + 4 spare
constexpr int kTableStride = 256 + 16;
// Pixels counted into the uint32 local histograms before they are folded into uint64: no bin can
// exceed this plus one row (< 2^31 pixels), so it never wraps.
constexpr std::uint64_t kLocalHistFlush = std::uint64_t{1} << 31;

// Cross products of interleaved RGB in blocks of 16 pixels = 48 bytes, so byte lane j always holds
// channel j % 3. Each lane multiplies its byte by a partner in the same pixel: R (j%3 == 0) by B
// two bytes ahead, G and B by the byte one behind (R, G). So lane j%3 == 0 sums R·B, == 1 sums
// G·R, == 2 sums B·G: no lane is wasted, and the loop has a constant trip count, a multiple of the
// vector width, which g++ -O2 vectorizes (u8·u8 fits u16, widened into u32 lanes).
constexpr int kBlockBytes = 48;
// Each u32 lane gains at most 255² per block: 66051 blocks fit; fold well before.
constexpr std::uint32_t kBlocksPerFold = 60000;

struct CrossLanes {
  alignas(64) std::uint32_t acc[kBlockBytes];
};

// Reads p[-1] .. p[49]: the caller keeps both inside the row.
constexpr auto kAheadMask = [] {
  std::array<std::uint8_t, kBlockBytes> m{};
  for (int j = 0; j < kBlockBytes; j += 3) m[j] = 0xff;
  return m;
}();

inline void cross_block(CrossLanes& lanes, const std::uint8_t* p) {
  for (int j = 0; j < kBlockBytes; ++j) {
    const std::uint8_t ahead = p[j + 2], behind = p[j - 1];
    // A mask, not a branch: the vectorizer turns it into and/andnot/or.
    const std::uint8_t partner =
        static_cast<std::uint8_t>((ahead & kAheadMask[j]) | (behind & ~kAheadMask[j]));
    lanes.acc[j] += static_cast<std::uint32_t>(static_cast<std::uint16_t>(p[j] * partner));
  }
}

// Adds the lanes into rg, gb, rb and clears them.
void fold_cross(CrossLanes& lanes, std::uint64_t& rg, std::uint64_t& gb, std::uint64_t& rb) {
  for (int j = 0; j < kBlockBytes; j += 3) {
    rb += lanes.acc[j];
    rg += lanes.acc[j + 1];
    gb += lanes.acc[j + 2];
  }
  std::memset(&lanes, 0, sizeof lanes);
}

inline void cross_pixel(const std::uint8_t* p, std::uint64_t& rg, std::uint64_t& gb,
                        std::uint64_t& rb) {
  const std::uint32_t r = p[0], g = p[1], b = p[2];
  rg += r * g;
  gb += g * b;
  rb += r * b;
}

// One image's moments of one channel derived from its histogram.
struct ChannelMoments {
  std::uint64_t s = 0;  // Σx
  std::uint64_t q = 0;  // Σx²
};

ChannelMoments moments_of(const std::uint64_t* hist) {
  ChannelMoments m;
  for (std::uint64_t v = 0; v < 256; ++v) {
    m.s += v * hist[v];
    m.q += v * v * hist[v];
  }
  return m;
}

// The per-image part every add (fast or reference) ends with.
void add_cluster(ClusterSums& c, std::uint64_t n, std::uint64_t s, std::uint64_t q) {
  const u128 S = s, Q = q, N = n;
  c.s_s += S * S;
  c.s_n += S * N;
  c.q_q += Q * Q;
  c.q_s += Q * S;
  c.q_n += Q * N;
  // n·Q − S² is exact and >= 0 (Cauchy–Schwarz), so the image std is rounded once in sqrt and once
  // in the division: deterministic on every IEEE platform.
  const u128 var_num = N * Q - S * S;
  const double std_i = std::sqrt(static_cast<double>(var_num)) / static_cast<double>(n);
  c.image_std_fixed += static_cast<u128>(std::llround(std::ldexp(std_i, 32)));
}

void check_pixel_budget(std::uint64_t have, std::uint64_t more) {
  if (more > kMaxAccumulatedPixels || have > kMaxAccumulatedPixels - more)
    throw Error(ErrorCode::too_large, "statistics overflow: more than 2^48 pixels per channel");
}

std::string size_text(Size s) { return std::to_string(s.width) + "x" + std::to_string(s.height); }

// Σ a[x]·b[x] exactly: u8·u8 < 2^16, so 65536 products fit a u32 (the loop g++ vectorizes into
// widening multiplies); longer rows are cut into such blocks.
inline std::uint64_t dot_u8(const std::uint8_t* a, const std::uint8_t* b, int n) {
  std::uint64_t total = 0;
  for (int x0 = 0; x0 < n; x0 += 65536) {
    const int x1 = std::min(n, x0 + 65536);
    std::uint32_t s = 0;
    for (int x = x0; x < x1; ++x) s += static_cast<std::uint32_t>(a[x]) * b[x];
    total += s;
  }
  return total;
}

inline std::uint64_t sum_u8(const std::uint8_t* a, int n) {
  std::uint64_t total = 0;
  for (int x0 = 0; x0 < n; x0 += 65536) {
    const int x1 = std::min(n, x0 + 65536);
    std::uint32_t s = 0;
    for (int x = x0; x < x1; ++x) s += a[x];
    total += s;
  }
  return total;
}

// The K×K patch moments of one image, added to `sums` (D = K²·C) and `cross` (D×D). The image is
// split into channel planes; patch dimension i = (dy, dx, c) over the patch positions of row y is
// then the contiguous run of plane c, row y + dy, from column dx, Wp = W − K + 1 long, and
// Σv_i·v_j is a sum over rows of dot products of two such runs. The dot product of pair
// (i, j) at position row y depends only on (c_i, dx_i, c_j, dx_j), the row difference δ = dy_j −
// dy_i and the image row r = y + dy_i: so each such row dot product R(r) is computed once, and a
// pair's sum is a range of R's prefix sums. K·(K·C)² row dot products per image row instead of
// D(D+1)/2 (2.5× fewer at K = 5); exact integers, whatever the order.
void patch_moments(const ImageView& img, int k, std::uint64_t* sums, std::uint64_t* cross) {
  const int C = img.channels, W = img.width, H = img.height;
  const int wp = W - k + 1, hp = H - k + 1;
  const std::size_t dims = static_cast<std::size_t>(k * k * C);
  const std::size_t plane = static_cast<std::size_t>(W) * static_cast<std::size_t>(H);
  std::vector<std::uint8_t> planes(plane * static_cast<std::size_t>(C));
  for (int y = 0; y < H; ++y) {
    const std::uint8_t* p = img.row(y);
    for (int c = 0; c < C; ++c) {
      std::uint8_t* dst = planes.data() + c * plane + static_cast<std::size_t>(y) * W;
      for (int x = 0; x < W; ++x) dst[x] = p[static_cast<std::size_t>(x) * C + c];
    }
  }
  const std::uint8_t* base = planes.data();
  auto run = [&](int c, int r, int dx) {
    return base + c * plane + static_cast<std::size_t>(r) * W + static_cast<std::size_t>(dx);
  };
  auto dim = [&](int dy, int dx, int c) { return static_cast<std::size_t>((dy * k + dx) * C + c); };
  for (int dy = 0; dy < k; ++dy)
    for (int dx = 0; dx < k; ++dx)
      for (int c = 0; c < C; ++c)
        for (int y = 0; y < hp; ++y) sums[dim(dy, dx, c)] += sum_u8(run(c, y + dy, dx), wp);
  std::vector<std::uint64_t> prefix(static_cast<std::size_t>(H) + 1);
  for (int delta = 0; delta < k; ++delta)
    for (int ci = 0; ci < C; ++ci)
      for (int dxi = 0; dxi < k; ++dxi)
        for (int cj = 0; cj < C; ++cj)
          for (int dxj = 0; dxj < k; ++dxj) {
            const int rows = H - delta;  // image rows r whose partner row r + δ exists
            prefix[0] = 0;
            for (int r = 0; r < rows; ++r)
              prefix[r + 1] = prefix[r] + dot_u8(run(ci, r, dxi), run(cj, r + delta, dxj), wp);
            for (int dyi = 0; dyi + delta < k; ++dyi) {
              const std::size_t i = dim(dyi, dxi, ci), j = dim(dyi + delta, dxj, cj);
              const std::uint64_t v = prefix[dyi + hp] - prefix[dyi];
              cross[i * dims + j] += v;
              // δ = 0 visits (j, i) itself (the loops take both orders); δ > 0 never does.
              if (delta > 0) cross[j * dims + i] += v;
            }
          }
}

}  // namespace

Accumulator::Accumulator(int channels) : channels_(channels) {
  if (channels != 1 && channels != 3)
    throw Error(ErrorCode::invalid_argument,
                "statistics need 1 or 3 channels, not " + std::to_string(channels));
}

void Accumulator::enable_mean_image(Size size) {
  if (images_ != 0)
    throw Error(ErrorCode::invalid_argument, "mean image must be enabled before adding images");
  if (size.width <= 0 || size.height <= 0)
    throw Error(ErrorCode::invalid_argument,
                "mean image needs a fixed size, not " + size_text(size));
  // Per-pixel uint64 sums: cap at 2^27 elements (1 GiB) — far above any training resolution.
  const std::uint64_t elems =
      static_cast<std::uint64_t>(size.width) * static_cast<std::uint64_t>(size.height) * channels_;
  if (elems > (std::uint64_t{1} << 27))
    throw Error(ErrorCode::too_large, "mean image of " + size_text(size) + " is too large");
  mean_size_ = size;
  pixel_sums_.assign(elems, 0);
}

void Accumulator::enable_patch(int k) {
  if (images_ != 0)
    throw Error(ErrorCode::invalid_argument, "patch moments must be enabled before adding images");
  if (k < 1 || k > kMaxPatch || k % 2 == 0)
    throw Error(ErrorCode::invalid_argument, "--patch " + std::to_string(k) +
                                                 ": the patch side must be odd, 1 to " +
                                                 std::to_string(kMaxPatch));
  const std::size_t dims = static_cast<std::size_t>(k * k * channels_);
  patch_ = k;
  patch_count_ = 0;
  patch_sums_.assign(dims, 0);
  patch_cross_.assign(dims * dims, 0);
}

void Accumulator::skip_cross_products() {
  if (images_ != 0)
    throw Error(ErrorCode::invalid_argument, "cross products must be skipped before adding images");
  cross_products_ = false;
}

void Accumulator::enable_pixel_covariance(Size size) {
  if (images_ != 0)
    throw Error(ErrorCode::invalid_argument,
                "the pixel covariance must be enabled before adding images");
  if (size.width <= 0 || size.height <= 0)
    throw Error(ErrorCode::invalid_argument,
                "the pixel covariance needs a fixed size, not " + size_text(size));
  pixcov_ = PixelCovariance(static_cast<std::size_t>(size.width) *
                            static_cast<std::size_t>(size.height) * channels_);
}

IMGNORM_CLONE_AVX2 void Accumulator::add(const ImageView& image) {
  if (image.channels != channels_)
    throw Error(ErrorCode::invalid_argument, "image has " + std::to_string(image.channels) +
                                                 " channels, statistics expect " +
                                                 std::to_string(channels_));
  if (image.width <= 0 || image.height <= 0)
    throw Error(ErrorCode::invalid_argument, "cannot add an empty image to the statistics");
  assert(image.stride >= static_cast<std::size_t>(image.width) * channels_);
  const std::uint64_t n =
      static_cast<std::uint64_t>(image.width) * static_cast<std::uint64_t>(image.height);
  check_pixel_budget(pixels_, n);
  const bool mean_image = !pixel_sums_.empty();
  if (mean_image && !(Size{image.width, image.height} == mean_size_))
    throw Error(ErrorCode::invalid_argument, "image is " + size_text({image.width, image.height}) +
                                                 ", mean image expects " + size_text(mean_size_));

  if (patch_ && (image.width < patch_ || image.height < patch_))
    throw Error(ErrorCode::invalid_argument, "image is " + size_text({image.width, image.height}) +
                                                 ", smaller than the " + std::to_string(patch_) +
                                                 "x" + std::to_string(patch_) + " patch (--patch)");
  if (pixcov_.enabled()) pixcov_.add(image);  // checks the size before anything is counted

  const int C = channels_;
  const int w = image.width;
  const std::size_t row_bytes = static_cast<std::size_t>(w) * C;

  alignas(64) std::uint32_t local[kTables][kTableStride];
  const int tables = C == 3 ? kSubHists3 * 3 : kSubHists1;
  const std::size_t local_bytes = sizeof(local[0]) * static_cast<std::size_t>(tables);
  std::memset(local, 0, local_bytes);
  std::uint64_t img_hist[kMaxChannels][256] = {};
  std::uint64_t since_fold = 0;
  auto fold_hist = [&] {
    for (int t = 0; t < tables; ++t) {
      std::uint64_t* dst = img_hist[t % C];
      for (int v = 0; v < 256; ++v) dst[v] += local[t][v];
    }
    std::memset(local, 0, local_bytes);
    since_fold = 0;
  };

  CrossLanes lanes;
  std::memset(&lanes, 0, sizeof lanes);
  std::uint32_t blocks = 0;
  std::uint64_t rg = 0, gb = 0, rb = 0;

  for (int y = 0; y < image.height; ++y) {
    const std::uint8_t* row = image.row(y);
    if (since_fold >= kLocalHistFlush) fold_hist();
    since_fold += static_cast<std::uint64_t>(w);

    if (C == 3) {
      // Table 3·s + c counts channel c of pixels x ≡ s (mod 4).
      int x = 0;
      const std::uint8_t* p = row;
      for (; x + kSubHists3 <= w; x += kSubHists3, p += kSubHists3 * 3) {
        ++local[0][p[0]], ++local[1][p[1]], ++local[2][p[2]];
        ++local[3][p[3]], ++local[4][p[4]], ++local[5][p[5]];
        ++local[6][p[6]], ++local[7][p[7]], ++local[8][p[8]];
        ++local[9][p[9]], ++local[10][p[10]], ++local[11][p[11]];
      }
      for (; x < w; ++x, p += 3) ++local[0][p[0]], ++local[1][p[1]], ++local[2][p[2]];
      if (cross_products_) {
        // Blocks read one byte before and two past themselves: pixel 0 and at least the last
        // pixel are done one at a time, so every read stays inside the row.
        cross_pixel(row, rg, gb, rb);
        std::size_t off = 3;
        for (; off + kBlockBytes + 2 <= row_bytes; off += kBlockBytes) {
          cross_block(lanes, row + off);
          if (++blocks == kBlocksPerFold) {
            fold_cross(lanes, rg, gb, rb);
            blocks = 0;
          }
        }
        for (; off < row_bytes; off += 3) cross_pixel(row + off, rg, gb, rb);
      }
    } else {
      int x = 0;
      for (; x + kSubHists1 <= w; x += kSubHists1) {
        ++local[0][row[x]], ++local[1][row[x + 1]], ++local[2][row[x + 2]];
        ++local[3][row[x + 3]], ++local[4][row[x + 4]], ++local[5][row[x + 5]];
        ++local[6][row[x + 6]], ++local[7][row[x + 7]];
      }
      for (; x < w; ++x) ++local[0][row[x]];
    }

    if (mean_image) {
      std::uint64_t* dst = pixel_sums_.data() + static_cast<std::size_t>(y) * row_bytes;
      for (std::size_t i = 0; i < row_bytes; ++i) dst[i] += row[i];
    }
  }
  fold_hist();
  if (C == 3) fold_cross(lanes, rg, gb, rb);

  for (int c = 0; c < C; ++c) {
    const ChannelMoments m = moments_of(img_hist[c]);
    for (int v = 0; v < 256; ++v) hist_[c][v] += img_hist[c][v];
    add_cluster(cluster_[c], n, m.s, m.q);
    cross_[c][c] += m.q;
  }
  if (C == 3) {
    cross_[0][1] += rg, cross_[1][0] += rg;
    cross_[1][2] += gb, cross_[2][1] += gb;
    cross_[0][2] += rb, cross_[2][0] += rb;
  }
  if (patch_) {
    const std::size_t dims = patch_sums_.size();
    // Into zeroed buffers first: add() changes nothing when it throws (bad_alloc).
    std::vector<std::uint64_t> sums(dims, 0), cross(dims * dims, 0);
    patch_moments(image, patch_, sums.data(), cross.data());
    for (std::size_t i = 0; i < dims; ++i) patch_sums_[i] += sums[i];
    for (std::size_t i = 0; i < cross.size(); ++i) patch_cross_[i] += cross[i];
    patch_count_ += static_cast<std::uint64_t>(image.width - patch_ + 1) *
                    static_cast<std::uint64_t>(image.height - patch_ + 1);
  }
  images_ += 1;
  pixels_ += n;
  n_n_ += static_cast<u128>(n) * n;
}

void Accumulator::merge(const Accumulator& other) {
  if (other.channels_ != channels_)
    throw Error(ErrorCode::invalid_argument, "cannot merge statistics of " +
                                                 std::to_string(other.channels_) + " and " +
                                                 std::to_string(channels_) + " channels");
  if (!(other.mean_size_ == mean_size_) || other.pixel_sums_.size() != pixel_sums_.size())
    throw Error(ErrorCode::invalid_argument, "cannot merge statistics with different mean images");
  if (other.patch_ != patch_)
    throw Error(
        ErrorCode::invalid_argument,
        "cannot merge statistics with different patch moments (" +
            (patch_ ? "--patch " + std::to_string(patch_) : std::string("none")) + " vs " +
            (other.patch_ ? "--patch " + std::to_string(other.patch_) : std::string("none")) + ")");
  if (other.cross_products_ != cross_products_)
    throw Error(ErrorCode::invalid_argument,
                "cannot merge statistics with and without cross products");
  if (other.pixcov_.dimension() != pixcov_.dimension())
    throw Error(ErrorCode::invalid_argument,
                pixcov_.enabled() && other.pixcov_.enabled()
                    ? "cannot merge statistics with pixel covariances of different sizes"
                    : "cannot merge statistics with and without a pixel covariance "
                      "(stats --pixel-covariance)");
  check_pixel_budget(pixels_, other.pixels_);
  pixcov_.merge(other.pixcov_);  // the one that can still throw (overflow): before the rest
  images_ += other.images_;
  pixels_ += other.pixels_;
  n_n_ += other.n_n_;
  for (int c = 0; c < channels_; ++c) {
    for (int v = 0; v < 256; ++v) hist_[c][v] += other.hist_[c][v];
    for (int d = 0; d < channels_; ++d) cross_[c][d] += other.cross_[c][d];
    ClusterSums& a = cluster_[c];
    const ClusterSums& b = other.cluster_[c];
    a.s_s += b.s_s;
    a.s_n += b.s_n;
    a.q_q += b.q_q;
    a.q_s += b.q_s;
    a.q_n += b.q_n;
    a.image_std_fixed += b.image_std_fixed;
  }
  for (std::size_t i = 0; i < pixel_sums_.size(); ++i) pixel_sums_[i] += other.pixel_sums_[i];
  patch_count_ += other.patch_count_;
  for (std::size_t i = 0; i < patch_sums_.size(); ++i) patch_sums_[i] += other.patch_sums_[i];
  for (std::size_t i = 0; i < patch_cross_.size(); ++i) patch_cross_[i] += other.patch_cross_[i];
}

PatchSummary summarize_patches(const Accumulator& acc, int ddof) {
  if (acc.patch_size() == 0)
    throw Error(ErrorCode::invalid_argument,
                "the statistics have no patch moments (compute them with imgnorm stats --patch K)");
  PatchSummary p;
  p.size = acc.patch_size();
  p.channels = acc.channels();
  p.count = acc.patch_count();
  if (p.count <= static_cast<std::uint64_t>(ddof))
    throw Error(ErrorCode::empty, "the statistics have no patch to compute a covariance from");
  const std::vector<std::uint64_t>& s = acc.patch_sums();
  const std::vector<std::uint64_t>& q = acc.patch_cross();
  const std::size_t dims = s.size();
  const double n = static_cast<double>(p.count);
  p.mean.resize(dims);
  for (std::size_t i = 0; i < dims; ++i) p.mean[i] = static_cast<double>(s[i]) / n;
  // N·Σv_iv_j − Σv_i·Σv_j exactly: N ≤ 2^48 and Σv_iv_j < 2^64, Σv_i < 2^56, so both products
  // fit 128 bits; the difference may be negative.
  using i128 = __int128;
  const double denom = n * static_cast<double>(p.count - static_cast<std::uint64_t>(ddof));
  p.covariance.resize(dims * dims);
  for (std::size_t i = 0; i < dims; ++i)
    for (std::size_t j = 0; j < dims; ++j) {
      const i128 num = static_cast<i128>(static_cast<u128>(p.count) * q[i * dims + j]) -
                       static_cast<i128>(static_cast<u128>(s[i]) * s[j]);
      p.covariance[i * dims + j] = static_cast<double>(num) / denom;
    }
  return p;
}

std::uint64_t Accumulator::sum(int c) const {
  std::uint64_t s = 0;
  for (std::uint64_t v = 0; v < 256; ++v) s += v * hist_[c][v];
  return s;
}

u128 Accumulator::sum_squares(int c) const {
  u128 q = 0;
  for (std::uint64_t v = 0; v < 256; ++v) q += static_cast<u128>(v * v) * hist_[c][v];
  return q;
}

void Accumulator::set_raw(std::uint64_t images, std::uint64_t pixels, u128 pixels_squared,
                          const std::vector<std::array<std::uint64_t, 256>>& histograms,
                          const std::vector<std::vector<std::uint64_t>>& cross,
                          const std::vector<ClusterSums>& clusters) {
  const int C = static_cast<int>(histograms.size());
  assert(C == 1 || C == 3);
  assert(cross.size() == histograms.size() && clusters.size() == histograms.size());
  *this = Accumulator(C);
  images_ = images;
  pixels_ = pixels;
  n_n_ = pixels_squared;
  for (int c = 0; c < C; ++c) {
    hist_[c] = histograms[c];
    assert(cross[c].size() == histograms.size());
    for (int d = 0; d < C; ++d) cross_[c][d] = cross[c][d];
    cluster_[c] = clusters[c];
  }
}

// ---------------------------------------------------------------------------------------------
// Reference and t quantile

namespace detail {

Accumulator accumulate_reference(int channels, const std::vector<ImageView>& images) {
  const int C = channels;
  std::uint64_t n_images = 0, pixels = 0;
  u128 n_n = 0;
  std::vector<std::array<std::uint64_t, 256>> hist(C);
  for (auto& h : hist) h.fill(0);
  std::vector<std::vector<std::uint64_t>> cross(C, std::vector<std::uint64_t>(C, 0));
  std::vector<ClusterSums> clusters(C);
  for (const ImageView& img : images) {
    assert(img.channels == C);
    const std::uint64_t n = static_cast<std::uint64_t>(img.width) * img.height;
    std::vector<std::uint64_t> s(C, 0), q(C, 0);
    for (int y = 0; y < img.height; ++y) {
      for (int x = 0; x < img.width; ++x) {
        const std::uint8_t* p = img.row(y) + static_cast<std::size_t>(x) * C;
        for (int i = 0; i < C; ++i) {
          hist[i][p[i]] += 1;
          s[i] += p[i];
          q[i] += static_cast<std::uint64_t>(p[i]) * p[i];
          for (int j = 0; j < C; ++j) cross[i][j] += static_cast<std::uint64_t>(p[i]) * p[j];
        }
      }
    }
    for (int i = 0; i < C; ++i) add_cluster(clusters[i], n, s[i], q[i]);
    n_images += 1;
    pixels += n;
    n_n += static_cast<u128>(n) * n;
  }
  Accumulator acc(C);
  detail::AccumulatorAccess::set_raw(acc, n_images, pixels, n_n, hist, cross, clusters);
  return acc;
}

namespace {

// P(|T| <= t) for integer df: the closed finite series of Abramowitz & Stegun 26.7.3–26.7.4.
double t_two_sided_cdf(double t, std::uint64_t df) {
  const double theta = std::atan(t / std::sqrt(static_cast<double>(df)));
  const double s = std::sin(theta), c = std::cos(theta), c2 = c * c;
  if (df % 2 == 1) {
    double sum = 0;
    if (df > 1) {
      double term = c;
      sum = term;
      for (std::uint64_t k = 1; 2 * k + 1 <= df - 2; ++k) {
        term *= c2 * static_cast<double>(2 * k) / static_cast<double>(2 * k + 1);
        sum += term;
      }
    }
    return 2.0 / M_PI * (theta + s * sum);
  }
  double term = 1, sum = 1;
  for (std::uint64_t k = 1; 2 * k <= df - 2; ++k) {
    term *= c2 * static_cast<double>(2 * k - 1) / static_cast<double>(2 * k);
    sum += term;
  }
  return s * sum;
}

}  // namespace

double t_quantile_975(std::uint64_t df) {
  assert(df >= 1);
  constexpr double z = 1.959963984540054;  // standard normal 0.975 quantile
  if (df > 1000) {
    // Cornish–Fisher expansion (A&S 26.7.5); the error is O(df^-5), below 1e-15 here.
    const double v = static_cast<double>(df);
    const double z2 = z * z, z3 = z2 * z, z5 = z3 * z2, z7 = z5 * z2, z9 = z7 * z2;
    const double g1 = (z3 + z) / 4;
    const double g2 = (5 * z5 + 16 * z3 + 3 * z) / 96;
    const double g3 = (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / 384;
    const double g4 = (79 * z9 + 776 * z7 + 1482 * z5 - 1920 * z3 - 945 * z) / 92160;
    return z + g1 / v + g2 / (v * v) + g3 / (v * v * v) + g4 / (v * v * v * v);
  }
  // Bisection on the monotone CDF; t(0.975, 1) = 12.7 is the largest.
  double lo = 0, hi = 16;
  for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (t_two_sided_cdf(mid, df) < 0.95 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Summaries

namespace {

// The value at 0-based rank k of the sorted values counted by hist (k < total).
int order_statistic(const std::array<std::uint64_t, 256>& hist, std::uint64_t k) {
  std::uint64_t cum = 0;
  for (int v = 0; v < 256; ++v) {
    cum += hist[v];
    if (cum > k) return v;
  }
  assert(false);
  return 255;
}

std::uint64_t total_of(const std::array<std::uint64_t, 256>& hist) {
  std::uint64_t n = 0;
  for (std::uint64_t h : hist) n += h;
  return n;
}

using i128 = __int128;

// (N·a − b) / (N·(N − ddof)) with the numerator exact, rounded to double once in the end (through
// long double).
double moment_ratio(i128 numerator, std::uint64_t n, int ddof) {
  const long double den =
      static_cast<long double>(n) * static_cast<long double>(n - static_cast<std::uint64_t>(ddof));
  return static_cast<double>(static_cast<long double>(numerator) / den);
}

}  // namespace

double histogram_percentile(const std::array<std::uint64_t, 256>& hist, double p) {
  if (!(p >= 0 && p <= 100))
    throw Error(ErrorCode::invalid_argument,
                "percentile must be in 0..100, not " + std::to_string(p));
  const std::uint64_t n = total_of(hist);
  if (n == 0) throw Error(ErrorCode::empty, "percentile of no values");
  // numpy 'linear' (Hyndman & Fan 7), evaluated as numpy does: q = p / 100, index (n − 1)·q,
  // _lerp's two-sided formula.
  const double q = p / 100.0;
  const double h = static_cast<double>(n - 1) * q;
  if (h >= static_cast<double>(n - 1)) return order_statistic(hist, n - 1);
  const double lo_index = std::floor(h);
  const double t = h - lo_index;
  const std::uint64_t k = static_cast<std::uint64_t>(lo_index);
  const double a = order_statistic(hist, k);
  const double b = order_statistic(hist, k + 1);
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

Summary summarize(const Accumulator& acc, int ddof, const SampleInfo* sample) {
  if (ddof != 0 && ddof != 1)
    throw Error(ErrorCode::invalid_argument, "ddof must be 0 or 1, not " + std::to_string(ddof));
  const std::uint64_t N = acc.pixels();
  if (N == 0 || acc.images() == 0)
    throw Error(ErrorCode::empty, "no pixels to compute statistics of");
  if (N <= static_cast<std::uint64_t>(ddof))
    throw Error(ErrorCode::invalid_argument, "std with ddof 1 needs at least 2 pixels");
  const int C = acc.channels();
  Summary out;
  out.channels = C;
  out.images = acc.images();
  out.pixels = N;
  out.ddof = ddof;
  out.channel.resize(C);
  std::vector<std::uint64_t> S(C);
  for (int c = 0; c < C; ++c) S[c] = acc.sum(c);

  for (int c = 0; c < C; ++c) {
    ChannelSummary& cs = out.channel[c];
    const auto& hist = acc.histogram(c);
    // Below 2^53 both operands are exact doubles and one IEEE division is exactly numpy's
    // (pairwise float64 sums of u8 values are exact there too).
    if (S[c] < (std::uint64_t{1} << 53))
      cs.mean = static_cast<double>(S[c]) / static_cast<double>(N);
    else
      cs.mean = static_cast<double>(static_cast<long double>(S[c]) / static_cast<long double>(N));
    const u128 q = detail::AccumulatorAccess::sum_squares(acc, c);
    const u128 var_num = static_cast<u128>(N) * q - static_cast<u128>(S[c]) * S[c];
    const long double var_ld = static_cast<long double>(var_num) /
                               (static_cast<long double>(N) * static_cast<long double>(N - ddof));
    cs.variance = static_cast<double>(var_ld);
    cs.std = static_cast<double>(std::sqrt(var_ld));
    cs.mean_unit = cs.mean / 255.0;
    cs.std_unit = cs.std / 255.0;
    int lo = 0, hi = 255;
    while (hist[lo] == 0) ++lo;
    while (hist[hi] == 0) --hi;
    cs.min = lo;
    cs.max = hi;
    // numpy.median: the middle value, or the mean of the two middle values.
    if (N % 2 == 1)
      cs.median = order_statistic(hist, N / 2);
    else
      cs.median = (static_cast<double>(order_statistic(hist, N / 2 - 1)) +
                   static_cast<double>(order_statistic(hist, N / 2))) /
                  2.0;
    static constexpr double kPercentiles[4] = {1, 5, 95, 99};
    for (int i = 0; i < 4; ++i) cs.percentiles[i] = histogram_percentile(hist, kPercentiles[i]);
    cs.mean_image_std = static_cast<double>(
        static_cast<long double>(detail::AccumulatorAccess::cluster(acc, c).image_std_fixed) /
        4294967296.0L / static_cast<long double>(acc.images()));
  }

  if (acc.has_cross_products()) out.covariance.resize(static_cast<std::size_t>(C) * C);
  for (int i = 0; i < C && acc.has_cross_products(); ++i) {
    for (int j = 0; j < C; ++j) {
      const i128 num = static_cast<i128>(static_cast<u128>(N) * acc.cross(i, j)) -
                       static_cast<i128>(static_cast<u128>(S[i]) * S[j]);
      out.covariance[static_cast<std::size_t>(i) * C + j] = moment_ratio(num, N, ddof);
    }
  }
  if (acc.has_cross_products())
    symmetric_eigen(out.covariance, C, out.eigenvalues, out.eigenvectors);

  // Confidence intervals: images are clusters of correlated pixels, so the sampling unit is the
  // image. See docs/statistics.md for the derivation.
  const std::uint64_t m = acc.images();
  if (sample != nullptr && sample->sampled >= 2 && m >= 2 && sample->population > 0) {
    const long double f =
        std::min<long double>(1.0L, static_cast<long double>(sample->sampled) /
                                        static_cast<long double>(sample->population));
    const long double t = detail::t_quantile_975(m - 1);
    const long double M = static_cast<long double>(m);
    const long double n_bar = static_cast<long double>(N) / M;
    const long double scale = (1.0L - f) / (M * (M - 1) * n_bar * n_bar);
    const long double nn = static_cast<long double>(detail::AccumulatorAccess::pixels_squared(acc));
    for (int c = 0; c < C; ++c) {
      ChannelSummary& cs = out.channel[c];
      const ClusterSums& k = detail::AccumulatorAccess::cluster(acc, c);
      const long double ss = static_cast<long double>(k.s_s), sn = static_cast<long double>(k.s_n);
      const long double qq = static_cast<long double>(k.q_q), qs = static_cast<long double>(k.q_s);
      const long double qn = static_cast<long double>(k.q_n);
      const long double R = static_cast<long double>(S[c]) / static_cast<long double>(N);
      const long double R2 =
          static_cast<long double>(detail::AccumulatorAccess::sum_squares(acc, c)) /
          static_cast<long double>(N);
      // Σd² with d_i = S_i − R·n_i.
      const long double dd = std::max(0.0L, ss - 2 * R * sn + R * R * nn);
      // Σu² with u_i = Q_i + a·S_i + b·n_i, a = −2R, b = 2R² − R2.
      const long double a = -2 * R, b = 2 * R * R - R2;
      const long double uu =
          std::max(0.0L, qq + a * a * ss + b * b * nn + 2 * a * qs + 2 * b * qn + 2 * a * b * sn);
      const long double se_mean = std::sqrt(dd * scale);
      const long double half_mean = t * se_mean;
      cs.mean_ci = Interval{static_cast<double>(R - half_mean), static_cast<double>(R + half_mean)};
      const long double sd = cs.std;
      const long double se_sd = sd > 0 ? std::sqrt(uu * scale) / (2 * sd) : 0.0L;
      const long double half_sd = t * se_sd;
      cs.std_ci = Interval{static_cast<double>(std::max(0.0L, sd - half_sd)),
                           static_cast<double>(sd + half_sd)};
    }
  }
  return out;
}

}  // namespace imgnorm

namespace imgnorm {

void symmetric_eigen(const std::vector<double>& a_in, int n, std::vector<double>& values,
                     std::vector<double>& vectors) {
  const std::size_t N = static_cast<std::size_t>(n);
  assert(a_in.size() == N * N);
  std::vector<double> a = a_in, v(N * N, 0.0);
  for (std::size_t i = 0; i < N; ++i) v[i * N + i] = 1;
  auto at = [&](std::vector<double>& m, std::size_t i, std::size_t j) -> double& {
    return m[i * N + j];
  };
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, total = 0;
    for (std::size_t i = 0; i < N; ++i)
      for (std::size_t j = 0; j < N; ++j) {
        total += at(a, i, j) * at(a, i, j);
        if (i != j) off += at(a, i, j) * at(a, i, j);
      }
    if (off == 0 || off <= 1e-32 * total) break;
    for (std::size_t p = 0; p + 1 < N; ++p)
      for (std::size_t q = p + 1; q < N; ++q) {
        const double apq = at(a, p, q);
        if (apq == 0) continue;
        // The rotation that zeroes a[p][q] (Golub & Van Loan, the symmetric Schur decomposition).
        const double theta = (at(a, q, q) - at(a, p, p)) / (2 * apq);
        const double t =
            (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (std::size_t k = 0; k < N; ++k) {  // A ← A·J
          const double akp = at(a, k, p), akq = at(a, k, q);
          at(a, k, p) = c * akp - s * akq;
          at(a, k, q) = s * akp + c * akq;
        }
        for (std::size_t k = 0; k < N; ++k) {  // A ← Jᵀ·A
          const double apk = at(a, p, k), aqk = at(a, q, k);
          at(a, p, k) = c * apk - s * aqk;
          at(a, q, k) = s * apk + c * aqk;
        }
        for (std::size_t k = 0; k < N; ++k) {  // V ← V·J
          const double vkp = at(v, k, p), vkq = at(v, k, q);
          at(v, k, p) = c * vkp - s * vkq;
          at(v, k, q) = s * vkp + c * vkq;
        }
      }
  }
  std::vector<std::size_t> order(N);
  for (std::size_t i = 0; i < N; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return at(a, x, x) > at(a, y, y); });
  values.assign(N, 0);
  vectors.assign(N * N, 0);
  for (std::size_t k = 0; k < N; ++k) {
    const std::size_t src = order[k];
    values[k] = at(a, src, src);
    std::size_t big = 0;
    for (std::size_t i = 1; i < N; ++i)
      if (std::fabs(at(v, i, src)) > std::fabs(at(v, big, src))) big = i;
    const double sign = at(v, big, src) < 0 ? -1.0 : 1.0;
    for (std::size_t i = 0; i < N; ++i) vectors[i * N + k] = sign * at(v, i, src);
  }
}

}  // namespace imgnorm
