#pragma once
// SHA-256 (FIPS 180-4), for the digest that names a selection of files (src/ only).

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace imgnorm::detail {

/// Incremental SHA-256: update() any number of times, then hex_digest() once.
class Sha256 {
 public:
  Sha256();
  void update(std::string_view bytes);
  /// The 64 lower-case hex digits of the digest; the object is spent afterwards.
  std::string hex_digest();

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buf_{};
  std::size_t used_ = 0;
  std::uint64_t length_ = 0;  // bytes
};

}  // namespace imgnorm::detail
