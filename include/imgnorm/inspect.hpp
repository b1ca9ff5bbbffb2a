#pragma once
/// \file inspect.hpp
/// Per-channel statistics of any .npy array (`imgnorm inspect`): shape, dtype, and mean, std, min,
/// max and NaN count per channel, streamed in bounded memory.
///
///     imgnorm::NpyInspection r = imgnorm::inspect_npy("out/images.npy");
///     r.channels[0].mean, r.channels[0].std

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imgnorm/export.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/transform.hpp"

namespace imgnorm {

/// Moments of one channel's finite-or-infinite values (NaNs counted apart).
struct ValueMoments {
  double mean = 0;
  double std = 0;  ///< population std
  double min = 0;
  double max = 0;
  std::uint64_t count = 0;  ///< values other than NaN
  std::uint64_t nan = 0;
};

struct NpyInspection {
  NpyHeader header;
  /// The channel axis, or header.shape.size() when the whole array is one channel.
  std::size_t axis = 0;
  std::vector<ValueMoments> channels;
};

/// Reads `path` in chunks of about 64 MiB. The channel axis: axis 1 for `nchw` on 4-D arrays, the
/// last for `nhwc` (rank >= 3); unset: the last axis when it has 1, 3 or 4 entries, else axis 1 of
/// a 4-D array with 1 or 3 entries there, else none. Sums in long double. Error(interrupted) when
/// `cancel` is raised.
IMGNORM_API NpyInspection inspect_npy(const std::string& path,
                                      std::optional<Layout> layout = std::nullopt,
                                      const std::atomic<bool>* cancel = nullptr);

/// inspect_npy() of a normalize output read as one array (OutputSet: images.npy, or the shards
/// its manifest.json lists, in order): `path` is the output folder or its manifest.json. The
/// channel axis is the manifest's layout unless `layout` is given. header.shape is the set's.
IMGNORM_API NpyInspection inspect_output(const std::string& path,
                                         std::optional<Layout> layout = std::nullopt,
                                         const std::atomic<bool>* cancel = nullptr);

}  // namespace imgnorm
