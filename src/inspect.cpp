#include "imgnorm/inspect.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "imgnorm/error.hpp"
#include "imgnorm/output_set.hpp"

namespace imgnorm {

namespace {

double element(const std::uint8_t* p, DType dtype) {
  switch (dtype) {
    case DType::bool_:
    case DType::uint8:
      return *p;
    case DType::uint16: {
      std::uint16_t x;
      std::memcpy(&x, p, 2);
      return x;
    }
    case DType::int32: {
      std::int32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case DType::int64: {
      std::int64_t x;
      std::memcpy(&x, p, 8);
      return static_cast<double>(x);
    }
    case DType::float16: {
      std::uint16_t x;
      std::memcpy(&x, p, 2);
      return half_to_float(x);
    }
    case DType::float32: {
      float x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case DType::float64: {
      double x;
      std::memcpy(&x, p, 8);
      return x;
    }
  }
  return 0;
}

std::size_t channel_axis(const std::vector<std::uint64_t>& sh, std::optional<Layout> layout) {
  if (layout == Layout::nchw && sh.size() == 4) return 1;
  if (layout == Layout::nhwc && sh.size() >= 3) return sh.size() - 1;
  if (!layout && sh.size() >= 3) {
    if (sh.back() == 1 || sh.back() == 3 || sh.back() == 4) return sh.size() - 1;
    if (sh.size() == 4 && (sh[1] == 1 || sh[1] == 3)) return 1;
  }
  return sh.size();  // none: the whole array is one channel
}

// The moments of what `reader` (NpyReader or OutputSet: header(), rows(), read_rows()) holds.
template <typename Reader>
NpyInspection inspect_rows(const Reader& reader, std::optional<Layout> layout,
                           const std::atomic<bool>* cancel) {
  NpyInspection r;
  r.header = reader.header();
  const NpyHeader& hd = r.header;
  const auto& sh = hd.shape;
  r.axis = channel_axis(sh, layout);
  const std::uint64_t channels = r.axis < sh.size() ? sh[r.axis] : 1;
  if (hd.count == 0) return r;
  std::uint64_t inner = 1;  // elements after the channel axis
  for (std::size_t i = r.axis + 1; i < sh.size(); ++i) inner *= sh[i];
  struct Acc {
    long double sum = 0, sq = 0;
    double min = INFINITY, max = -INFINITY;
    std::uint64_t n = 0, nan = 0;
  };
  std::vector<Acc> acc(channels);
  const std::size_t item = dtype_size(hd.dtype);
  const std::uint64_t rows = reader.rows();
  const std::uint64_t per_row = rows ? hd.count / rows : 0;
  const std::uint64_t chunk_rows =
      std::max<std::uint64_t>(1, (64u << 20) / std::max<std::uint64_t>(1, per_row * item));
  std::vector<std::uint8_t> buf;
  for (std::uint64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
    if (cancel && cancel->load()) throw Error(ErrorCode::interrupted, "interrupted");
    const std::uint64_t n = std::min(chunk_rows, rows - r0);
    buf.resize(static_cast<std::size_t>(n * per_row * item));
    reader.read_rows(r0, n, buf.data());
    const std::uint64_t base = r0 * per_row;
    for (std::uint64_t i = 0; i < n * per_row; ++i) {
      const double v = element(buf.data() + i * item, hd.dtype);
      const std::uint64_t c = r.axis < sh.size() ? ((base + i) / inner) % channels : 0;
      Acc& a = acc[c];
      if (std::isnan(v)) {
        ++a.nan;
        continue;
      }
      a.sum += v;
      a.sq += static_cast<long double>(v) * v;
      a.min = std::min(a.min, v);
      a.max = std::max(a.max, v);
      ++a.n;
    }
  }
  for (const Acc& a : acc) {
    const long double mean = a.n ? a.sum / a.n : 0;
    const long double var = a.n ? a.sq / a.n - mean * mean : 0;
    r.channels.push_back({static_cast<double>(mean),
                          std::sqrt(static_cast<double>(std::max<long double>(var, 0))), a.min,
                          a.max, a.n, a.nan});
  }
  return r;
}

}  // namespace

NpyInspection inspect_npy(const std::string& path, std::optional<Layout> layout,
                          const std::atomic<bool>* cancel) {
  return inspect_rows(NpyReader(path), layout, cancel);
}

NpyInspection inspect_output(const std::string& path, std::optional<Layout> layout,
                             const std::atomic<bool>* cancel) {
  const OutputSet set(path);
  return inspect_rows(set, layout ? layout : std::optional<Layout>(set.manifest().layout), cancel);
}

}  // namespace imgnorm
