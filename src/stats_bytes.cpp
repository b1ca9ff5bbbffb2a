// to_bytes / stats_from_bytes (include/imgnorm/stats.hpp): stats.json's text plus the whole-image
// moments, which stats.json keeps in a sidecar file, as one block (Python pickles Stats so).

#include <cstring>

#include "accumulator_access.hpp"
#include "imgnorm/pixel_covariance.hpp"
#include "imgnorm/stats.hpp"

namespace imgnorm {

namespace {

// "imgnorm-stats-bytes 1": text length, text, D (0: no moments), then (D+1)² doubles.
constexpr char kMagic[8] = {'i', 'n', 's', 't', 'b', 'y', 0, 1};

void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorCode::format, "statistics bytes: " + what);
}

}  // namespace

std::vector<std::uint8_t> to_bytes(const StatsFile& stats) {
  std::vector<std::uint8_t> out(kMagic, kMagic + sizeof kMagic);
  const std::string text = to_json(stats);
  put_u64(out, text.size());
  out.insert(out.end(), text.begin(), text.end());
  const PixelCovariance& pc = stats.acc.pixel_covariance();
  put_u64(out, pc.enabled() ? pc.dimension() : 0);
  if (pc.enabled()) {
    const std::vector<double> m = pc.moments();
    const auto* p = reinterpret_cast<const std::uint8_t*>(m.data());
    out.insert(out.end(), p, p + m.size() * sizeof(double));
  }
  return out;
}

StatsFile stats_from_bytes(const std::vector<std::uint8_t>& bytes) {
  std::size_t at = 0;
  auto take = [&](void* dst, std::size_t n) {
    if (bytes.size() - at < n) bad("truncated");
    std::memcpy(dst, bytes.data() + at, n);
    at += n;
  };
  auto u64 = [&] {
    std::uint64_t v;
    take(&v, sizeof v);
    return v;
  };
  char magic[sizeof kMagic];
  take(magic, sizeof magic);
  if (std::memcmp(magic, kMagic, sizeof kMagic) != 0) bad("not written by imgnorm's to_bytes");
  const std::uint64_t n = u64();
  if (n > bytes.size() - at) bad("truncated");
  std::string text(reinterpret_cast<const char*>(bytes.data() + at), static_cast<std::size_t>(n));
  at += static_cast<std::size_t>(n);
  StatsFile st = stats_from_json(text);
  const std::uint64_t d = u64();
  if (d > 0) {
    if (d > (std::uint64_t{1} << 20)) bad("dimension " + std::to_string(d));
    const std::size_t count = static_cast<std::size_t>((d + 1) * (d + 1));
    if ((bytes.size() - at) / sizeof(double) < count) bad("truncated");
    std::vector<double> m(count);
    take(m.data(), count * sizeof(double));
    detail::AccumulatorAccess::set_pixel_covariance(
        st.acc, PixelCovariance::from_moments(static_cast<std::size_t>(d), m));
  }
  if (at != bytes.size()) bad("trailing bytes");
  return st;
}

}  // namespace imgnorm
