// libFuzzer target: see fuzz/harness.hpp (stats_json_bytes) and docs/design.md (fuzzing).

#include <cstddef>
#include <cstdint>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  imgnorm::fuzz::stats_json_bytes(data, size);
  return 0;
}
