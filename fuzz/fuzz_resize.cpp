// libFuzzer target: see fuzz/resize_harness.hpp (resize_bytes) and docs/design.md (fuzzing).

#include <cstddef>
#include <cstdint>

#include "resize_harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  imgnorm::fuzz::resize_bytes(data, size);
  return 0;
}
