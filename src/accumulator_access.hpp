#pragma once
// The exact 128-bit sums of an Accumulator (src/ only): what stats.json stores, what summarize()
// and the confidence intervals read, and what the tests compare.

#include <cstring>
#include <utility>

#include "imgnorm/stats.hpp"

namespace imgnorm {

using u128 = unsigned __int128;

namespace detail {

struct AccumulatorAccess {
  using ClusterSums = Accumulator::ClusterSums;
  /// Σ n_i² over images (n_i = pixels of image i).
  static u128 pixels_squared(const Accumulator& a) { return a.n_n_; }
  /// Σx² of channel c (derived exactly from the histogram).
  static u128 sum_squares(const Accumulator& a, int c) { return a.sum_squares(c); }
  /// Per-image sums of channel c.
  static const ClusterSums& cluster(const Accumulator& a, int c) { return a.cluster_[c]; }
  static void set_raw(Accumulator& a, std::uint64_t images, std::uint64_t pixels,
                      u128 pixels_squared,
                      const std::vector<std::array<std::uint64_t, 256>>& histograms,
                      const std::vector<std::vector<std::uint64_t>>& cross,
                      const std::vector<ClusterSums>& clusters) {
    a.set_raw(images, pixels, pixels_squared, histograms, cross, clusters);
  }
  /// Restores patch moments (stats.json); the caller checked the sizes.
  static void set_patch(Accumulator& a, int k, std::uint64_t count, std::vector<std::uint64_t> sums,
                        std::vector<std::uint64_t> cross) {
    a.patch_ = k;
    a.patch_count_ = count;
    a.patch_sums_ = std::move(sums);
    a.patch_cross_ = std::move(cross);
  }
  static void set_pixel_covariance(Accumulator& a, PixelCovariance pc) {
    a.pixcov_ = std::move(pc);
  }
  /// Every member, as raw bytes, for the distributed jobs (processes of one build exchange them).
  static void append_raw(const Accumulator& a, std::vector<std::uint8_t>& out) {
    auto put = [&](const void* p, std::size_t n) {
      const auto* b = static_cast<const std::uint8_t*>(p);
      out.insert(out.end(), b, b + n);
    };
    const std::uint64_t head[5] = {static_cast<std::uint64_t>(a.channels_), a.images_, a.pixels_,
                                   static_cast<std::uint64_t>(a.mean_size_.width),
                                   static_cast<std::uint64_t>(a.mean_size_.height)};
    put(head, sizeof head);
    put(&a.n_n_, sizeof a.n_n_);
    put(a.hist_.data(), sizeof a.hist_);
    put(a.cross_.data(), sizeof a.cross_);
    for (const ClusterSums& c : a.cluster_) {
      const u128 v[6] = {c.s_s, c.s_n, c.q_q, c.q_s, c.q_n, c.image_std_fixed};
      put(v, sizeof v);
    }
    const std::uint64_t n = a.pixel_sums_.size();
    put(&n, sizeof n);
    put(a.pixel_sums_.data(), n * sizeof(std::uint64_t));
    const std::uint64_t patch[2] = {static_cast<std::uint64_t>(a.patch_), a.patch_count_};
    put(patch, sizeof patch);
    put(a.patch_sums_.data(), a.patch_sums_.size() * sizeof(std::uint64_t));
    put(a.patch_cross_.data(), a.patch_cross_.size() * sizeof(std::uint64_t));
    // The pixel covariance (issue 14: every exact accumulator is reduced): D, then the moments.
    const std::uint64_t d = a.pixcov_.dimension();
    put(&d, sizeof d);
    if (d > 0) {
      const std::vector<double> m = a.pixcov_.moments();
      put(m.data(), m.size() * sizeof(double));
    }
  }
  /// Reads what append_raw wrote at `p` (at least `size` bytes left, checked); returns the bytes
  /// used, 0 when they do not fit.
  static std::size_t read_raw(Accumulator& a, const std::uint8_t* p, std::size_t size) {
    std::size_t at = 0;
    auto get = [&](void* dst, std::size_t n) {
      if (size - at < n) return false;
      if (n > 0) std::memcpy(dst, p + at, n);  // dst may be null for n = 0 (no mean image)
      at += n;
      return true;
    };
    std::uint64_t head[5];
    if (!get(head, sizeof head) || (head[0] != 1 && head[0] != 3)) return 0;
    a = Accumulator(static_cast<int>(head[0]));
    a.images_ = head[1];
    a.pixels_ = head[2];
    a.mean_size_ = {static_cast<int>(head[3]), static_cast<int>(head[4])};
    if (!get(&a.n_n_, sizeof a.n_n_) || !get(a.hist_.data(), sizeof a.hist_) ||
        !get(a.cross_.data(), sizeof a.cross_))
      return 0;
    for (ClusterSums& c : a.cluster_) {
      u128 v[6];
      if (!get(v, sizeof v)) return 0;
      c = {v[0], v[1], v[2], v[3], v[4], v[5]};
    }
    std::uint64_t n = 0;
    if (!get(&n, sizeof n) || n > (size - at) / sizeof(std::uint64_t)) return 0;
    a.pixel_sums_.resize(static_cast<std::size_t>(n));
    get(a.pixel_sums_.data(), static_cast<std::size_t>(n) * sizeof(std::uint64_t));
    std::uint64_t patch[2];
    if (!get(patch, sizeof patch) || patch[0] > static_cast<std::uint64_t>(Accumulator::kMaxPatch))
      return 0;
    a.patch_ = static_cast<int>(patch[0]);
    a.patch_count_ = patch[1];
    const std::size_t dims = static_cast<std::size_t>(a.patch_ * a.patch_) * head[0];
    a.patch_sums_.resize(a.patch_ ? dims : 0);
    a.patch_cross_.resize(a.patch_ ? dims * dims : 0);
    if (!get(a.patch_sums_.data(), a.patch_sums_.size() * sizeof(std::uint64_t)) ||
        !get(a.patch_cross_.data(), a.patch_cross_.size() * sizeof(std::uint64_t)))
      return 0;
    std::uint64_t d = 0;
    if (!get(&d, sizeof d)) return 0;
    if (d > 0) {
      if (d >= (std::uint64_t{1} << 28) || (d + 1) * (d + 1) > (size - at) / sizeof(double))
        return 0;
      std::vector<double> m(static_cast<std::size_t>((d + 1) * (d + 1)));
      get(m.data(), m.size() * sizeof(double));
      a.pixcov_ = PixelCovariance::from_moments(static_cast<std::size_t>(d), m);
    }
    return at;
  }
};

}  // namespace detail

using ClusterSums = detail::AccumulatorAccess::ClusterSums;

}  // namespace imgnorm
