// Names that are not UTF-8 (Linux file names are bytes): the JSON escape `\udcXX` and its reader,
// stats.json and manifest.json round trips, printable() for stderr, and linear-time reading of
// stats.json files with many classes.

#include <gtest/gtest.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "imgnorm/error.hpp"
#include "imgnorm/manifest.hpp"
#include "imgnorm/stats.hpp"
#include "json_internal.hpp"

using namespace imgnorm;
using ojson = nlohmann::ordered_json;

namespace {

// Random bytes, biased towards what makes escaping hard: bytes >= 0x80 (valid sequences and
// broken ones), control characters, NUL, quote, backslash and the letters of `\udcff`.
std::string random_bytes(std::mt19937& rng) {
  static const std::vector<std::string> kPieces = {"\xff",
                                                   "\x80",
                                                   "\xc3\xa9",
                                                   "\xc3",
                                                   "\xed\xa0\x80",
                                                   "\xed\x9f\xbf",
                                                   "\xe2\x82",
                                                   "\xf0\x9f\x98\x80",
                                                   "\xf4\x90\x80\x80",
                                                   "\xc0\xaf",
                                                   std::string(1, '\0'),
                                                   "\n",
                                                   "\t",
                                                   "\x1f",
                                                   "\x7f",
                                                   "\"",
                                                   "\\",
                                                   "\\udcff",
                                                   "\\u0000",
                                                   "u",
                                                   "d",
                                                   "c",
                                                   "a",
                                                   "\xc2\x85",
                                                   "\xef\xbf\xbf"};
  std::uniform_int_distribution<int> len(0, 12), kind(0, 2), byte(0, 255);
  std::uniform_int_distribution<std::size_t> piece(0, kPieces.size() - 1);
  std::string s;
  for (int n = len(rng); n > 0; --n)
    s += kind(rng) == 0 ? std::string(1, static_cast<char>(byte(rng))) : kPieces[piece(rng)];
  return s;
}

// A random string of valid UTF-8 (code points of every length, no surrogates).
std::string random_utf8(std::mt19937& rng) {
  std::uniform_int_distribution<int> len(0, 10), plane(0, 3);
  std::string s;
  for (int n = len(rng); n > 0; --n) {
    std::uint32_t cp;
    switch (plane(rng)) {
      case 0:
        cp = std::uniform_int_distribution<std::uint32_t>(0, 0x7F)(rng);
        break;
      case 1:
        cp = std::uniform_int_distribution<std::uint32_t>(0x80, 0x7FF)(rng);
        break;
      case 2:
        cp = std::uniform_int_distribution<std::uint32_t>(0x800, 0xFFFF)(rng);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xE000;
        break;
      default:
        cp = std::uniform_int_distribution<std::uint32_t>(0x10000, 0x10FFFF)(rng);
    }
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

std::string literal(const std::string& bytes) {
  std::string out;
  detail::append_json_string(out, bytes);
  return out;
}

std::string format_error(const std::string& text) {
  try {
    detail::parse_json(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::format);
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(names, escape_and_parse_are_inverse_on_random_bytes) {
  std::mt19937 rng(1);
  for (int i = 0; i < 5000; ++i) {
    const std::string name = random_bytes(rng), other = random_bytes(rng);
    // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive, GCC bug 105329) on
    // "{" + std::string, which it inlines as an overlapping replace at the front.
    std::string text = "{";
    text += literal(name);
    text += ":[";
    text += literal(other);
    text += "],";
    text += literal(name + "!");
    text += ":null}";
    const ojson j = detail::parse_json(text);
    ASSERT_EQ(j.size(), 2u) << text;
    ASSERT_EQ(j.begin().key(), name) << text;
    ASSERT_EQ(j.begin().value()[0].get<std::string>(), other) << text;
    ASSERT_EQ(detail::dump_json(j), text);
  }
}

TEST(names, valid_utf8_is_written_exactly_as_nlohmann_writes_it) {
  std::mt19937 rng(2);
  for (int i = 0; i < 5000; ++i) {
    const std::string s = random_utf8(rng);
    ASSERT_EQ(literal(s), ojson(s).dump());
    const ojson j = {{"k", s}, {"n", 1.5}, {"a", {1, -2, true, nullptr}}};
    ASSERT_EQ(detail::dump_json(j), j.dump());
  }
}

TEST(names, invalid_bytes_are_written_as_python_surrogateescape) {
  // What Python writes: json.dumps(os.fsdecode(b)) (ensure_ascii aside).
  EXPECT_EQ(literal("b\xff.png"), "\"b\\udcff.png\"");
  EXPECT_EQ(literal("\x80\n"), "\"\\udc80\\n\"");
  EXPECT_EQ(literal("\xed\xa0\x80"), "\"\\udced\\udca0\\udc80\"");  // an encoded surrogate
  EXPECT_EQ(literal("\xc0\xaf"), "\"\\udcc0\\udcaf\"");             // overlong '/'
  EXPECT_EQ(literal("\xe2\x82"
                    "a"),
            "\"\\udce2\\udc82a\"");                                            // cut short
  EXPECT_EQ(literal("\xf4\x90\x80\x80"), "\"\\udcf4\\udc90\\udc80\\udc80\"");  // > U+10FFFF
  EXPECT_EQ(literal("\xc3\xa9\xf0\x9f\x98\x80"), "\"\xc3\xa9\xf0\x9f\x98\x80\"");
  // And reads what Python writes with ensure_ascii (escaped pairs, upper-case hex).
  EXPECT_EQ(detail::parse_json("[\"\\uDCFF\\u00e9\\ud83d\\ude00\\udc80\"]")[0].get<std::string>(),
            "\xff\xc3\xa9\xf0\x9f\x98\x80\x80");
  EXPECT_EQ(detail::parse_json("[\"\\ud800\\udcff\"]")[0].get<std::string>(), "\xf0\x90\x83\xbf");
  EXPECT_EQ(detail::parse_json("[\"\\\\udcff\"]")[0].get<std::string>(), "\\udcff");
  EXPECT_EQ(detail::parse_json("[\"\\u0000\\u00ff\"]")[0].get<std::string>(),
            std::string("\0\xc3\xbf", 3));
}

TEST(names, malformed_escapes_and_repeated_keys_are_refused) {
  EXPECT_NE(format_error("[\"\\ud800\"]").find("not valid JSON: "), std::string::npos);
  EXPECT_NE(format_error("[\"\\udc41\"]").find("surrogate"), std::string::npos);  // not a byte
  EXPECT_NE(format_error("[\"\\udcff").find("not valid JSON: "), std::string::npos);
  EXPECT_NE(format_error("[\"\xff\"]").find("not valid JSON: "), std::string::npos);  // raw byte
  EXPECT_EQ(format_error("{\"a\":{\"b\\udcff\":1,\"b\\udcff\":2}}"),
            "not valid JSON: key \"b\\udcff\" appears twice in one object");
  EXPECT_EQ(format_error("{\"a\":1}"), "(accepted)");
}

TEST(names, printable_keeps_one_message_on_one_line) {
  EXPECT_EQ(printable("ds/nl\nx/b\xff\x80.png: bad\r\t"), "ds/nl\\nx/b\\xff\\x80.png: bad\\r\\t");
  EXPECT_EQ(printable(std::string("a\0b\x1b[31m\x7f", 9)), "a\\x00b\\x1b[31m\\x7f");
  EXPECT_EQ(printable("\xc2\x9b"
                      "1m caf\xc3\xa9 \\n"),
            "\\u009b1m caf\xc3\xa9 \\n");
  EXPECT_EQ(printable("\xed\xa0\x80\xf0\x9f\x98\x80"), "\\xed\\xa0\\x80\xf0\x9f\x98\x80");
}

TEST(names, stats_json_keeps_names_that_are_not_utf8) {
  StatsFile st;
  st.tool_version = "0.1.0";
  st.source = "data/\xfe\x01set";
  st.classes = {"bad\xff\x80", "good", "nl\nx", std::string("\xc3\xa9\\udcff")};
  st.class_images = {0, 0, 0, 0};
  st.acc = Accumulator(3);
  st.skipped = {{"data/bad\xff\x80/broken\xfe.jpg", ErrorCode::unsupported, "not an image \xff"}};
  st.ignored = {{"data/nl\nx/notes\x80.txt", "not an image extension"}};
  const std::string text = to_json(st);
  EXPECT_NE(text.find("\"classes\": [\"bad\\udcff\\udc80\", \"good\", \"nl\\nx\", "
                      "\"\xc3\xa9\\\\udcff\"]"),
            std::string::npos)
      << text;
  const StatsFile back = stats_from_json(text);
  EXPECT_EQ(back.source, st.source);
  EXPECT_EQ(back.classes, st.classes);
  ASSERT_EQ(back.skipped.size(), 1u);
  EXPECT_EQ(back.skipped[0].path, st.skipped[0].path);
  EXPECT_EQ(back.skipped[0].reason, st.skipped[0].reason);
  ASSERT_EQ(back.ignored.size(), 1u);
  EXPECT_EQ(back.ignored[0].path, st.ignored[0].path);
  EXPECT_EQ(to_json(back), text);
}

TEST(names, stats_json_refuses_a_class_listed_twice) {
  StatsFile st;
  st.tool_version = "0.1.0";
  st.classes = {"a\xff", "b"};
  st.class_images = {0, 0};
  st.acc = Accumulator(3);
  std::string text = to_json(st);
  const std::string from = "\"classes\": [\"a\\udcff\", \"b\"]";
  ASSERT_NE(text.find(from), std::string::npos) << text;
  text.replace(text.find(from), from.size(), "\"classes\": [\"a\\udcff\", \"a\\udcff\"]");
  try {
    stats_from_json(text);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "field 'classes' lists the class \"a\\udcff\" twice");
  }
}

TEST(names, manifest_json_keeps_names_that_are_not_utf8) {
  Manifest m;
  m.tool_version = "0.1.0";
  m.source = "data/\xff";
  m.stats = "train\n/stats\x80.json";
  m.mode = Mode::standardize;
  m.formula = "y = (x - mean_c) / std_c";
  m.shape = {2, 4, 4, 3};
  m.recipe.size = {4, 4};
  Affine a;
  a.channels = 3;
  for (int c = 0; c < 3; ++c) a.ch[c] = {1.0, 100.0 + c, 50.0, 1.0, 0.0};
  m.maps = PixelMap{a, {}};
  m.classes = {"bad\xff\x80", "nl\nx"};
  m.labels = true;
  m.rows = 2;
  m.files = {{"data/\xff/bad\xff\x80/b\xff.png", 0}, {"data/\xff/nl\nx/c\nd.png", 1}};
  m.skipped = {{"data/\xff/nl\nx/broken\xfe.jpg", ErrorCode::unsupported, "not an image"}};
  m.ignored = {{"data/\xff/x\x80.txt", "not an image extension"}};
  const std::string text = to_json(m);
  EXPECT_NE(text.find("{\"path\":\"data/\\udcff/nl\\nx/c\\nd.png\",\"label\":1}"),
            std::string::npos)
      << text;
  const Manifest back = manifest_from_json(text);
  EXPECT_EQ(back.source, m.source);
  EXPECT_EQ(back.stats, m.stats);
  EXPECT_EQ(back.classes, m.classes);
  EXPECT_EQ(back.files, m.files);
  ASSERT_EQ(back.skipped.size(), 1u);
  EXPECT_EQ(back.skipped[0].path, m.skipped[0].path);
  ASSERT_EQ(back.ignored.size(), 1u);
  EXPECT_EQ(back.ignored[0].path, m.ignored[0].path);
  EXPECT_EQ(to_json(back), text);
}

// Reading stats.json was quadratic in the classes (nlohmann's ordered_json searches an object for
// every key it inserts into counts.per_class): 200,000 classes took 35 s. Linear now: well under
// 2 s, writing included (the writer inserted the same way). Measured in CPU time, so that a busy
// machine does not fail it.
TEST(names, stats_json_with_200000_classes_reads_in_linear_time) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Instrumented builds (make test-sanitize) check the memory accesses on fewer classes; the
  // timing is the Release build's to check.
  constexpr std::size_t kClasses = 20000;
  constexpr double kBudget = 10.0;
#else
  constexpr std::size_t kClasses = 200000;
  constexpr double kBudget = 2.0;
#endif
  const auto cpu_seconds = [] { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; };
  StatsFile st;
  st.tool_version = "0.1.0";
  st.acc = Accumulator(3);
  for (std::size_t i = 0; i < kClasses; ++i)
    st.classes.push_back("class \xff" + std::to_string(kClasses - i));
  st.class_images.assign(kClasses, 0);
  double t0 = cpu_seconds();
  const std::string text = to_json(st);
  const double write_seconds = cpu_seconds() - t0;
  t0 = cpu_seconds();
  const StatsFile back = stats_from_json(text);
  const double read_seconds = cpu_seconds() - t0;
  EXPECT_EQ(back.classes, st.classes);
  EXPECT_LT(write_seconds, kBudget) << "writing " << kClasses << " classes";
  EXPECT_LT(read_seconds, kBudget) << "reading " << kClasses << " classes";

  // manifest.json: the classes and a file per class.
  Manifest m;
  m.classes = st.classes;
  m.rows = kClasses;
  m.labels = true;
  Affine a;
  a.channels = 3;
  for (int c = 0; c < 3; ++c) a.ch[c] = {1.0, 100.0 + c, 50.0, 1.0, 0.0};
  m.maps = PixelMap{a, {}};
  for (std::size_t i = 0; i < kClasses; ++i)
    m.files.push_back({st.classes[i] + "/a.png", static_cast<std::int64_t>(i)});
  const std::string manifest = to_json(m);
  t0 = cpu_seconds();
  const Manifest mb = manifest_from_json(manifest);
  const double manifest_seconds = cpu_seconds() - t0;
  EXPECT_EQ(mb.files, m.files);
  EXPECT_LT(manifest_seconds, kBudget) << "reading a manifest of " << kClasses << " files";
}
