#include "coverage.hpp"

#include <algorithm>
#include <numeric>
#include <tuple>
#include <utility>

#include "imgnorm/error.hpp"

namespace imgnorm::detail {

namespace {

std::vector<Shard> shards_of(const Coverage& c) {
  return c.shards.empty() ? std::vector<Shard>{Shard{0, 1}} : c.shards;
}

// The inverse of a modulo m (gcd(a, m) = 1, m >= 1), by the extended Euclidean algorithm.
std::int64_t inverse(std::int64_t a, std::int64_t m) {
  std::int64_t r0 = m, r1 = a % m, t0 = 0, t1 = 1;
  while (r1 != 0) {
    const std::int64_t q = r0 / r1;
    std::tie(r0, r1) = std::make_pair(r1, r0 - q * r1);
    std::tie(t0, t1) = std::make_pair(t1, t0 - q * t1);
  }
  return ((t0 % m) + m) % m;
}

}  // namespace

std::string shard_text(Shard s) { return std::to_string(s.index) + "/" + std::to_string(s.count); }

std::uint64_t shard_files(Shard s, std::uint64_t files) {
  const auto i = static_cast<std::uint64_t>(s.index), n = static_cast<std::uint64_t>(s.count);
  return i < files ? (files - 1 - i) / n + 1 : 0;
}

std::uint64_t covered_files(const Coverage& c) {
  if (c.shards.empty()) return c.files;
  std::uint64_t n = 0;
  for (const Shard& s : c.shards) n += shard_files(s, c.files);
  return n;
}

std::optional<std::uint64_t> common_file(Shard a, Shard b, std::uint64_t files) {
  // Counts are at most 2^20 (the reader's limit), so every product below fits in 64 bits.
  const std::int64_t m = a.count, k = b.count;
  const std::int64_t g = std::gcd(m, k);
  const std::int64_t diff = b.index - a.index;
  if (diff % g != 0) return std::nullopt;
  // x = a.index + m·t with m·t ≡ diff (mod k): t ≡ (diff/g)·(m/g)⁻¹ (mod k/g).
  const std::int64_t kg = k / g;
  const std::int64_t d = ((diff / g) % kg + kg) % kg;
  const std::int64_t t = kg == 1 ? 0 : (d * inverse((m / g) % kg, kg)) % kg;
  const auto x = static_cast<std::uint64_t>(a.index + m * t);
  if (x >= files) return std::nullopt;
  return x;
}

std::string describe(const Coverage& c) {
  if (c.shards.empty()) return "all " + std::to_string(c.files) + " files";
  std::string s = c.shards.size() == 1 ? "shard " : "shards ";
  for (std::size_t i = 0; i < c.shards.size(); ++i) s += (i ? ", " : "") + shard_text(c.shards[i]);
  return s;
}

std::string overlap(const std::vector<Coverage>& a, const std::vector<Coverage>& b) {
  for (const Coverage& x : a)
    for (const Coverage& y : b) {
      if (x.selection != y.selection) continue;
      for (const Shard& s : shards_of(x))
        for (const Shard& t : shards_of(y))
          if (common_file(s, t, std::min(x.files, y.files))) {
            const auto one = [&](Shard z, std::uint64_t files) {
              return z.count == 1 ? "all " + std::to_string(files) + " files"
                                  : "shard " + shard_text(z);
            };
            return one(s, x.files) + " and " + one(t, y.files) + " of the same selection (" +
                   std::to_string(x.files) + " files)";
          }
    }
  return {};
}

void normalize(Coverage& c) {
  std::sort(c.shards.begin(), c.shards.end(), [](const Shard& x, const Shard& y) {
    return x.count != y.count ? x.count < y.count : x.index < y.index;
  });
  if (covered_files(c) == c.files) c.shards.clear();
}

void unite(std::vector<Coverage>& a, const std::vector<Coverage>& b) {
  std::vector<Coverage> out = a;
  for (const Coverage& y : b) {
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const Coverage& x) { return x.selection == y.selection; });
    if (it == out.end()) {
      out.push_back(y);
      normalize(out.back());
      continue;
    }
    if (it->files != y.files)
      throw Error(ErrorCode::invalid_argument, "cannot merge statistics: selection " + y.selection +
                                                   " has " + std::to_string(it->files) +
                                                   " files in one and " + std::to_string(y.files) +
                                                   " in the other");
    const std::string both = overlap({*it}, {y});
    if (!both.empty())
      throw Error(ErrorCode::invalid_argument, "cannot merge statistics: both cover " + both +
                                                   "; merging would count them twice");
    // Without an overlap, a whole selection beside shards means those shards hold no file.
    if (it->shards.empty() || y.shards.empty())
      it->shards.clear();
    else
      it->shards.insert(it->shards.end(), y.shards.begin(), y.shards.end());
    normalize(*it);
  }
  std::sort(out.begin(), out.end(),
            [](const Coverage& x, const Coverage& y) { return x.selection < y.selection; });
  a = std::move(out);
}

Shard single_shard(const std::vector<Coverage>& covers) {
  if (covers.size() == 1 && covers[0].shards.size() == 1) return covers[0].shards[0];
  return Shard{0, 1};
}

}  // namespace imgnorm::detail
