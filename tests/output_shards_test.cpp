// normalize --output-shards (issue 14): a shard per rank (one without MPI), listed in
// manifest.json, read back as one array (OutputSet, inspect_output) equal byte for byte to the
// single images.npy; the set replaces an earlier set of either form whole; denormalize takes one
// shard. The ranks are threads (tests/thread_communicator.hpp).

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "imgnorm/distributed.hpp"
#include "imgnorm/inspect.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/output_set.hpp"
#include "test_files.hpp"
#include "thread_communicator.hpp"

namespace imgnorm {
namespace {

using testing::TempDir;
using thread_ranks::run_ranks;
namespace fs = std::filesystem;

// 9 PNGs in 3 classes and a broken file (the first of class b).
void make_dataset(const fs::path& root) {
  unsigned seed = 7;
  for (const char* c : {"a", "b", "c"}) {
    fs::create_directories(root / c);
    for (int i = 0; i < 3; ++i)
      testing::write_png(root / c / ("img" + std::to_string(i) + ".png"), 15 + i * 4, 13 + i, 3,
                         seed++);
  }
  testing::write_bytes(root / "b" / "0_broken.png", "not a png");
}

PipelineOptions quiet() {
  PipelineOptions o;
  o.threads = 1;
  return o;
}

NormalizeJob per_image_job() {
  NormalizeJob job;
  job.spec.mode = Mode::per_image;  // per-row maps: denormalize must find a shard's rows
  job.recipe.size = Size{7, 5};
  return job;
}

// The data bytes of a .npy (after its header).
std::string npy_data(const std::string& path) {
  const NpyArray a = read_npy(path);
  return std::string(a.data.begin(), a.data.end());
}

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

// "k<ranks>", the output folder of a run on that many ranks. Appended, not "k" + std::to_string(k):
// GCC 12 warns (-Wrestrict, a false positive, GCC bug 105329) on that, inlined as an overlapping
// replace at the front.
std::string rank_dir(int k) {
  std::string name = "k";
  name += std::to_string(k);
  return name;
}

std::string set_data(const OutputSet& set) {
  std::string bytes(static_cast<std::size_t>(set.rows() * set.header().row_bytes()), '\0');
  set.read_rows(0, set.rows(), bytes.data());
  return bytes;
}

TEST(output_shards, ranks_write_one_shard_each_that_concatenate_to_the_single_images) {
  TempDir dir;
  make_dataset(dir.path / "data");
  Normalization one(per_image_job(), dir.str("data"));
  normalize_to_folder(one, dir.str("single"), false, quiet());
  const std::string single = npy_data(dir.str("single/images.npy"));
  const Manifest single_manifest = read_manifest(dir.str("single/manifest.json"));
  const OutputSet whole(dir.str("single"));
  EXPECT_EQ(set_data(whole), single) << "OutputSet over images.npy";
  // 5 ranks over 10 files: the broken one leaves a shard short; 12: two shards of 0 rows.
  for (int k : {1, 2, 3, 4, 5, 12}) {
    const std::string out = dir.str(rank_dir(k));
    run_ranks(k, [&](Communicator& comm) {
      Normalization n(per_image_job(), open_input(comm, dir.str("data")));
      normalize_to_folder(comm, n, out, false, quiet(), /*output_shards=*/true);
    });
    std::set<std::string> want{"manifest.json"};
    std::string concatenated;
    std::vector<std::int64_t> labels;
    const Manifest m = read_manifest(out + "/manifest.json");
    ASSERT_EQ(m.shards.size(), static_cast<std::size_t>(k));
    for (int r = 0; r < k; ++r) {
      char name[32];
      std::snprintf(name, sizeof name, "images-%05d.npy", r);
      want.insert(name);
      EXPECT_EQ(m.shards[r].images, name);
      concatenated += npy_data(out + "/" + name);
      std::snprintf(name, sizeof name, "labels-%05d.npy", r);
      want.insert(name);
      EXPECT_EQ(m.shards[r].labels, name);
      const NpyArray l = read_npy(out + "/" + name);
      EXPECT_EQ(l.header.shape.at(0), m.shards[r].rows) << k << " ranks, shard " << r;
      labels.insert(labels.end(), l.as<std::int64_t>(), l.as<std::int64_t>() + l.header.count);
    }
    EXPECT_EQ(entries(out), want) << k
                                  << " ranks: the shards, the labels, the manifest, nothing else";
    EXPECT_EQ(concatenated, single) << k << " ranks: the shards, in order, are images.npy";
    EXPECT_EQ(labels, whole.labels()) << k << " ranks";
    // The manifest is the single run's plus the shard list.
    Manifest without = m;
    without.shards.clear();
    EXPECT_EQ(to_json(without), to_json(single_manifest)) << k << " ranks";
    const OutputSet set(out + "/manifest.json");
    EXPECT_EQ(set.header().shape, whole.header().shape);
    EXPECT_EQ(set_data(set), single) << k << " ranks: OutputSet reads the shards as one array";
    EXPECT_EQ(set.labels(), whole.labels());
    // Rows across a shard boundary.
    if (k > 1 && set.rows() >= 4) {
      std::string part(static_cast<std::size_t>(3 * set.header().row_bytes()), '\0');
      const std::uint64_t at = m.shards[0].rows - 1;
      set.read_rows(at, 3, part.data());
      EXPECT_EQ(part, single.substr(static_cast<std::size_t>(at * set.header().row_bytes()),
                                    part.size()));
    }
  }
}

TEST(output_shards, one_process_writes_one_shard) {
  TempDir dir;
  make_dataset(dir.path / "data");
  Normalization one(per_image_job(), dir.str("data"));
  normalize_to_folder(one, dir.str("single"), false, quiet());
  Normalization sharded(per_image_job(), dir.str("data"));
  const NormalizeResult r =
      normalize_to_folder(sharded, dir.str("out"), false, quiet(), nullptr, true);
  EXPECT_EQ(entries(dir.str("out")),
            (std::set<std::string>{"images-00000.npy", "labels-00000.npy", "manifest.json"}));
  EXPECT_EQ(npy_data(dir.str("out/images-00000.npy")), npy_data(dir.str("single/images.npy")));
  EXPECT_EQ(testing::read_bytes(dir.str("out/labels-00000.npy")),
            testing::read_bytes(dir.str("single/labels.npy")));
  const Manifest m = read_manifest(dir.str("out/manifest.json"));
  ASSERT_EQ(m.shards.size(), 1u);
  EXPECT_EQ(m.shards[0], (ManifestShard{"images-00000.npy", "labels-00000.npy", r.rows}));
  // inspect reads the set as the array it stands for.
  const NpyInspection a = inspect_output(dir.str("out"));
  const NpyInspection b = inspect_npy(dir.str("single/images.npy"));
  EXPECT_EQ(a.header.shape, b.header.shape);
  ASSERT_EQ(a.channels.size(), b.channels.size());
  for (std::size_t c = 0; c < a.channels.size(); ++c) {
    EXPECT_EQ(a.channels[c].mean, b.channels[c].mean);
    EXPECT_EQ(a.channels[c].max, b.channels[c].max);
  }
}

TEST(output_shards, a_set_replaces_the_other_form_whole) {
  TempDir dir;
  make_dataset(dir.path / "data");
  const std::string out = dir.str("out");
  run_ranks(3, [&](Communicator& comm) {
    Normalization n(per_image_job(), open_input(comm, dir.str("data")));
    normalize_to_folder(comm, n, out, false, quiet(), true);
  });
  EXPECT_EQ(entries(out).size(), 7u);
  // Without --force the shards are an existing set (as is manifest.json, the first member).
  Normalization again(per_image_job(), dir.str("data"));
  for (const char* first : {"manifest.json", "images-00000.npy"}) {
    try {
      normalize_to_folder(again, out, false, quiet());
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()),
                out + "/" + first + ": already exists (use --force to replace it)");
    }
    fs::remove(out + "/manifest.json");
  }
  normalize_to_folder(again, out, true, quiet());
  EXPECT_EQ(entries(out), (std::set<std::string>{"images.npy", "labels.npy", "manifest.json"}))
      << "the shards of the old set are removed";
  // And back, with fewer ranks: no shard of the old set stays.
  run_ranks(2, [&](Communicator& comm) {
    Normalization n(per_image_job(), open_input(comm, dir.str("data")));
    normalize_to_folder(comm, n, out, true, quiet(), true);
  });
  run_ranks(1, [&](Communicator& comm) {
    Normalization n(per_image_job(), open_input(comm, dir.str("data")));
    normalize_to_folder(comm, n, out, true, quiet(), true);
  });
  EXPECT_EQ(entries(out),
            (std::set<std::string>{"images-00000.npy", "labels-00000.npy", "manifest.json"}));
}

TEST(output_shards, denormalize_takes_one_shard) {
  TempDir dir;
  make_dataset(dir.path / "data");
  Normalization one(per_image_job(), dir.str("data"));
  normalize_to_folder(one, dir.str("single"), false, quiet());
  denormalize(dir.str("single/images.npy"), "", dir.str("all.npy"), false);
  run_ranks(3, [&](Communicator& comm) {
    Normalization n(per_image_job(), open_input(comm, dir.str("data")));
    normalize_to_folder(comm, n, dir.str("out"), false, quiet(), true);
  });
  const std::string all = npy_data(dir.str("all.npy"));
  const Manifest m = read_manifest(dir.str("out/manifest.json"));
  std::string parts;
  for (const ManifestShard& s : m.shards) {
    const std::string to = dir.str("d-" + s.images);
    const Manifest used = denormalize(dir.str("out/" + s.images), "", to, false);
    EXPECT_EQ(used.shape.at(0), s.rows);
    parts += npy_data(to);
  }
  EXPECT_EQ(parts, all) << "the shards' pixels, in order, are those of images.npy";
  try {
    denormalize(dir.str("single/images.npy"), dir.str("out/manifest.json"), dir.str("x.npy"),
                false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), dir.str("single/images.npy") + ": not a shard that " +
                                         dir.str("out/manifest.json") +
                                         " lists; denormalize takes one of its images-RRRRR.npy");
  }
}

TEST(output_shards, manifest_shards_must_add_up) {
  TempDir dir;
  make_dataset(dir.path / "data");
  Normalization n(per_image_job(), dir.str("data"));
  normalize_to_folder(n, dir.str("out"), false, quiet(), nullptr, true);
  std::string text = testing::read_bytes(dir.str("out/manifest.json"));
  const std::string rows = "\"rows\": " + std::to_string(n.planned_rows() - 1);
  const auto at = text.find(rows);
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, rows.size(), "\"rows\": 3");
  try {
    manifest_from_json(text);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::format);
    EXPECT_EQ(std::string(e.what()), "field 'shards': the shards hold " +
                                         std::to_string(n.planned_rows() - 1) +
                                         " rows, 'rows' says 3");
  }
}

// --fit under the ranks: the fit pass over all of them; the outputs and the saved statistics equal
// a single run's.
TEST(distributed_normalize, fit_equals_a_single_run) {
  TempDir dir;
  make_dataset(dir.path / "data");
  NormalizeJob job;
  job.spec.mode = Mode::mean_image;  // the fitted mean image too
  job.recipe.size = Size{6, 5};
  job.fit = true;
  job.save_stats = dir.str("fit.json");
  Normalization one(job, dir.str("data"));
  normalize_to_folder(one, dir.str("single"), false, quiet());
  fs::rename(dir.str("fit.json"), dir.str("fit-single.json"));
  for (int k : {2, 4}) {
    run_ranks(k, [&](Communicator& comm) {
      Normalization n(job, open_input(comm, dir.str("data")));
      normalize_to_folder(comm, n, dir.str(rank_dir(k)), true, quiet());
    });
    for (const char* f : {"images.npy", "labels.npy", "manifest.json"})
      EXPECT_EQ(testing::read_bytes(dir.str(rank_dir(k) + "/") + f),
                testing::read_bytes(dir.str("single/") + f))
          << k << " ranks: " << f;
    EXPECT_EQ(testing::read_bytes(dir.str("fit.json")),
              testing::read_bytes(dir.str("fit-single.json")))
        << k << " ranks: --save-stats";
  }
}

}  // namespace
}  // namespace imgnorm
