// Part of fuzz_cli_values: compiles the CLI's normalize command in, to reach its own value parsers
// (--mean/--std/--range number lists, --mode with "preset:"), which live in an anonymous namespace
// of tools/imgnorm/normalize_cmd.cpp.

#include "harness.hpp"
#include "normalize_cmd.cpp"  // NOLINT(bugprone-suspicious-include)

namespace imgnorm::fuzz {

void register_normalize_parsers() {
  g_parse_numbers = [](const std::string& text) { return cli::parse_numbers(text, "--mean"); };
  g_parse_mode_flag = [](const std::string& text) { return cli::parse_mode_flag(text); };
}

}  // namespace imgnorm::fuzz
