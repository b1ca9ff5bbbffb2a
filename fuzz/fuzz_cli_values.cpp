// libFuzzer target: the values a user types (--size, --resize, --interp, --channels, --sample,
// --shard, --mode, --layout, --dtype, --mean/--std/--range) and list files. See fuzz/harness.hpp
// (cli_value_bytes).
//
// --shard is parsed by the CLI itself (tools/imgnorm/stats_cmd.cpp, in an anonymous namespace), so
// that file is compiled into this target to reach the real parser.

#include <cstddef>
#include <cstdint>

#include "harness.hpp"
#include "stats_cmd.cpp"  // NOLINT(bugprone-suspicious-include): parse_shard lives in there

namespace imgnorm::fuzz {
void register_normalize_parsers();  // cli_normalize_hook.cpp
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  imgnorm::fuzz::g_parse_shard = &imgnorm::cli::parse_shard;
  imgnorm::fuzz::register_normalize_parsers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  imgnorm::fuzz::cli_value_bytes(data, size);
  return 0;
}
