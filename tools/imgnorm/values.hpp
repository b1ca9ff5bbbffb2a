#pragma once
// Parsers of the values users type that are the command line's own (the library parses sizes,
// modes, sample counts...). Kept out of the command files so the fuzzer and the crasher replay test
// reach exactly the code the CLI runs.

#include <string>
#include <vector>

#include "imgnorm/transform.hpp"

namespace imgnorm::cli {

/// "I/N" with 0 <= I < N (--shard). Throws Error(invalid_argument) naming the text.
void parse_shard(const std::string& text, int& index, int& count);

/// "a,b,c": finite numbers separated by commas (--mean, --std, --range). Throws
/// Error(invalid_argument) naming `flag` and the text.
std::vector<double> parse_numbers(const std::string& text, const char* flag);

/// A --mode value: a mode name (imagenet, caffe, inception and clip included), or the older
/// spelling "preset:NAME" of those four.
Mode parse_mode_flag(const std::string& text);

}  // namespace imgnorm::cli
