// Scanning a folder (issue 10, items 7, 8, 14, 16, 20): symlinked folders scanned once, links out
// of the root, cancelling a scan, missing files in a list, classes without images, --resize none
// sizes, and a sample as big as the dataset.

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "imgnorm/dataset.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/select.hpp"
#include "imgnorm/stats_job.hpp"
#include "test_files.hpp"

namespace imgnorm {
namespace {

using testing::TempDir;
using testing::write_png;
namespace fs = std::filesystem;

void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  testing::write_bytes(p, "x");
}

void link(const fs::path& target, const fs::path& at) {
  fs::create_directories(at.parent_path());
  fs::create_symlink(target, at);
}

/// Entry paths relative to `root`.
std::vector<std::string> rel_entries(const Dataset& ds, const fs::path& root) {
  std::vector<std::string> out;
  for (const Entry& e : ds.entries) out.push_back(fs::path(e.path).lexically_relative(root));
  return out;
}

std::map<std::string, std::string> rel_ignored(const Dataset& ds, const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const Ignored& i : ds.ignored) {
    EXPECT_TRUE(out.emplace(fs::path(i.path).lexically_relative(root), i.reason).second) << i.path;
  }
  return out;
}

// The tree: every level reached through two links. Before, 2^levels paths were walked and
// the one image counted once per path; now each real folder is scanned once.
TEST(scan, folder_reached_by_many_links_is_scanned_once) {
  TempDir t;
  const fs::path root = t.path / "ds";
  constexpr int kLevels = 14;
  for (int i = 0; i < kLevels; ++i) {
    const fs::path level = t.path / "ds/.store" / std::to_string(i);
    fs::create_directories(level);
    link("../" + std::to_string(i + 1), level / "a");
    link("../" + std::to_string(i + 1), level / "b");
  }
  touch(t.path / "ds/.store" / std::to_string(kLevels) / "img.jpg");
  link("../.store/0", root / "cat/a");
  link("../.store/0", root / "cat/b");

  const Dataset ds = scan_folder(root.string());
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"cat"}));
  std::string first = "cat/";
  for (int i = 0; i <= kLevels; ++i) first += "a/";
  EXPECT_EQ(rel_entries(ds, root), (std::vector<std::string>{first + "img.jpg"}));
  // The second path to each folder is listed with the first one.
  const auto ignored = rel_ignored(ds, root);
  EXPECT_EQ(ignored.size(), 1u + kLevels + 1u);  // .store, cat/b, and each level's "b"
  EXPECT_EQ(ignored.at("cat/b"), "same folder as " + (root / "cat/a").string());
  EXPECT_EQ(ignored.at("cat/a/b"), "same folder as " + (root / "cat/a/a").string());
  EXPECT_EQ(ignored.at(".store"), "hidden");
}

// A folder reachable by its real path and through a link is scanned under its real path, even
// when the link comes first in the walk.
TEST(scan, real_path_wins_over_a_link) {
  TempDir t;
  const fs::path root = t.path;
  touch(root / "cat/z_real/1.jpg");
  link("z_real", root / "cat/a_link");
  link("../cat/z_real", root / "dog/to_cat");
  touch(root / "dog/2.jpg");
  const Dataset ds = scan_folder(root.string());
  EXPECT_EQ(rel_entries(ds, root), (std::vector<std::string>{"cat/z_real/1.jpg", "dog/2.jpg"}));
  EXPECT_EQ(rel_ignored(ds, root),
            (std::map<std::string, std::string>{
                {"cat/a_link", "same folder as " + (root / "cat/z_real").string()},
                {"dog/to_cat", "same folder as " + (root / "cat/z_real").string()}}));
}

// Links that lead out of the root are not followed unless asked: a link to "/" walked the whole
// file system (/proc included). A linked class folder stays a class, so labels do not change.
TEST(scan, links_out_of_the_root_need_follow_links) {
  TempDir outside;
  touch(outside.path / "pics/o.jpg");
  touch(outside.path / "single.png");
  TempDir t;
  const fs::path root = t.path;
  touch(root / "cat/1.jpg");
  link("/", root / "cat/slash");
  link(outside.path / "pics", root / "cat/linked");
  link(outside.path / "single.png", root / "cat/s.png");
  link(outside.path / "pics", root / "dog");
  link("1.jpg", root / "cat/inside.jpg");  // inside the root: followed

  const Dataset ds = scan_folder(root.string());
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(rel_entries(ds, root), (std::vector<std::string>{"cat/1.jpg", "cat/inside.jpg"}));
  EXPECT_EQ(rel_ignored(ds, root), (std::map<std::string, std::string>{{"cat/linked", kOutsideLink},
                                                                       {"cat/s.png", kOutsideLink},
                                                                       {"cat/slash", kOutsideLink},
                                                                       {"dog", kOutsideLink}}));
  EXPECT_EQ(std::string(kOutsideLink),
            "symlink out of the dataset folder (--follow-links follows it)");

  fs::remove(root / "cat/slash");
  ScanOptions follow;
  follow.follow_links = true;
  const Dataset all = scan_folder(root.string(), follow);
  EXPECT_EQ(all.classes, (std::vector<std::string>{"cat", "dog"}));
  // The linked class folder "dog" and cat/linked are one folder: scanned once, as "dog" (class
  // folders before links found inside them).
  EXPECT_EQ(rel_entries(all, root),
            (std::vector<std::string>{"cat/1.jpg", "cat/inside.jpg", "cat/s.png", "dog/o.jpg"}));
  EXPECT_EQ(rel_ignored(all, root),
            (std::map<std::string, std::string>{
                {"cat/linked", "same folder as " + (root / "dog").string()}}));
}

TEST(scan, follow_links_still_detects_loops) {
  TempDir t;
  const fs::path root = t.path / "ds";
  touch(root / "cat/1.jpg");
  link("../..", root / "cat/up");  // the root's parent, which holds the root
  ScanOptions follow;
  follow.follow_links = true;
  const Dataset ds = scan_folder(root.string(), follow);
  EXPECT_EQ(rel_entries(ds, root), (std::vector<std::string>{"cat/1.jpg"}));
  EXPECT_EQ(rel_ignored(ds, root),
            (std::map<std::string, std::string>{{"cat/up/ds", "symlink loop"}}));
}

TEST(scan, a_raised_cancel_flag_stops_the_scan) {
  TempDir t;
  touch(t.path / "cat/1.jpg");
  std::atomic<bool> cancel{true};
  ScanOptions o;
  o.cancel = &cancel;
  try {
    scan_folder(t.str(""), o);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted);
    EXPECT_STREQ(e.what(), "interrupted");
  }
  std::string lines;
  for (int i = 0; i < 2000; ++i) lines += "cat/1.jpg\n";
  testing::write_bytes(t.path / "list.txt", lines);
  try {
    read_list(t.str("list.txt"), o);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted);
  }
  SelectOptions sel;
  sel.folder = t.str("");
  sel.scan.cancel = &cancel;
  EXPECT_THROW(select_dataset(sel), Error);
  cancel = false;
  EXPECT_EQ(select_dataset(sel).dataset.entries.size(), 1u);
}

// A mistyped line made a class of its own ("rosse") and shifted the labels after it.
TEST(scan, a_missing_listed_file_is_no_class) {
  TempDir t;
  for (const char* f : {"daisy/1.jpg", "roses/2.jpg", "tulips/3.jpg"}) touch(t.path / f);
  testing::write_bytes(t.path / "list.txt",
                       "daisy/1.jpg\nrosse/2.jpg\nroses/2.jpg\ntulips/3.jpg\n");
  const Dataset ds = read_list(t.str("list.txt"));
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"daisy", "roses", "tulips"}));
  ASSERT_EQ(ds.entries.size(), 4u);
  EXPECT_EQ(ds.entries[1].path, t.str("rosse/2.jpg"));
  EXPECT_EQ(ds.entries[1].label, -1);
  EXPECT_EQ(ds.entries[3].label, 2);

  // The job skips it as a missing file.
  SelectOptions sel;
  sel.list = t.str("list.txt");
  StatsJob job;
  job.recipe.size = {8, 8};
  write_png(t.path / "daisy/1.jpg", 8, 8, 3, 1);
  write_png(t.path / "roses/2.jpg", 8, 8, 3, 2);
  write_png(t.path / "tulips/3.jpg", 8, 8, 3, 3);
  const StatsFile st = compute_stats(select_dataset(sel), job, {});
  EXPECT_EQ(st.classes, ds.classes);
  EXPECT_EQ(st.class_images, (std::vector<std::uint64_t>{1, 1, 1}));
  ASSERT_EQ(st.skipped.size(), 1u);
  EXPECT_EQ(st.skipped[0].path, t.str("rosse/2.jpg"));
  EXPECT_EQ(st.skipped[0].reason, "no such file");
}

TEST(scan, classes_without_images_are_reported) {
  TempDir t;
  for (const char* d : {"a", "b", "c"}) fs::create_directories(t.path / d);
  write_png(t.path / "a/1.png", 8, 8, 3, 1);
  write_png(t.path / "b/2.png", 8, 8, 3, 2);
  testing::write_bytes(t.path / "b/3.png", "not a png");
  testing::write_bytes(t.path / "c/notes.txt", "x");
  SelectOptions sel;
  sel.folder = t.str("");
  const Selection s = select_dataset(sel);
  EXPECT_EQ(s.empty_classes, (std::vector<std::string>{"c"}));
  EXPECT_TRUE(s.warnings.empty());
  EXPECT_EQ(empty_class_warning("c"),
            "class 'c' has no usable image (its label is kept; --strict fails on it)");
  // b's files were found, but none could be used.
  fs::remove(t.path / "b/2.png");
  const Selection s2 = select_dataset(sel);
  StatsJob job;
  job.recipe.size = {8, 8};
  const StatsFile st = compute_stats(s2, job, {});
  EXPECT_EQ(classes_without_images(s2, st), (std::vector<std::string>{"b", "c"}));
}

TEST(scan, a_sample_as_big_as_the_dataset_is_warned_about) {
  TempDir t;
  for (int i = 0; i < 5; ++i) touch(t.path / "cat" / (std::to_string(i) + ".jpg"));
  SelectOptions sel;
  sel.folder = t.str("");
  sel.sample = "99999";
  Selection s = select_dataset(sel);
  EXPECT_EQ(s.dataset.entries.size(), 5u);
  EXPECT_EQ(s.warnings, (std::vector<std::string>{
                            "--sample 99999 takes all 5 images: the sample is the whole dataset"}));
  sel.sample = "4";
  EXPECT_TRUE(select_dataset(sel).warnings.empty());
}

}  // namespace
}  // namespace imgnorm
