#pragma once
/// \file stats_ref.hpp
/// Internal helpers of the stats module, exposed to the tests: the plain reference accumulation
/// that the fast Accumulator::add must equal bit for bit, and Student's t quantile used by the
/// confidence intervals.

#include <cstdint>
#include <vector>

#include "accumulator_access.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/stats.hpp"

namespace imgnorm::detail {

/// Accumulates `images` (all with `channels` channels) with a plain per-pixel loop and returns the
/// result restored through Accumulator::set_raw (no mean image). Slow, obviously right.
Accumulator accumulate_reference(int channels, const std::vector<ImageView>& images);

/// The 0.975 quantile of Student's t distribution with `df` >= 1 degrees of freedom (the factor of
/// a two-sided 95% interval). Exact series inversion up to 1000 degrees of freedom, the
/// Cornish–Fisher expansion above; 1.959963984540054 as df → ∞.
double t_quantile_975(std::uint64_t df);

/// Largest pixel count (per channel) an Accumulator holds: keeps every uint64 / u128 sum exact.
inline constexpr std::uint64_t kMaxAccumulatedPixels = std::uint64_t{1} << 48;

}  // namespace imgnorm::detail
