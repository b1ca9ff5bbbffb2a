#pragma once
// JSON pieces shared by the stats.json and manifest.json formats (src/ only).
//
// Names (files, class folders, the dataset folder) are bytes on Linux and need not be UTF-8. Every
// string goes into and comes out of our JSON files losslessly: a byte that is not part of a valid
// UTF-8 sequence is written as the lone low surrogate escape `\udcXX` (XX = the byte, 80..ff).
// That is Python's "surrogateescape" (os.fsdecode): json.load() of the file gives the str that
// os.fsdecode() gives for the name, and os.fsencode() turns it back into the bytes. Valid UTF-8
// never decodes to a lone surrogate, so no valid name collides with an escaped one.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "imgnorm/recipe.hpp"

namespace imgnorm::detail {

/// The "recipe" object of `root` (stats.json or manifest.json), validated. Error(format) naming the
/// field otherwise.
Recipe read_recipe_field(const nlohmann::ordered_json& root);

/// Length of the valid UTF-8 sequence (shortest form, no surrogates, at most U+10FFFF) starting at
/// `s[i]`, or 0 when `s[i]` does not start one.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept;

/// Appends `bytes` as a JSON string literal: valid UTF-8 kept as it is (quote, backslash and
/// control characters escaped exactly as nlohmann's dump() does), every other byte as `\udcXX`.
void append_json_string(std::string& out, std::string_view bytes);

/// Appends the compact JSON text of `j` (what j.dump() writes), strings through
/// append_json_string: never throws on bytes that are not UTF-8.
void append_json(std::string& out, const nlohmann::ordered_json& j);
std::string dump_json(const nlohmann::ordered_json& j);

/// Parses JSON text, reading `\udc80`..`\udcff` escapes that are not part of a surrogate pair back
/// as the bytes 0x80..0xff. Linear in the text (nlohmann's own ordered_json parser searches every
/// object for each key it inserts: quadratic in the number of keys). A key that appears twice in
/// one object is refused. Throws Error(format, "not valid JSON: <where and why>").
nlohmann::ordered_json parse_json(const std::string& text);

}  // namespace imgnorm::detail
