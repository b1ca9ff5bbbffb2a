// libFuzzer target: see fuzz/harness.hpp (npy_bytes) and docs/design.md (fuzzing).

#include <cstddef>
#include <cstdint>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  imgnorm::fuzz::npy_bytes(data, size);
  return 0;
}
