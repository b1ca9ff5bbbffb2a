#pragma once
// Reading stats.json in two steps (src/ only): normalize --mode zca/pca checks the memory of its
// fit against --max-memory before the (D+1)² pixel-covariance sidecar is loaded.

#include <string>

#include "imgnorm/stats.hpp"

namespace imgnorm::detail {

/// read_stats_file without loading the pixel-covariance sidecar: st.pixel_covariance names it.
StatsFile read_stats_json(const std::string& path);
/// Loads and checks the sidecar st.pixel_covariance names (errors name it) into st.acc; `path` is
/// the stats.json. Nothing to do when there is none or it is already loaded.
void load_pixel_covariance_sidecar(StatsFile& st, const std::string& path);

}  // namespace imgnorm::detail
