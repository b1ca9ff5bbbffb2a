#pragma once
// Usage errors in the user's terms: CLI11's parse errors ("The following arguments were not
// expected", "At Most 1 required") turned into "unknown option --szie (did you mean --size?)", with
// the --help to read.

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace imgnorm::cli {

/// What to print for a failed parse of `app` (the top-level app) over `args` (argv without the
/// program name): the message, and the command whose --help to suggest ("imgnorm stats" when a
/// subcommand was chosen, else "imgnorm").
struct UsageError {
  std::string message;
  std::string help_command;
};
UsageError explain_parse_error(const CLI::App& app, const std::vector<std::string>& args,
                               const CLI::ParseError& error);

/// Edit distance with adjacent transpositions counted as one edit (optimal string alignment), so
/// "szie" is 1 away from "size".
std::size_t edit_distance(const std::string& a, const std::string& b);

/// The candidate closest to `typed` when it is close enough to be a likely typo (at most a third of
/// its letters wrong, at least one allowed), or the one candidate `typed` starts (3 letters at
/// least); empty when none is. Ties go to the first candidate.
std::string closest_match(const std::string& typed, const std::vector<std::string>& candidates);

}  // namespace imgnorm::cli
