#pragma once
/// \file error.hpp
/// The one exception type imgnorm throws for bad input (a file, a flag value, a stats file).
/// A broken invariant inside imgnorm is a bug and is an assert, never an imgnorm::Error.

#include <stdexcept>
#include <string>
#include <string_view>

#include "imgnorm/export.hpp"

namespace imgnorm {

/// What kind of bad input caused an Error; lets callers decide (skip a file, or stop the run).
enum class ErrorCode {
  invalid_argument,  ///< a flag or option value is out of range or malformed
  io,                ///< a file could not be opened, read or written
  unsupported,       ///< not an image format imgnorm reads (sniffed from the bytes)
  corrupt,           ///< the bytes claim to be an image but do not decode (truncated, bad data)
  too_large,         ///< over a configured limit: pixels in the header, JPEG scans, memory a
                     ///< single image needs
  format,            ///< a structured file (stats.json, .npy, list file) is malformed
  empty,             ///< nothing to do: no images found, or every image was skipped
  interrupted,       ///< SIGINT/SIGTERM arrived; outputs were discarded
  out_of_memory,     ///< an allocation failed: a property of the run (threads, --max-memory, the
                     ///< machine), never of a file, so it ends the run instead of skipping a file
};

/// Short lower-case name of a code ("io", "corrupt", ...), as written to stats.json.
IMGNORM_API const char* to_string(ErrorCode code) noexcept;

/// Bad input. what() has the form "path: what went wrong" (or just "what went wrong" when no file
/// is involved), short enough for one line on stderr.
class IMGNORM_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

/// Returns a copy of `e` whose message is prefixed with `path: ` (unless it already starts with
/// it).
IMGNORM_API Error with_path(const Error& e, const std::string& path);

/// `text` (a message, a file name: bytes, not necessarily UTF-8) made safe to print as one line:
/// newline, tab and carriage return become `\n`, `\t`, `\r`; other control characters (C0, DEL,
/// and C1 as U+0080–U+009F) and every byte that is not part of valid UTF-8 become `\xNN` (C1:
/// `\u00NN`). Everything else, backslashes included, is kept. For people, not a reversible
/// encoding: the JSON files keep names exactly (docs/design.md, "Names that are not UTF-8").
///
///     printable("a\nb\xff.png") == "a\\nb\\xff.png"
IMGNORM_API std::string printable(std::string_view text);

}  // namespace imgnorm
