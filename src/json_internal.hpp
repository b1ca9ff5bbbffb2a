#pragma once
// JSON pieces shared by the stats.json and manifest.json formats (src/ only).

#include <nlohmann/json.hpp>

#include "imgnorm/recipe.hpp"

namespace imgnorm::detail {

/// The "recipe" object of `root` (stats.json or manifest.json), validated. Error(format) naming the
/// field otherwise.
Recipe read_recipe_field(const nlohmann::ordered_json& root);

}  // namespace imgnorm::detail
