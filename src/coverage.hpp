#pragma once
// The arithmetic of stats.json's "covers": which files of a selection a set of shards holds, and
// whether two sets share a file (src/ only; the rules are in docs/stats-json.md, "Merging").

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imgnorm/stats.hpp"

namespace imgnorm::detail {

/// "1/4".
std::string shard_text(Shard s);

/// How many of a selection's `files` shard `s` holds.
std::uint64_t shard_files(Shard s, std::uint64_t files);

/// How many files of its selection `c` covers.
std::uint64_t covered_files(const Coverage& c);

/// The first position below `files` that both shards hold (x ≡ a.index mod a.count and
/// x ≡ b.index mod b.count, by the Chinese remainder theorem), if any.
std::optional<std::uint64_t> common_file(Shard a, Shard b, std::uint64_t files);

/// "all 40 files" or "shard 1/4" or "shards 0/4, 2/4".
std::string describe(const Coverage& c);

/// Empty when `a` and `b` share no file; else what they share, for a message: "shard 0/2 and
/// shard 1/3 of the same selection (40 files)".
std::string overlap(const std::vector<Coverage>& a, const std::vector<Coverage>& b);

/// Sorts the shards by (count, index) and drops the list when they hold all the files.
void normalize(Coverage& c);

/// Adds `b` into `a` (kept sorted by selection digest, each Coverage normalized). Throws
/// Error(invalid_argument) when they overlap or name one selection with different file counts.
void unite(std::vector<Coverage>& a, const std::vector<Coverage>& b);

/// The shard that `covers` is, when it is one shard of one selection; else 0/1.
Shard single_shard(const std::vector<Coverage>& covers);

}  // namespace imgnorm::detail
