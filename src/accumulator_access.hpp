#pragma once
// The exact 128-bit sums of an Accumulator (src/ only): what stats.json stores, what summarize()
// and the confidence intervals read, and what the tests compare.

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
};

}  // namespace detail

using ClusterSums = detail::AccumulatorAccess::ClusterSums;

}  // namespace imgnorm
