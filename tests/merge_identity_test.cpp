// What a stats.json covers (issue 10, item 3): the selection digest, its arithmetic of shards, the
// reader's checks of "covers", and merge_stats refusing overlaps with both inputs named. The CLI
// cases, with the digest recomputed by hashlib, are in tests/ref/test_merge_identity.py.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "coverage.hpp"
#include "imgnorm/select.hpp"
#include "imgnorm/stats_job.hpp"
#include "sha256.hpp"
#include "test_files.hpp"

namespace imgnorm {
namespace {

using testing::TempDir;
using testing::write_bytes;
using testing::write_png;

const std::string kFlowers = std::string(IMGNORM_SOURCE_DIR) + "/examples/flowers";

std::string sha256(const std::string& s, std::size_t chunk = SIZE_MAX) {
  detail::Sha256 h;
  for (std::size_t i = 0; i < s.size(); i += chunk)
    h.update(std::string_view(s).substr(i, std::min(chunk, s.size() - i)));
  return h.hex_digest();
}

TEST(merge_identity, sha256_matches_the_fips_vectors) {
  EXPECT_EQ(sha256(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{64}, SIZE_MAX})
    EXPECT_EQ(sha256(two_blocks, chunk),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256(std::string(1000000, 'a'), 4093),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(merge_identity, digest_names_the_files_not_the_root) {
  Dataset ds;
  ds.root = "data";
  ds.entries = {{"data/a/x.jpg", 0}, {"data/b/y.png", 1}};
  const std::string message = std::string("imgnorm-selection 1\0a/x.jpg\0b/y.png\0", 36);
  const std::string d = selection_digest(ds);
  EXPECT_EQ(d, "sha256:" + sha256(message));
  for (const std::string root : {"./data", "data/", "/abs/data"}) {
    Dataset other = ds;
    other.root = root;
    for (Entry& e : other.entries)
      e.path = root + (root.back() == '/' ? "" : "/") + e.path.substr(5);
    EXPECT_EQ(selection_digest(other), d) << root;
  }
  // A list file's relative lines, lexically normalized, are the same files.
  Dataset list;
  list.root = "sets/data/list.txt";
  list.entries = {{"sets/data/./a//x.jpg", 0}, {"sets/data/b/../b/y.png", 1}};
  EXPECT_EQ(selection_digest(list), d);
  // Another order, another file or one file fewer: another selection.
  Dataset swapped = ds;
  std::swap(swapped.entries[0], swapped.entries[1]);
  EXPECT_NE(selection_digest(swapped), d);
  Dataset fewer = ds;
  fewer.entries.pop_back();
  EXPECT_NE(selection_digest(fewer), d);
}

StatsFile stats_with(const Selection& s, int threads) {
  StatsJob job;
  job.recipe.size = {16, 16};
  PipelineOptions o;
  o.threads = threads;
  return compute_stats(s, job, o);
}

TEST(merge_identity, covers_does_not_depend_on_threads_and_merges_into_the_single_run) {
  SelectOptions sel;
  sel.folder = kFlowers;
  sel.sample = "75%";
  sel.seed = 3;
  const Selection whole = select_dataset(sel);
  EXPECT_EQ(whole.digest, selection_digest(whole.dataset));
  EXPECT_EQ(whole.files, 30u);
  const StatsFile one = stats_with(whole, 1);
  ASSERT_EQ(one.covers.size(), 1u);
  EXPECT_EQ(one.covers[0], (Coverage{whole.digest, 30, {}}));
  for (int threads : {2, 3, 8}) EXPECT_EQ(to_json(stats_with(whole, threads)), to_json(one));

  std::vector<StatsFile> parts;
  for (int i = 0; i < 3; ++i) {
    sel.shard_index = i;
    sel.shard_count = 3;
    const Selection s = select_dataset(sel);
    EXPECT_EQ(s.digest, whole.digest);  // every shard records its whole selection
    parts.push_back(stats_with(s, 1 + i));
    EXPECT_EQ(parts.back().covers[0], (Coverage{whole.digest, 30, {Shard{i, 3}}}));
  }
  std::vector<std::string> warnings;
  EXPECT_EQ(to_json(merge_stats(parts, {"a", "b", "c"}, &warnings)), to_json(one));
  EXPECT_TRUE(warnings.empty());
  const StatsFile two = merge_stats({parts[2], parts[0]}, {"c", "a"}, &warnings);
  EXPECT_EQ(two.covers[0].shards, (std::vector<Shard>{{0, 3}, {2, 3}}));
  EXPECT_EQ(two.shard_count, 1);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "2 of 3 shards of " + kFlowers + " merged (missing 1/3)");
  EXPECT_EQ(to_json(stats_from_json(to_json(two))), to_json(two));
}

TEST(merge_identity, common_file_agrees_with_enumeration) {
  for (int m = 1; m <= 9; ++m)
    for (int k = 1; k <= 9; ++k)
      for (int a = 0; a < m; ++a)
        for (int b = 0; b < k; ++b)
          for (std::uint64_t files : {1u, 5u, 20u, 100u}) {
            std::optional<std::uint64_t> first;
            for (std::uint64_t x = 0; x < files && !first; ++x)
              if (x % m == static_cast<std::uint64_t>(a) && x % k == static_cast<std::uint64_t>(b))
                first = x;
            EXPECT_EQ(detail::common_file({a, m}, {b, k}, files), first)
                << a << "/" << m << " " << b << "/" << k << " of " << files;
          }
  // Large counts: no overflow.
  EXPECT_EQ(detail::common_file({1048575, 1048576}, {0, 1048573}, ~0ull),
            std::optional<std::uint64_t>(733006004223ull));
}

TEST(merge_identity, unite_refuses_overlaps_and_collapses_whole_selections) {
  const std::string d = "sha256:" + std::string(64, 'a'), e = "sha256:" + std::string(64, 'b');
  std::vector<Coverage> c = {{d, 10, {{0, 2}}}};
  detail::unite(c, {{d, 10, {{1, 4}}}});
  EXPECT_EQ(c, (std::vector<Coverage>{{d, 10, {{0, 2}, {1, 4}}}}));
  EXPECT_EQ(detail::covered_files(c[0]), 8u);
  try {
    detail::unite(c, {{d, 10, {{1, 2}}}});
    ADD_FAILURE() << "overlap accepted";
  } catch (const Error& err) {
    EXPECT_EQ(std::string(err.what()),
              "cannot merge statistics: both cover shard 1/4 and shard 1/2 of the same selection "
              "(10 files); merging would count them twice");
  }
  detail::unite(c, {{e, 3, {}}, {d, 10, {{3, 4}}}});
  EXPECT_EQ(c, (std::vector<Coverage>{{d, 10, {}}, {e, 3, {}}}));
  EXPECT_THROW(detail::unite(c, {{e, 4, {{1, 2}}}}), Error);  // one selection, other file count
}

std::string edited(const std::string& text, const std::function<void(nlohmann::ordered_json&)>& f) {
  auto j = nlohmann::ordered_json::parse(text);
  f(j);
  return j.dump();
}

void expect_refused(const std::string& text, const std::string& message) {
  try {
    stats_from_json(text);
    ADD_FAILURE() << "accepted: " << message;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::format);
    EXPECT_EQ(std::string(e.what()), message);
  }
}

TEST(merge_identity, reader_checks_covers) {
  SelectOptions sel;
  sel.folder = kFlowers;
  sel.shard_index = 1;
  sel.shard_count = 4;
  const std::string text = to_json(stats_with(select_dataset(sel), 2));
  EXPECT_EQ(to_json(stats_from_json(text)), text);
  using J = nlohmann::ordered_json;
  expect_refused(edited(text, [](J& j) { j["covers"][0]["selection"] = "md5:00"; }),
                 "field 'covers.selection' must be \"sha256:\" and 64 lower-case hex digits");
  expect_refused(edited(text, [](J& j) { j["covers"] = J::array(); }),
                 "field 'covers' must be a non-empty list");
  expect_refused(edited(text,
                        [](J& j) {
                          j["covers"][0]["shards"] = {"1/4", "1/4"};
                        }),
                 "field 'covers.shards' lists overlapping shards (1/4 and 1/4)");
  expect_refused(edited(text,
                        [](J& j) {
                          j["covers"][0]["files"] = 2;  // 1 + 1 files: as many as the selection
                          j["covers"][0]["shards"] = {"0/2", "0/2"};
                        }),
                 "field 'covers.shards' lists overlapping shards (0/2 and 0/2)");
  expect_refused(edited(text,
                        [](J& j) {
                          j["covers"][0]["shards"] = {"3/6", "1/3", "0/3"};
                        }),
                 "field 'covers.shards' lists overlapping shards (0/3 and 3/6)");
  expect_refused(edited(text, [](J& j) { j["covers"][0]["shards"] = {"4/4"}; }),
                 "field 'covers.shards' must hold \"I/N\" strings with 0 <= I < N <= 1048576 "
                 "(not '4/4')");
  expect_refused(edited(text, [](J& j) { j["covers"][0]["shards"] = {"3/4"}; }),
                 "field 'shard' does not match 'covers'");
  expect_refused(edited(text, [](J& j) { j["covers"][0]["files"] = 44; }),
                 "field 'covers' accounts for 11 files, 'counts.files_found' is 10");
  expect_refused(edited(text, [](J& j) { j["covers"].push_back(j["covers"][0]); }),
                 "field 'covers' lists selection " +
                     J::parse(text)["covers"][0]["selection"].get<std::string>() + " twice");
  // Without "covers" (an older file): read, and the coverage is unknown.
  EXPECT_TRUE(stats_from_json(edited(text, [](J& j) { j.erase("covers"); })).covers.empty());
}

TEST(merge_identity, merge_names_both_inputs_of_an_overlap) {
  TempDir dir;
  // Two different datasets with the same classes and the same root name.
  for (const char* side : {"x", "y"})
    for (const char* c : {"cat", "dog"}) {
      testing::fs::create_directories(dir.path / side / "data" / c);
      for (int i = 0; i < 3; ++i)
        write_png(dir.path / side / "data" / c / (std::string(side) + std::to_string(i) + ".png"),
                  9 + i, 7, 3, static_cast<unsigned>(i + (side[0] == 'x' ? 0 : 10)));
    }
  SelectOptions sx, sy;
  sx.folder = dir.str("x/data");
  sy.folder = dir.str("y/data");
  const StatsFile x = stats_with(select_dataset(sx), 2), y = stats_with(select_dataset(sy), 2);
  EXPECT_NE(x.covers[0].selection, y.covers[0].selection);
  std::vector<std::string> warnings;
  const StatsFile xy = merge_stats({x, y}, {"x.json", "y.json"}, &warnings);
  EXPECT_EQ(xy.covers.size(), 2u);
  EXPECT_EQ(xy.acc.images(), 12u);
  EXPECT_TRUE(warnings.empty());  // the sources differ: nothing to warn about
  try {
    merge_stats({x, y, xy}, {"x.json", "y.json", "xy.json"});
    ADD_FAILURE() << "overlap accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_EQ(std::string(e.what()),
              "xy.json: covers files that x.json covers too (all 6 files and all 6 files of the "
              "same selection (6 files)); merging would count them twice");
  }
}

}  // namespace
}  // namespace imgnorm
