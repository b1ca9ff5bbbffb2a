// Replays every file of tests/data/, tests/data/crashers/ (inputs that once crashed a fuzz
// target, kept forever) and fuzz/seeds/ through every parser the fuzz targets cover: each must
// succeed or throw imgnorm::Error, never crash, hang or throw anything else. The checks are the
// fuzz targets' own (fuzz/harness.hpp); a broken invariant aborts, which fails this test.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/harness.hpp"
#include "imgnorm/decode.hpp"
#include "imgnorm/error.hpp"

namespace imgnorm {
namespace {

namespace fs = std::filesystem;

const std::string kData = IMGNORM_TEST_DATA;
const std::string kCrashers = kData + "/crashers";

std::vector<std::uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Regular files under `dir` (recursively when asked), sorted.
std::vector<std::string> files_in(const std::string& dir, bool recursive) {
  std::vector<std::string> out;
  if (!fs::is_directory(dir)) return out;
  auto add = [&](const fs::directory_entry& e) {
    if (e.is_regular_file()) out.push_back(e.path().string());
  };
  if (recursive) {
    for (const auto& e : fs::recursive_directory_iterator(dir)) add(e);
  } else {
    for (const auto& e : fs::directory_iterator(dir)) add(e);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> all_inputs() {
  std::vector<std::string> files = files_in(kData, false);
  const std::vector<std::string> crashers = files_in(kCrashers, true);
  files.insert(files.end(), crashers.begin(), crashers.end());
  // The fuzzers' hand-made seeds: valid .npy and stats.json files reach the deeper checks.
  const std::vector<std::string> seeds =
      files_in(std::string(IMGNORM_SOURCE_DIR) + "/fuzz/seeds", true);
  files.insert(files.end(), seeds.begin(), seeds.end());
  return files;
}

const std::uint8_t* ptr(const std::vector<std::uint8_t>& v) {
  return v.empty() ? nullptr : v.data();
}

TEST(crashers, folder_holds_the_inputs_that_once_crashed) {
  ASSERT_TRUE(fs::is_directory(kCrashers)) << kCrashers;
  EXPECT_GE(files_in(kCrashers, true).size(), 1u);
  EXPECT_GE(all_inputs().size(), 60u);
}

TEST(crashers, decode_every_file_with_every_option) {
  Decoder decoder;  // reused across files and options, as a pipeline worker does
  Image out;
  for (const std::string& path : all_inputs()) {
    SCOPED_TRACE(path);
    const std::vector<std::uint8_t> bytes = slurp(path);
    for (int sel = 0; sel < 256; sel += 7) {  // every option bit, every channel order
      fuzz::decode_checked(ptr(bytes), bytes.size(), fuzz::decode_options(sel), decoder, out);
    }
    // The default options and the default pixel limit, through the file API.
    try {
      (void)decode_file(path);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    // The fuzz target's own choice (the last byte).
    fuzz::decode_bytes(ptr(bytes), bytes.size(), decoder, out);
  }
}

TEST(crashers, exif_orientation_of_every_file) {
  for (const std::string& path : all_inputs()) {
    SCOPED_TRACE(path);
    const std::vector<std::uint8_t> bytes = slurp(path);
    fuzz::exif_bytes(ptr(bytes), bytes.size());
  }
}

TEST(crashers, npy_reader_on_every_file) {
  for (const std::string& path : all_inputs()) {
    SCOPED_TRACE(path);
    const std::vector<std::uint8_t> bytes = slurp(path);
    fuzz::npy_bytes(ptr(bytes), bytes.size());
    try {
      (void)read_npy(path);
    } catch (const Error&) {
    }
  }
}

TEST(crashers, stats_json_reader_on_every_file) {
  for (const std::string& path : all_inputs()) {
    SCOPED_TRACE(path);
    const std::vector<std::uint8_t> bytes = slurp(path);
    fuzz::stats_json_bytes(ptr(bytes), bytes.size());
    try {
      (void)read_stats_file(path);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

TEST(crashers, cli_value_parsers_on_every_file) {
  for (const std::string& path : all_inputs()) {
    SCOPED_TRACE(path);
    std::vector<std::uint8_t> bytes = slurp(path);
    fuzz::cli_value_bytes(ptr(bytes), bytes.size());
    // The whole file as the text of every parser (the first byte picks the parser).
    bytes.insert(bytes.begin(), 0);
    for (int which = 0; which < fuzz::kCliParsers; ++which) {
      bytes[0] = static_cast<std::uint8_t>(which);
      fuzz::cli_value_bytes(bytes.data(), std::min<std::size_t>(bytes.size(), 4096));
    }
  }
}

}  // namespace
}  // namespace imgnorm
