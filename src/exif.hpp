#pragma once
// EXIF orientation parsing (src/ only; fuzzed and unit-tested directly).

#include <cstddef>
#include <cstdint>

namespace imgnorm {

namespace detail {
/// EXIF orientation (1–8) from the payload of a JPEG APP1 segment (starting with "Exif\0\0"), or 1
/// when absent or malformed. Never reads outside [data, data + size).
int parse_exif_orientation(const std::uint8_t* data, std::size_t size) noexcept;
}  // namespace detail

}  // namespace imgnorm
