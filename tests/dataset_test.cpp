#include "imgnorm/dataset.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "imgnorm/error.hpp"

namespace imgnorm {
namespace {

namespace fs = std::filesystem;

/// A fresh folder from mkdtemp, removed (without following symlinks) at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "imgnorm_dataset_XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

  /// Creates a file (and its parent folders) at `rel`.
  void file(const std::string& rel, const std::string& content = "x") const {
    fs::path p = fs::path(path_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
  }
  void dir(const std::string& rel) const { fs::create_directories(fs::path(path_) / rel); }
  void symlink(const std::string& target, const std::string& rel) const {
    fs::path p = fs::path(path_) / rel;
    fs::create_directories(p.parent_path());
    fs::create_symlink(target, p);
  }

 private:
  std::string path_;
};

/// Entries as (relative path, class name), the form easiest to compare.
std::vector<std::pair<std::string, std::string>> rel_entries(const Dataset& ds,
                                                             const std::string& root) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Entry& e : ds.entries) {
    EXPECT_EQ(e.path.rfind(root + "/", 0), 0u) << e.path;
    EXPECT_GE(e.label, 0);
    EXPECT_LT(static_cast<std::size_t>(e.label), ds.classes.size());
    out.emplace_back(e.path.substr(root.size() + 1), ds.classes.at(e.label));
  }
  return out;
}

std::map<std::string, std::string> rel_ignored(const Dataset& ds, const std::string& root) {
  std::map<std::string, std::string> out;
  for (const Ignored& i : ds.ignored) {
    EXPECT_EQ(i.path.rfind(root + "/", 0), 0u) << i.path;
    EXPECT_TRUE(out.emplace(i.path.substr(root.size() + 1), i.reason).second)
        << "twice: " << i.path;
  }
  return out;
}

using Pairs = std::vector<std::pair<std::string, std::string>>;
using Reasons = std::map<std::string, std::string>;

TEST(dataset, class_folders_sorted_bytewise_with_labels) {
  TempDir t;
  t.file("b/1.jpg");
  t.file("a/2.jpg");
  t.file("a/1.jpg");
  t.file("C/9.png");
  t.file("\xC3\xA9t\xC3\xA9/1.jpg");  // "été": UTF-8 sorts after ASCII, as code points do
  t.file("a b/1.jpg");
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(ds.root, t.path());
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"C", "a", "a b", "b", "\xC3\xA9t\xC3\xA9"}));
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"C/9.png", "C"},
                                              {"a/1.jpg", "a"},
                                              {"a/2.jpg", "a"},
                                              {"a b/1.jpg", "a b"},
                                              {"b/1.jpg", "b"},
                                              {"\xC3\xA9t\xC3\xA9/1.jpg", "\xC3\xA9t\xC3\xA9"}}));
  for (std::size_t i = 0; i < ds.entries.size(); ++i) {
    EXPECT_EQ(ds.classes[ds.entries[i].label], rel_entries(ds, t.path())[i].second);
  }
  EXPECT_TRUE(ds.ignored.empty());
}

TEST(dataset, nested_folders_are_found_in_bytewise_path_order) {
  TempDir t;
  t.file("cat/x/y/z/deep.png");
  t.file("cat/a/c.jpg");
  t.file("cat/a-b.jpg");  // '-' (0x2d) < '/' (0x2f): comes before everything under "a/"
  t.file("cat/top.webp");
  t.file("dog/sub/1.jpg");
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"cat/a-b.jpg", "cat"},
                                              {"cat/a/c.jpg", "cat"},
                                              {"cat/top.webp", "cat"},
                                              {"cat/x/y/z/deep.png", "cat"},
                                              {"dog/sub/1.jpg", "dog"}}));
}

TEST(dataset, extensions_match_case_insensitively) {
  TempDir t;
  for (const char* name : {"a.JPG", "b.Jpeg", "c.PnG", "d.WEBP", "e.jpg", "f.txt", "noext",
                           "g.jpg.txt", "h.txt.jpg", "i.gif", "jpg"}) {
    t.file(std::string("c/") + name);
  }
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"c/a.JPG", "c"},
                                              {"c/b.Jpeg", "c"},
                                              {"c/c.PnG", "c"},
                                              {"c/d.WEBP", "c"},
                                              {"c/e.jpg", "c"},
                                              {"c/h.txt.jpg", "c"}}));
  const std::string no = "not an image extension";
  EXPECT_EQ(
      rel_ignored(ds, t.path()),
      (Reasons{
          {"c/f.txt", no}, {"c/g.jpg.txt", no}, {"c/i.gif", no}, {"c/jpg", no}, {"c/noext", no}}));

  ScanOptions gif_only;
  gif_only.extensions = {"GIF"};
  Dataset gifs = scan_folder(t.path(), gif_only);
  EXPECT_EQ(rel_entries(gifs, t.path()), (Pairs{{"c/i.gif", "c"}}));
  EXPECT_EQ(gifs.ignored.size(), 10u);
}

TEST(dataset, hidden_files_and_folders_are_ignored_and_listed) {
  TempDir t;
  t.file("cat/1.jpg");
  t.file("cat/.DS_Store");
  t.file("cat/._1.jpg");
  t.file("cat/.thumbs/1.jpg");
  t.file("cat/.thumbs/2.jpg");
  t.file(".git/config");
  t.file(".hidden.jpg");
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"cat"}));
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"cat/1.jpg", "cat"}}));
  // A hidden folder is reported once, not descended into.
  EXPECT_EQ(rel_ignored(ds, t.path()), (Reasons{{".git", "hidden"},
                                                {".hidden.jpg", "hidden"},
                                                {"cat/.DS_Store", "hidden"},
                                                {"cat/._1.jpg", "hidden"},
                                                {"cat/.thumbs", "hidden"}}));
}

TEST(dataset, root_level_files_are_ignored_and_listed) {
  TempDir t;
  t.file("LICENSE.txt");
  t.file("cover.jpg");
  t.file("cat/1.jpg");
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"cat"}));
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"cat/1.jpg", "cat"}}));
  EXPECT_EQ(rel_ignored(ds, t.path()),
            (Reasons{{"LICENSE.txt", "root-level file"}, {"cover.jpg", "root-level file"}}));
}

TEST(dataset, flat_folder_is_one_unnamed_class) {
  TempDir t;
  t.file("b.png");
  t.file("a.jpg");
  t.file("notes.txt");
  t.file(".cache/x.jpg");
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(ds.classes, (std::vector<std::string>{""}));
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"a.jpg", ""}, {"b.png", ""}}));
  EXPECT_EQ(rel_ignored(ds, t.path()),
            (Reasons{{".cache", "hidden"}, {"notes.txt", "not an image extension"}}));
}

TEST(dataset, empty_folder_gives_empty_dataset_and_empty_class_is_kept) {
  TempDir t;
  Dataset none = scan_folder(t.path());
  EXPECT_TRUE(none.classes.empty());
  EXPECT_TRUE(none.entries.empty());

  t.file("a/readme.txt");
  t.file("b/1.jpg");
  Dataset ds = scan_folder(t.path());
  // "a" keeps its label even with no image, so labels match a scan where "a" has images.
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"a", "b"}));
  ASSERT_EQ(ds.entries.size(), 1u);
  EXPECT_EQ(ds.entries[0].label, 1);
}

TEST(dataset, symlink_loops_are_reported_not_followed) {
  TempDir t;
  t.file("cat/1.jpg");
  t.file("cat/sub/2.jpg");
  t.symlink("..", "cat/sub/up");          // back to cat: a loop
  t.symlink("../..", "cat/sub/to_root");  // back to the root: a loop
  t.symlink("self", "cat/self");          // a symlink to itself (ELOOP)
  t.symlink(".", "root_link");            // the root inside itself is not a class
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"cat"}));
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"cat/1.jpg", "cat"}, {"cat/sub/2.jpg", "cat"}}));
  EXPECT_EQ(rel_ignored(ds, t.path()), (Reasons{{"cat/self", "symlink loop"},
                                                {"cat/sub/to_root", "symlink loop"},
                                                {"cat/sub/up", "symlink loop"},
                                                {"root_link", "symlink loop"}}));
}

TEST(dataset, symlinks_to_files_and_folders_are_followed) {
  TempDir outside;
  outside.file("pics/o.jpg");
  outside.file("single.png");
  TempDir t;
  t.symlink(outside / "pics", "cat/linked");
  t.symlink(outside / "single.png", "cat/s.png");
  t.symlink(outside / "pics", "dog");  // a symlinked class folder is a class
  // The same folder twice on different branches is scanned once, as the class folder.
  t.symlink("../dog", "cat/again");
  ScanOptions follow;
  follow.follow_links = true;  // the links lead out of the root
  Dataset ds = scan_folder(t.path(), follow);
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"cat/s.png", "cat"}, {"dog/o.jpg", "dog"}}));
  EXPECT_EQ(rel_ignored(ds, t.path()), (Reasons{{"cat/again", "same folder as " + t / "dog"},
                                                {"cat/linked", "same folder as " + t / "dog"}}));
}

TEST(dataset, broken_symlinks_are_reported) {
  TempDir t;
  t.file("cat/1.jpg");
  t.symlink("missing.jpg", "cat/broken.jpg");
  t.symlink("nowhere", "gone");
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"cat"}));
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"cat/1.jpg", "cat"}}));
  EXPECT_EQ(rel_ignored(ds, t.path()),
            (Reasons{{"cat/broken.jpg", "broken symlink"}, {"gone", "broken symlink"}}));
}

TEST(dataset, folder_named_like_an_image_is_descended) {
  TempDir t;
  t.file("cat/x.jpg/inner.png");
  t.dir("cat/empty.jpg");
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"cat/x.jpg/inner.png", "cat"}}));
  EXPECT_TRUE(ds.ignored.empty());
}

TEST(dataset, special_files_are_not_taken) {
  TempDir t;
  t.file("cat/1.jpg");
  ASSERT_EQ(::mkfifo((t / "cat/pipe.jpg").c_str(), 0600), 0);
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"cat/1.jpg", "cat"}}));
  EXPECT_EQ(rel_ignored(ds, t.path()), (Reasons{{"cat/pipe.jpg", "not a regular file"}}));
}

TEST(dataset, unicode_and_space_names_work) {
  TempDir t;
  t.file("my photos/\xE7\x8C\xAB \xF0\x9F\x90\x88.JPG");  // "猫 🐈.JPG"
  t.file("my photos/ leading and trailing .png");
  Dataset ds = scan_folder(t.path());
  EXPECT_EQ(rel_entries(ds, t.path()),
            (Pairs{{"my photos/ leading and trailing .png", "my photos"},
                   {"my photos/\xE7\x8C\xAB \xF0\x9F\x90\x88.JPG", "my photos"}}));
  for (const Entry& e : ds.entries) EXPECT_TRUE(fs::is_regular_file(e.path)) << e.path;
}

TEST(dataset, root_spelling_is_kept_without_doubled_slash) {
  TempDir t;
  t.file("cat/1.jpg");
  Dataset ds = scan_folder(t.path() + "/");
  EXPECT_EQ(ds.root, t.path() + "/");
  ASSERT_EQ(ds.entries.size(), 1u);
  EXPECT_EQ(ds.entries[0].path, t.path() + "/cat/1.jpg");
}

TEST(dataset, missing_or_non_folder_root_throws_with_path) {
  TempDir t;
  const std::string missing = t / "no such dir";
  try {
    scan_folder(missing);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_EQ(std::string(e.what()), missing + ": no such folder");
  }
  t.file("plain.jpg");
  try {
    scan_folder(t / "plain.jpg");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_EQ(std::string(e.what()), t / "plain.jpg" + ": not a folder");
  }
}

TEST(dataset, unreadable_folder_is_reported_not_thrown) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every folder";
  TempDir t;
  t.file("cat/1.jpg");
  t.file("cat/locked/2.jpg");
  ASSERT_EQ(::chmod((t / "cat/locked").c_str(), 0), 0);
  Dataset ds = scan_folder(t.path());
  ::chmod((t / "cat/locked").c_str(), 0700);
  EXPECT_EQ(rel_entries(ds, t.path()), (Pairs{{"cat/1.jpg", "cat"}}));
  Reasons r = rel_ignored(ds, t.path());
  ASSERT_EQ(r.count("cat/locked"), 1u);
  EXPECT_EQ(r["cat/locked"].rfind("unreadable folder: ", 0), 0u) << r["cat/locked"];
}

TEST(dataset, list_file_paths_classes_and_order) {
  TempDir t;
  for (const char* f : {"lists/sub/cat/1.jpg", "lists/sub/dog/2.jpg", "abs/bird/3.png",
                        "lists/sub/dog/notes.txt", "lists/top.jpg", "lists/sub/dog/4.jpg"})
    t.file(f);
  std::ofstream(t / "lists/list.txt", std::ios::binary)
      << "# a comment\n"
      << "sub/dog/2.jpg\r\n"              // CRLF
      << "\n   \t\n"                      // blank lines
      << "  sub/cat/1.jpg  \n"            // surrounding whitespace
      << t.path() << "/abs/bird/3.png\n"  // absolute
      << "sub/dog/notes.txt\n"            // kept: the user named it
      << "top.jpg\n"                      // class: the list file's folder
      << "sub/cat/../dog/4.jpg";          // no final newline; class from the real folder
  Dataset ds = read_list(t / "lists/list.txt");
  EXPECT_EQ(ds.root, t / "lists/list.txt");
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"bird", "cat", "dog", "lists"}));
  std::vector<std::pair<std::string, std::string>> got;
  for (const Entry& e : ds.entries) got.emplace_back(e.path, ds.classes.at(e.label));
  const std::string base = t / "lists/";
  EXPECT_EQ(got, (Pairs{{base + "sub/dog/2.jpg", "dog"},
                        {base + "sub/cat/1.jpg", "cat"},
                        {t.path() + "/abs/bird/3.png", "bird"},
                        {base + "sub/dog/notes.txt", "dog"},
                        {base + "top.jpg", "lists"},
                        {base + "sub/cat/../dog/4.jpg", "dog"}}));
  EXPECT_TRUE(fs::is_regular_file(got[1].first));
  EXPECT_TRUE(ds.ignored.empty());
}

TEST(dataset, missing_list_file_throws_with_path) {
  TempDir t;
  const std::string missing = t / "list.txt";
  try {
    read_list(missing);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_EQ(std::string(e.what()), missing + ": no such file");
  }
  try {
    read_list(t.path());
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_EQ(std::string(e.what()).rfind(t.path() + ": ", 0), 0u) << e.what();
  }
}

TEST(dataset, sample_indices_are_sorted_unique_and_in_range) {
  for (auto [n, k] : std::vector<std::pair<std::size_t, std::size_t>>{
           {0, 0}, {1, 0}, {1, 1}, {10, 10}, {10, 3}, {1000, 10}, {1000, 500}, {100000, 7}}) {
    for (std::uint64_t seed : {0ULL, 1ULL, 42ULL, ~0ULL}) {
      std::vector<std::size_t> s = sample_indices(n, k, seed);
      ASSERT_EQ(s.size(), k) << n << " " << k;
      EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
      EXPECT_EQ(std::adjacent_find(s.begin(), s.end()), s.end()) << "duplicate";
      if (!s.empty()) {
        EXPECT_LT(s.back(), n);
      }
    }
  }
  try {
    sample_indices(3, 5, 0);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_EQ(std::string(e.what()), "cannot sample 5 of 3 entries");
  }
}

TEST(dataset, sample_indices_are_deterministic_per_seed) {
  for (auto [n, k] : std::vector<std::pair<std::size_t, std::size_t>>{{1000, 10}, {1000, 500}}) {
    EXPECT_EQ(sample_indices(n, k, 7), sample_indices(n, k, 7));
    EXPECT_NE(sample_indices(n, k, 7), sample_indices(n, k, 8));
    EXPECT_NE(sample_indices(n, k, 0), sample_indices(n, k, 1));
  }
}

/// Pearson's chi-square of `counts` against a uniform expectation.
double chi_square(const std::vector<double>& counts) {
  double total = 0;
  for (double c : counts) total += c;
  const double expected = total / static_cast<double>(counts.size());
  double chi = 0;
  for (double c : counts) chi += (c - expected) * (c - expected) / expected;
  return chi;
}

// Fixed seeds make these deterministic; the bounds are ~6 standard deviations wide so they hold for
// any correct sampler, while a biased one (e.g. always the first k, or modulo bias at this scale of
// effect) is far outside them.
TEST(dataset, sample_indices_pick_every_index_uniformly) {
  // Dense path (bitmap): n = 20, k = 5.
  {
    const std::size_t n = 20, k = 5, runs = 20000;
    std::vector<double> counts(n, 0);
    for (std::uint64_t seed = 0; seed < runs; ++seed) {
      for (std::size_t i : sample_indices(n, k, seed)) counts[i] += 1;
    }
    const double expected = static_cast<double>(runs * k) / n;  // 5000, sd ~61
    for (double c : counts) EXPECT_NEAR(c, expected, 400);
    EXPECT_LT(chi_square(counts), 19 + 6 * std::sqrt(2.0 * 19));  // df 19
  }
  // Sparse path (hash set): n = 1000, k = 3. Seeds a multiple of splitmix64's increment apart:
  // with a bare splitmix64 they would share streams and fail this.
  {
    const std::size_t n = 1000, k = 3, runs = 100000;
    std::vector<double> counts(n, 0);
    for (std::uint64_t seed = 0; seed < runs; ++seed) {
      for (std::size_t i : sample_indices(n, k, seed * 0x9E3779B97F4A7C15ULL)) counts[i] += 1;
    }
    EXPECT_LT(chi_square(counts), 999 + 6 * std::sqrt(2.0 * 999));
    const double expected = static_cast<double>(runs * k) / n;  // 300, sd ~17
    for (double c : counts) EXPECT_NEAR(c, expected, 120);
  }
}

TEST(dataset, sample_indices_pick_every_subset_uniformly) {
  // All C(6,3) = 20 subsets, not just each index, must be equally likely.
  const std::size_t n = 6, k = 3, runs = 40000;
  std::map<std::vector<std::size_t>, double> seen;
  for (std::uint64_t seed = 1000; seed < 1000 + runs; ++seed) seen[sample_indices(n, k, seed)] += 1;
  ASSERT_EQ(seen.size(), 20u);
  std::vector<double> counts;
  for (const auto& [subset, c] : seen) counts.push_back(c);
  EXPECT_LT(chi_square(counts), 19 + 6 * std::sqrt(2.0 * 19));
}

TEST(dataset, parse_sample_count_accepts_counts_and_percentages) {
  EXPECT_EQ(parse_sample_count("500", 1000), 500u);
  EXPECT_EQ(parse_sample_count("0500", 1000), 500u);
  EXPECT_EQ(parse_sample_count("5000", 1000), 1000u);
  EXPECT_EQ(parse_sample_count("99999999999999999999999999", 1000), 1000u);
  EXPECT_EQ(parse_sample_count("10%", 1000), 100u);
  EXPECT_EQ(parse_sample_count("12.5%", 1000), 125u);
  EXPECT_EQ(parse_sample_count("12.50%", 1000), 125u);
  EXPECT_EQ(parse_sample_count("100%", 7), 7u);
  EXPECT_EQ(parse_sample_count("100.000%", 7), 7u);
  EXPECT_EQ(parse_sample_count("10%", 25), 3u);     // 2.5 rounds half up
  EXPECT_EQ(parse_sample_count("10%", 24), 2u);     // 2.4 rounds down
  EXPECT_EQ(parse_sample_count("0.001%", 10), 1u);  // at least 1
  EXPECT_EQ(parse_sample_count("50%", 0), 0u);
  EXPECT_EQ(parse_sample_count("33.333333333%", 300000000000ULL), 99999999999u);
}

TEST(dataset, parse_sample_count_rejects_bad_text) {
  for (const char* bad : {"",
                          "abc",
                          "0",
                          "-3",
                          "+3",
                          "150%",
                          "0%",
                          "0.0%",
                          "100.1%",
                          "%",
                          "1.5",
                          ".5%",
                          "5.%",
                          "10 %",
                          " 10",
                          "1e3",
                          "12.5.1%",
                          "10%%",
                          "1234567890123%",
                          "0.0000000001%"}) {
    try {
      parse_sample_count(bad, 1000);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_EQ(std::string(e.what()).rfind(std::string("invalid sample count '") + bad + "'", 0),
                0u)
          << e.what();
    }
  }
}

Dataset numbered(std::size_t count) {
  Dataset ds;
  ds.classes = {"a", "b"};
  for (std::size_t i = 0; i < count; ++i) {
    ds.entries.push_back(Entry{std::to_string(i), static_cast<int>(i % 2)});
  }
  return ds;
}

TEST(dataset, shards_partition_the_entries) {
  for (std::size_t count : {0u, 1u, 7u, 100u}) {
    for (int n : {1, 2, 3, 8}) {
      std::multiset<std::string> all;
      for (int i = 0; i < n; ++i) {
        Dataset ds = numbered(count);
        keep_shard(ds, i, n);
        EXPECT_EQ(ds.classes.size(), 2u);  // labels stay meaningful across shards
        std::size_t prev = 0;
        for (std::size_t j = 0; j < ds.entries.size(); ++j) {
          const std::size_t index = std::stoul(ds.entries[j].path);
          EXPECT_EQ(index % n, static_cast<std::size_t>(i));
          EXPECT_EQ(ds.entries[j].label, static_cast<int>(index % 2));
          if (j > 0) {
            EXPECT_GT(index, prev);  // order kept
          }
          prev = index;
          all.insert(ds.entries[j].path);
        }
      }
      // Union is everything, and (multiset of the right size with every entry) disjoint.
      EXPECT_EQ(all.size(), count);
      for (std::size_t k = 0; k < count; ++k) EXPECT_EQ(all.count(std::to_string(k)), 1u);
    }
  }
}

TEST(dataset, invalid_shards_throw) {
  for (auto [i, n] : std::vector<std::pair<int, int>>{{0, 0}, {2, 2}, {-1, 3}, {5, 3}, {0, -1}}) {
    Dataset ds = numbered(4);
    try {
      keep_shard(ds, i, n);
      ADD_FAILURE() << i << "/" << n;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      const std::string prefix =
          "invalid shard '" + std::to_string(i) + "/" + std::to_string(n) + "'";
      EXPECT_EQ(std::string(e.what()).rfind(prefix, 0), 0u) << e.what();
    }
    EXPECT_EQ(ds.entries.size(), 4u);
  }
}

TEST(dataset, keep_indices_keeps_the_sample_in_order) {
  Dataset ds = numbered(100);
  std::vector<std::size_t> pick = sample_indices(100, 10, 3);
  keep_indices(ds, pick);
  ASSERT_EQ(ds.entries.size(), 10u);
  for (std::size_t j = 0; j < pick.size(); ++j)
    EXPECT_EQ(ds.entries[j].path, std::to_string(pick[j]));

  Dataset bad = numbered(5);
  EXPECT_THROW(keep_indices(bad, {1, 5}), Error);
  EXPECT_THROW(keep_indices(bad, {2, 2}), Error);
  EXPECT_THROW(keep_indices(bad, {3, 1}), Error);
  EXPECT_EQ(bad.entries.size(), 5u);
  EXPECT_EQ(bad.entries[1].path, "1");  // untouched after a refused call
}

}  // namespace
}  // namespace imgnorm
