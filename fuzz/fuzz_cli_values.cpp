// libFuzzer target: the values a user types (--size, --resize, --interp, --channels, --sample,
// --shard, --mode, --layout, --dtype, --mean/--std/--range) and list files. See fuzz/harness.hpp
// (cli_value_bytes).
//
// --shard, normalize's number lists and --mode with "preset:" are parsed by the CLI itself
// (tools/imgnorm/values.cpp), which is compiled into this target.

#include <cstddef>
#include <cstdint>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  imgnorm::fuzz::cli_value_bytes(data, size);
  return 0;
}
