#include "usage.hpp"

#include <algorithm>
#include <cctype>

namespace imgnorm::cli {

namespace {

std::string strip_dashes(const std::string& s) {
  const std::size_t n = s.find_first_not_of('-');
  return n == std::string::npos ? std::string() : s.substr(n);
}

/// "-x", "--name", "--name=value": an option as CLI11 would read it; "-", "-5" and "-0.5" are
/// values.
bool looks_like_option(const std::string& arg) {
  if (arg.size() < 2 || arg[0] != '-') return false;
  const char c = arg[1];
  return !(std::isdigit(static_cast<unsigned char>(c)) || c == '.');
}

/// "--size=224" -> "--size".
std::string option_name(const std::string& arg) { return arg.substr(0, arg.find('=')); }

std::string unknown_option(const CLI::App& where, const std::string& arg) {
  const std::string name = option_name(arg);
  std::string message = "unknown option " + name;
  // A single letter has too many neighbours to guess from; "-size" is likely meant as "--size".
  if (strip_dashes(name).size() < 2) return message;
  std::vector<std::string> candidates;
  for (const CLI::Option* opt : where.get_options())
    for (const std::string& l : opt->get_lnames()) candidates.push_back("--" + l);
  const std::string match = closest_match(name, candidates);
  if (!match.empty()) message += " (did you mean " + match + "?)";
  return message;
}

std::string command_list(const CLI::App& app) {
  std::string s;
  const auto subs = app.get_subcommands([](const CLI::App*) { return true; });
  for (std::size_t i = 0; i < subs.size(); ++i) {
    if (i > 0) s += i + 1 == subs.size() ? " or " : ", ";
    s += subs[i]->get_name();
  }
  return s;
}

const CLI::Option* find_option(const CLI::App& where, const std::string& arg) {
  if (!looks_like_option(arg)) return nullptr;
  const std::string name = option_name(arg);
  for (const CLI::Option* opt : where.get_options())
    if (!opt->get_positional() && opt->check_name(name)) return opt;
  return nullptr;
}

}  // namespace

std::size_t edit_distance(const std::string& a, const std::string& b) {
  const std::size_t n = a.size(), m = b.size();
  // d[i][j]: distance between the first i letters of a and the first j of b.
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::string closest_match(const std::string& typed, const std::vector<std::string>& candidates) {
  const std::string t = strip_dashes(typed);
  if (t.empty()) return {};
  const std::size_t allowed = std::max<std::size_t>(1, t.size() / 3);
  std::string best;
  std::size_t best_distance = allowed + 1;
  for (const std::string& c : candidates) {
    const std::size_t d = edit_distance(t, strip_dashes(c));
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  if (!best.empty()) return best;
  // "--exact" for "--exact-decode": the one candidate it begins.
  if (t.size() < 3) return {};
  for (const std::string& c : candidates) {
    if (strip_dashes(c).rfind(t, 0) == 0) {
      if (!best.empty()) return {};
      best = c;
    }
  }
  return best;
}

UsageError explain_parse_error(const CLI::App& app, const std::vector<std::string>& args,
                               const CLI::ParseError& error) {
  const auto chosen = app.get_subcommands();
  const CLI::App* sub = chosen.empty() ? nullptr : chosen.front();
  const CLI::App& where = sub != nullptr ? *sub : app;
  UsageError u;
  u.help_command = sub != nullptr ? "imgnorm " + sub->get_name() : "imgnorm";

  // Arguments nobody took, in the order typed: the first unknown option is the likely cause (its
  // value then lands in a positional or is left over too).
  const std::vector<std::string> rest = where.remaining();
  for (const std::string& arg : rest) {
    if (!looks_like_option(arg)) continue;
    if (sub == nullptr) {
      // "imgnorm --size 64 DIR": a command's option before any command.
      for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) {
        if (find_option(*s, arg) != nullptr) {
          u.message = "missing command before " + option_name(arg) + ": " + command_list(app);
          return u;
        }
      }
    }
    u.message = unknown_option(where, arg);
    return u;
  }
  if (sub == nullptr) {
    if (!rest.empty()) {
      u.message = "unknown command " + rest.front();
      std::vector<std::string> names;
      for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; }))
        names.push_back(s->get_name());
      const std::string match = closest_match(rest.front(), names);
      u.message += match.empty() ? " (commands: " + command_list(app) + ")"
                                 : " (did you mean " + match + "?)";
    } else if (dynamic_cast<const CLI::RequiredError*>(&error) != nullptr) {
      u.message = "missing command: " + command_list(app);
    } else {
      u.message = error.what();
    }
    return u;
  }
  if (!rest.empty()) {
    u.message = "unexpected argument '" + rest.front() + "'";
    return u;
  }
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&error) != nullptr) {
    // Given more often than it takes values: repeated.
    for (const CLI::Option* opt : where.get_options()) {
      const std::size_t most = static_cast<std::size_t>(std::max(opt->get_items_expected_max(), 1));
      if (!opt->get_positional() && opt->count() > most) {
        u.message = "option " + opt->get_name() + " given " + std::to_string(opt->count()) +
                    " times (give it once)";
        return u;
      }
    }
    // Otherwise the arguments ran out before its value: the last one is the option.
    if (!args.empty()) {
      if (const CLI::Option* opt = find_option(where, args.back())) {
        u.message = "option " + opt->get_name() + " needs a value";
        return u;
      }
    }
  }
  if (dynamic_cast<const CLI::RequiredError*>(&error) != nullptr) {
    for (const CLI::Option* opt : where.get_options()) {
      if (opt->get_required() && opt->count() == 0) {
        u.message = "missing option " + opt->get_name();
        return u;
      }
    }
  }
  u.message = error.what();
  return u;
}

}  // namespace imgnorm::cli
