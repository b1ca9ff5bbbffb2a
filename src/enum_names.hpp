#pragma once
// The one parser of enum names (modes, layouts, dtypes, recipe fields): the same spelling rules and
// the same error message everywhere.

#include <cstddef>
#include <iterator>
#include <string>
#include <type_traits>

#include "imgnorm/error.hpp"

namespace imgnorm::detail {

/// Returns the value of `values` whose to_string() equals `text` ('_' accepted for '-'); throws
/// Error(invalid_argument) "invalid <what> 'text' (expected a|b|c)" otherwise.
template <typename Values>
auto parse_enum(const std::string& text, const Values& values, const char* what)
    -> std::remove_cvref_t<decltype(*std::begin(values))> {
  std::string dashed = text;
  for (char& c : dashed)
    if (c == '_') c = '-';
  std::string names;
  for (auto v : values) {
    const std::string name = to_string(v);
    if (text == name || dashed == name) return v;
    names += names.empty() ? "" : "|";
    names += name;
  }
  throw Error(ErrorCode::invalid_argument,
              std::string("invalid ") + what + " '" + text + "' (expected " + names + ")");
}

}  // namespace imgnorm::detail
