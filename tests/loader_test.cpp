// The training-batch loader: epoch_indices (permutations, rank slices checked against torch's
// DistributedSampler rule computed here from its definition), batches_per_epoch, and EpochLoader
// over a small dataset with corrupt files (every good file once per epoch, rows equal to the
// normalize job's rows, labels, skipped files, thread independence, drop_last, raw u8 pixels,
// cancellation and prompt destruction).

#include "imgnorm/loader.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <spng.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "imgnorm/dataset.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/select.hpp"
#include "imgnorm/stats_job.hpp"

using namespace imgnorm;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const std::string kData = IMGNORM_TEST_DATA;

using namespace imgnorm::testing;

// prefix + i + ext (appended: GCC 12's -Wrestrict false positive on "a" + std::to_string(i)).
std::string numbered(const char* prefix, int i, const char* ext) {
  std::string s(prefix);
  s += std::to_string(i);
  s += ext;
  return s;
}

// A class-folder dataset of `per_class` PNGs (RGB and gray, some nested) per class plus a copy of a
// JPEG, and two files that must be skipped: a text file named .jpg and a truncated PNG.
struct TestDataset {
  std::string root;
  std::set<std::string> broken;  // full paths
};

TestDataset make_dataset(const fs::path& root, const std::vector<std::string>& classes,
                         int per_class) {
  TestDataset ds;
  ds.root = root.string();
  unsigned seed = 1;
  for (const std::string& cls : classes) {
    fs::create_directories(root / cls / "sub");
    for (int i = 0; i < per_class; ++i, ++seed) {
      const fs::path p = i % 3 == 2 ? root / cls / "sub" / numbered("g", i, ".png")
                                    : root / cls / numbered("p", i, ".png");
      write_png(p, 9 + static_cast<int>(seed % 13), 7 + static_cast<int>(seed % 5),
                i % 3 == 2 ? 1 : 3, seed);
    }
    fs::copy_file(kData + "/jpeg_444.jpg", root / cls / "c_jpeg_444.jpg");
  }
  fs::copy_file(kData + "/text.jpg", root / classes.front() / "broken.jpg");
  ds.broken.insert((root / classes.front() / "broken.jpg").string());
  std::string png = read_bytes(kData + "/png_rgb.png");
  write_bytes(root / classes.back() / "truncated.png", png.substr(0, png.size() / 2));
  ds.broken.insert((root / classes.back() / "truncated.png").string());
  return ds;
}

StatsFile train_stats(const std::string& folder) {
  SelectOptions sel;
  sel.folder = folder;
  StatsJob sj;
  sj.recipe.size = {12, 10};
  PipelineOptions o;
  o.threads = 2;
  return compute_stats(select_dataset(sel), sj, o);
}

NormalizeJob job_of(Mode mode, Layout layout = Layout::nhwc, DType dtype = DType::float32) {
  NormalizeJob job;
  job.spec.mode = mode;
  job.recipe.size = Size{12, 10};
  job.layout = layout;
  job.dtype = dtype;
  return job;
}

PipelineOptions threads(int n) {
  PipelineOptions o;
  o.threads = n;
  return o;
}

LoaderOptions loader_options(std::size_t batch_size, bool shuffle, int threads_,
                             bool drop_last = false, std::uint64_t seed = 7) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.shuffle = shuffle;
  o.seed = seed;
  o.drop_last = drop_last;
  o.drop_tail = o.drop_last;  // rank slices cut, not padded
  o.pipeline.threads = threads_;
  return o;
}

// The normalize job's rows (MemorySink), by file path.
struct Reference {
  NormalizeResult result;
  std::vector<std::uint8_t> data;
  std::size_t row_bytes = 0;
  std::map<std::string, std::size_t> row_of;  // path -> row
};

Reference reference_of(const Normalization& n) {
  Reference r;
  MemorySink sink;
  r.result = n.run(sink, threads(2));
  r.data = sink.data();
  r.row_bytes = sink.row_bytes();
  for (std::size_t i = 0; i < r.result.files.size(); ++i) r.row_of[r.result.files[i]] = i;
  return r;
}

struct EpochRun {
  std::vector<Batch> batches;
  std::vector<Skipped> skipped;
};

EpochRun run_epoch(const Normalization& n, const LoaderOptions& o, std::uint64_t epoch) {
  EpochRun r;
  EpochLoader loader(n, o, epoch);
  while (auto b = loader.next()) r.batches.push_back(std::move(*b));
  r.skipped = loader.skipped();
  return r;
}

std::vector<std::uint8_t> all_bytes(const EpochRun& r) {
  std::vector<std::uint8_t> out;
  for (const Batch& b : r.batches)
    out.insert(out.end(), b.images.get(), b.images.get() + b.rows * b.row_bytes);
  return out;
}

// torch.utils.data.DistributedSampler.__iter__, from its definition: `indices` is the epoch's
// order; pad by repeating indices[:padding_size] (as often as needed) or cut to total_size, then
// take indices[rank:total_size:num_replicas].
std::vector<std::size_t> distributed_sampler(std::vector<std::size_t> indices, std::size_t replicas,
                                             std::size_t rank, bool drop_last) {
  const std::size_t n = indices.size();
  std::size_t num_samples;
  if (drop_last && n % replicas != 0)
    num_samples = (n - replicas + replicas - 1) / replicas;  // math.ceil((n - R) / R)
  else
    num_samples = (n + replicas - 1) / replicas;  // math.ceil(n / R)
  const std::size_t total_size = num_samples * replicas;
  if (!drop_last) {
    const std::size_t padding_size = total_size - n;
    if (padding_size <= n) {
      indices.insert(indices.end(), indices.begin(), indices.begin() + padding_size);
    } else {
      // (indices * math.ceil(padding_size / len(indices)))[:padding_size]
      std::vector<std::size_t> rep;
      const std::size_t times = (padding_size + n - 1) / n;
      for (std::size_t t = 0; t < times; ++t)
        rep.insert(rep.end(), indices.begin(), indices.begin() + n);
      indices.insert(indices.end(), rep.begin(), rep.begin() + padding_size);
    }
  } else {
    indices.resize(total_size);
  }
  std::vector<std::size_t> out;
  for (std::size_t i = rank; i < total_size; i += replicas) out.push_back(indices[i]);
  return out;
}

std::vector<std::size_t> iota(std::size_t n) {
  std::vector<std::size_t> v(n);
  std::iota(v.begin(), v.end(), std::size_t{0});
  return v;
}

}  // namespace

// --- epoch_indices -----------------------------------------------------------------------------

TEST(loader, epoch_indices_is_a_permutation_with_shuffle_and_the_identity_without) {
  for (std::size_t n : {0u, 1u, 2u, 7u, 10u, 37u, 1000u}) {
    SCOPED_TRACE(n);
    LoaderOptions o;
    EXPECT_EQ(epoch_indices(n, o, 0), iota(n));
    EXPECT_EQ(epoch_indices(n, o, 5), iota(n));  // the epoch does not matter without shuffle
    o.shuffle = true;
    for (std::uint64_t epoch : {0u, 1u, 2u, 99u}) {
      std::vector<std::size_t> p = epoch_indices(n, o, epoch);
      ASSERT_EQ(p.size(), n);
      std::vector<std::size_t> sorted = p;
      std::sort(sorted.begin(), sorted.end());
      EXPECT_EQ(sorted, iota(n)) << "each index exactly once";
      EXPECT_EQ(p, permutation(n, o.seed, epoch));
    }
  }
}

TEST(loader, epoch_indices_is_deterministic_and_differs_across_epochs_and_seeds) {
  const std::size_t n = 37;
  LoaderOptions o;
  o.shuffle = true;
  std::set<std::vector<std::size_t>> seen;
  for (std::uint64_t seed : {0u, 1u, 42u}) {
    o.seed = seed;
    for (std::uint64_t epoch = 0; epoch < 5; ++epoch) {
      std::vector<std::size_t> p = epoch_indices(n, o, epoch);
      EXPECT_EQ(p, epoch_indices(n, o, epoch)) << "a function of (seed, epoch)";
      LoaderOptions copy = o;
      EXPECT_EQ(p, epoch_indices(n, copy, epoch));
      EXPECT_NE(p, iota(n));
      seen.insert(p);
    }
  }
  EXPECT_EQ(seen.size(), 15u) << "every (seed, epoch) gives its own permutation";
}

TEST(loader, rank_slices_follow_distributed_sampler) {
  for (std::size_t n : {1u, 2u, 3u, 5u, 10u, 13u, 37u})
    for (bool shuffle : {false, true})
      for (bool drop_last : {false, true})
        for (int ws = 1; ws <= 4; ++ws) {
          SCOPED_TRACE("n " + std::to_string(n) + " shuffle " + std::to_string(shuffle) +
                       " drop_last " + std::to_string(drop_last) + " world_size " +
                       std::to_string(ws));
          LoaderOptions o;
          o.shuffle = shuffle;
          o.seed = 3;
          o.drop_last = drop_last;
          o.drop_tail = o.drop_last;  // rank slices cut, not padded
          o.world_size = ws;
          const std::uint64_t epoch = 2;
          o.rank = 0;
          const std::vector<std::size_t> full = shuffle ? permutation(n, 3, epoch) : iota(n);
          std::vector<std::vector<std::size_t>> slices;
          for (int r = 0; r < ws; ++r) {
            o.rank = r;
            slices.push_back(epoch_indices(n, o, epoch));
            EXPECT_EQ(slices.back(), distributed_sampler(full, static_cast<std::size_t>(ws),
                                                         static_cast<std::size_t>(r), drop_last))
                << "rank " << r;
          }
          // Equal-sized.
          const std::size_t per = drop_last ? n / ws : (n + ws - 1) / ws;
          for (const auto& s : slices) EXPECT_EQ(s.size(), per);
          // Disjoint and covering: the multiset union is the permutation (drop_last: its first
          // per·ws indices), or the permutation plus its first `padding` indices once more.
          std::multiset<std::size_t> got;
          for (const auto& s : slices) got.insert(s.begin(), s.end());
          std::multiset<std::size_t> want;
          if (drop_last) {
            want.insert(full.begin(), full.begin() + per * ws);
            EXPECT_EQ(std::set<std::size_t>(got.begin(), got.end()).size(), got.size())
                << "disjoint";
          } else {
            want.insert(full.begin(), full.end());
            for (std::size_t i = 0; i < per * ws - n; ++i) want.insert(full[i % n]);
            EXPECT_EQ(std::set<std::size_t>(got.begin(), got.end()).size(), n) << "covering";
          }
          EXPECT_EQ(got, want);
          if (ws == 1) {
            EXPECT_EQ(slices[0], full);
          }
        }
}

TEST(loader, epoch_indices_refuses_a_bad_rank) {
  LoaderOptions o;
  o.world_size = 2;
  o.rank = 2;
  EXPECT_THROW(epoch_indices(10, o, 0), Error);
  o.rank = -1;
  EXPECT_THROW(epoch_indices(10, o, 0), Error);
  o.rank = 0;
  o.world_size = 0;
  EXPECT_THROW(epoch_indices(10, o, 0), Error);
  try {
    o.world_size = 1;
    o.rank = 1;
    epoch_indices(10, o, 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  }
}

TEST(loader, batches_per_epoch_matches_the_slices) {
  for (std::size_t n : {0u, 1u, 5u, 10u, 13u, 64u, 65u})
    for (std::size_t bs : {1u, 3u, 4u, 64u})
      for (bool drop_last : {false, true})
        for (int ws = 1; ws <= 4; ++ws)
          for (bool shuffle : {false, true}) {
            SCOPED_TRACE(std::to_string(n) + " " + std::to_string(bs) + " " +
                         std::to_string(drop_last) + " " + std::to_string(ws));
            LoaderOptions o;
            o.batch_size = bs;
            o.drop_last = drop_last;
            o.drop_tail = o.drop_last;  // rank slices cut, not padded
            o.world_size = ws;
            o.shuffle = shuffle;
            for (int r = 0; r < ws; ++r) {
              o.rank = r;
              const std::size_t m = epoch_indices(n, o, 1).size();
              EXPECT_EQ(batches_per_epoch(n, o), drop_last ? m / bs : (m + bs - 1) / bs);
            }
          }
  LoaderOptions o;
  o.batch_size = 0;
  EXPECT_THROW(batches_per_epoch(10, o), Error);
}

// --- EpochLoader -------------------------------------------------------------------------------

TEST(loader, every_good_file_once_per_epoch_with_the_normalize_rows_and_labels) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"cherry", "apple", "banana"}, 4);
  StatsFile st = train_stats(ds.root);
  struct Case {
    Mode mode;
    Layout layout;
    DType dtype;
  };
  for (Case c : {Case{Mode::standardize, Layout::nhwc, DType::float32},
                 Case{Mode::per_image_channel, Layout::nchw, DType::float16}}) {
    SCOPED_TRACE(to_string(c.mode));
    NormalizeJob job = job_of(c.mode, c.layout, c.dtype);
    if (c.mode == Mode::standardize) job.stats = st;
    Normalization n(job, ds.root);
    n.prepare(threads(2));
    const Reference ref = reference_of(n);
    const std::vector<Entry>& entries = n.input().dataset.entries;
    const std::size_t good = entries.size() - ds.broken.size();
    ASSERT_EQ(ref.result.rows, good);
    ASSERT_EQ(ref.result.skipped.size(), ds.broken.size());

    for (std::uint64_t epoch : {0u, 1u}) {
      for (bool shuffle : {true, false}) {
        SCOPED_TRACE("epoch " + std::to_string(epoch) + " shuffle " + std::to_string(shuffle));
        const LoaderOptions o = loader_options(4, shuffle, 3);
        const EpochRun run = run_epoch(n, o, epoch);

        // The expected rows: this epoch's order without the broken files, cut into batches of 4.
        std::vector<std::size_t> want;
        for (std::size_t i : epoch_indices(entries.size(), o, epoch))
          if (!ds.broken.count(entries[i].path)) want.push_back(i);
        ASSERT_EQ(want.size(), good);
        ASSERT_EQ(run.batches.size(), (good + 3) / 4);
        std::vector<std::size_t> got;
        for (std::size_t b = 0; b < run.batches.size(); ++b) {
          const Batch& batch = run.batches[b];
          EXPECT_EQ(batch.rows, b + 1 < run.batches.size() ? 4u : good - 4 * b) << "batch " << b;
          EXPECT_EQ(batch.row_bytes, ref.row_bytes);
          ASSERT_EQ(batch.indices.size(), batch.rows);
          ASSERT_EQ(batch.labels.size(), batch.rows);
          for (std::size_t k = 0; k < batch.rows; ++k) {
            const std::size_t index = batch.indices[k];
            got.push_back(index);
            ASSERT_LT(index, entries.size());
            const auto it = ref.row_of.find(entries[index].path);
            ASSERT_NE(it, ref.row_of.end()) << entries[index].path << " is not a good file";
            const std::size_t row = it->second;
            EXPECT_EQ(0, std::memcmp(batch.images.get() + k * batch.row_bytes,
                                     ref.data.data() + row * ref.row_bytes, ref.row_bytes))
                << entries[index].path;
            EXPECT_EQ(batch.labels[k], ref.result.labels[row]) << entries[index].path;
            EXPECT_EQ(batch.labels[k], n.label_of(entries[index]));
          }
        }
        EXPECT_EQ(got, want);
        std::vector<std::size_t> once = got;
        std::sort(once.begin(), once.end());
        EXPECT_EQ(std::unique(once.begin(), once.end()), once.end()) << "a file twice";

        // Each corrupt file listed once, in epoch order.
        ASSERT_EQ(run.skipped.size(), ds.broken.size());
        std::vector<std::string> skipped_order;
        for (std::size_t i : epoch_indices(entries.size(), o, epoch))
          if (ds.broken.count(entries[i].path)) skipped_order.push_back(entries[i].path);
        for (std::size_t i = 0; i < run.skipped.size(); ++i) {
          EXPECT_EQ(run.skipped[i].path, skipped_order[i]);
          EXPECT_FALSE(run.skipped[i].reason.empty());
        }
      }
    }
  }
}

// Rows are written straight into their batch at a tentative position and moved down when files
// before them turn out to be broken: many broken files (runs of them, and at the start and end),
// every batch size from 1 up, few and many images in flight.
TEST(loader, rows_written_in_place_are_moved_past_many_skipped_files) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"a", "b", "c"}, 9);
  const std::string text = read_bytes(kData + "/text.jpg");
  for (const char* cls : {"a", "b", "c"})
    for (int i = 0; i < 7; ++i) {
      const fs::path p = tmp.path / "data" / cls / numbered(i < 3 ? "0bad" : "zbad", i, ".jpg");
      write_bytes(p, text);
      ds.broken.insert(p.string());
    }
  Normalization n(job_of(Mode::per_image, Layout::nchw), ds.root);
  n.prepare(threads(2));
  const Reference ref = reference_of(n);
  const std::vector<Entry>& entries = n.input().dataset.entries;
  const std::size_t good = entries.size() - ds.broken.size();
  ASSERT_EQ(ref.result.rows, good);
  for (std::size_t bs : {1u, 2u, 3u, 7u, 64u})
    for (int t : {1, 2, 4})
      for (int tokens : {1, 3, 16})
        for (bool shuffle : {false, true}) {
          SCOPED_TRACE("batch " + std::to_string(bs) + " threads " + std::to_string(t) +
                       " tokens " + std::to_string(tokens) + " shuffle " + std::to_string(shuffle));
          LoaderOptions o = loader_options(bs, shuffle, t);
          o.pipeline.tokens = tokens;
          const EpochRun run = run_epoch(n, o, 3);
          std::vector<std::size_t> want;
          for (std::size_t i : epoch_indices(entries.size(), o, 3))
            if (!ds.broken.count(entries[i].path)) want.push_back(i);
          std::vector<std::size_t> got;
          for (std::size_t b = 0; b < run.batches.size(); ++b) {
            const Batch& batch = run.batches[b];
            ASSERT_EQ(batch.rows, std::min(bs, good - b * bs));
            for (std::size_t k = 0; k < batch.rows; ++k) {
              const std::size_t index = batch.indices[k];
              got.push_back(index);
              const std::size_t row = ref.row_of.at(entries[index].path);
              ASSERT_EQ(0, std::memcmp(batch.images.get() + k * batch.row_bytes,
                                       ref.data.data() + row * ref.row_bytes, ref.row_bytes))
                  << entries[index].path << " in batch " << b << " row " << k;
            }
          }
          ASSERT_EQ(got, want);
          ASSERT_EQ(run.skipped.size(), ds.broken.size());
        }
}

TEST(loader, epochs_differ_with_shuffle_and_batches_are_independent_of_the_thread_count) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana", "cherry"}, 5);
  Normalization n(job_of(Mode::per_image), ds.root);
  n.prepare(threads(2));
  auto order = [](const EpochRun& r) {
    std::vector<std::size_t> v;
    for (const Batch& b : r.batches) v.insert(v.end(), b.indices.begin(), b.indices.end());
    return v;
  };
  const EpochRun e0 = run_epoch(n, loader_options(5, true, 1), 0);
  const EpochRun e1 = run_epoch(n, loader_options(5, true, 1), 1);
  EXPECT_NE(order(e0), order(e1));
  const EpochRun e0_again = run_epoch(n, loader_options(5, true, 2), 0);
  EXPECT_EQ(order(e0), order(e0_again));
  EXPECT_EQ(all_bytes(e0), all_bytes(e0_again));

  for (bool shuffle : {false, true}) {
    const EpochRun one = run_epoch(n, loader_options(4, shuffle, 1), 3);
    LoaderOptions o3 = loader_options(4, shuffle, 3);
    o3.pipeline.tokens = 2;
    o3.prefetch = 1;
    const EpochRun three = run_epoch(n, o3, 3);
    ASSERT_EQ(one.batches.size(), three.batches.size());
    for (std::size_t b = 0; b < one.batches.size(); ++b) {
      EXPECT_EQ(one.batches[b].rows, three.batches[b].rows);
      EXPECT_EQ(one.batches[b].indices, three.batches[b].indices);
      EXPECT_EQ(one.batches[b].labels, three.batches[b].labels);
    }
    EXPECT_EQ(all_bytes(one), all_bytes(three)) << "the same bytes for threads 1 and 3";
    EXPECT_EQ(one.skipped, three.skipped);
  }
}

TEST(loader, drop_last_drops_only_the_smaller_last_batch) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana"}, 4);  // 10 good files
  Normalization n(job_of(Mode::scale), ds.root);
  n.prepare(threads(2));
  const std::size_t entries = n.input().dataset.entries.size();
  const std::size_t good = entries - ds.broken.size();
  ASSERT_EQ(good, 10u);
  for (std::size_t bs : {3u, 4u, 5u}) {
    SCOPED_TRACE(bs);
    const EpochRun keep = run_epoch(n, loader_options(bs, true, 2, false), 0);
    const EpochRun drop = run_epoch(n, loader_options(bs, true, 2, true), 0);
    ASSERT_EQ(keep.batches.size(), (good + bs - 1) / bs);
    ASSERT_EQ(drop.batches.size(), good / bs);
    for (std::size_t b = 0; b < drop.batches.size(); ++b) {
      EXPECT_EQ(drop.batches[b].rows, bs);
      EXPECT_EQ(drop.batches[b].indices, keep.batches[b].indices);
      EXPECT_EQ(0, std::memcmp(drop.batches[b].images.get(), keep.batches[b].images.get(),
                               bs * drop.batches[b].row_bytes));
    }
    EXPECT_EQ(drop.skipped.size(), ds.broken.size());
  }
  // The planned count (skipped files are not known in advance).
  EXPECT_EQ(batches_per_epoch(entries, loader_options(4, true, 2, true)), entries / 4);
}

TEST(loader, raw_u8_rows_are_the_load_image_pixels) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana"}, 3);
  for (Layout layout : {Layout::nhwc, Layout::nchw}) {
    SCOPED_TRACE(to_string(layout));
    Normalization n(job_of(Mode::scale, layout), ds.root);
    n.prepare(threads(2));
    LoaderOptions o = loader_options(3, true, 2);
    o.raw_u8 = true;
    const EpochRun run = run_epoch(n, o, 4);
    const std::vector<Entry>& entries = n.input().dataset.entries;
    const std::size_t w = 12, h = 10, c = 3;
    std::size_t rows = 0;
    for (const Batch& b : run.batches) {
      ASSERT_EQ(b.row_bytes, w * h * c);
      for (std::size_t k = 0; k < b.rows; ++k) {
        Image img;
        load_image(entries[b.indices[k]].path, n.recipe(), img);
        ASSERT_EQ(img.size_bytes(), w * h * c);
        std::vector<std::uint8_t> want(img.data(), img.data() + img.size_bytes());
        if (layout == Layout::nchw) {
          for (std::size_t y = 0; y < h; ++y)
            for (std::size_t x = 0; x < w; ++x)
              for (std::size_t ch = 0; ch < c; ++ch)
                want[(ch * h + y) * w + x] = img.data()[(y * w + x) * c + ch];
        }
        EXPECT_EQ(0, std::memcmp(b.images.get() + k * b.row_bytes, want.data(), want.size()))
            << entries[b.indices[k]].path;
        ++rows;
      }
    }
    EXPECT_EQ(rows, entries.size() - ds.broken.size());
  }
}

TEST(loader, rank_loaders_read_their_slices) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple", "banana"}, 4);  // 12 entries
  Normalization n(job_of(Mode::scale), ds.root);
  n.prepare(threads(2));
  const std::vector<Entry>& entries = n.input().dataset.entries;
  for (int ws : {3, 5}) {
    for (bool drop_last : {false, true}) {
      SCOPED_TRACE(std::to_string(ws) + " " + std::to_string(drop_last));
      std::multiset<std::size_t> all;
      for (int r = 0; r < ws; ++r) {
        LoaderOptions o = loader_options(2, true, 2, drop_last);
        o.world_size = ws;
        o.rank = r;
        EpochLoader loader(n, o, 1);
        EXPECT_EQ(loader.size(), epoch_indices(entries.size(), o, 1).size());
        std::vector<std::size_t> got;
        while (auto b = loader.next()) got.insert(got.end(), b->indices.begin(), b->indices.end());
        std::vector<std::size_t> want;
        for (std::size_t i : epoch_indices(entries.size(), o, 1))
          if (!ds.broken.count(entries[i].path)) want.push_back(i);
        if (drop_last) want.resize(want.size() / 2 * 2);
        EXPECT_EQ(got, want) << "rank " << r;
        all.insert(got.begin(), got.end());
      }
      if (!drop_last) {
        std::set<std::size_t> distinct(all.begin(), all.end());
        EXPECT_EQ(distinct.size(), entries.size() - ds.broken.size()) << "every good file";
      }
    }
  }
  // A rank whose slice is empty (drop_last, fewer entries than ranks): an empty epoch, no error.
  LoaderOptions o = loader_options(2, true, 2, true);
  o.world_size = 13;
  o.rank = 12;
  EpochLoader loader(n, o, 0);
  EXPECT_EQ(loader.size(), 0u);
  EXPECT_FALSE(loader.next().has_value());
}

TEST(loader, refuses_an_unprepared_job_and_a_zero_batch_size) {
  TempDir tmp;
  TestDataset ds = make_dataset(tmp.path / "data", {"apple"}, 2);
  Normalization n(job_of(Mode::scale), ds.root);
  EXPECT_THROW(EpochLoader(n, loader_options(2, false, 1), 0), Error);
  n.prepare(threads(1));
  EXPECT_THROW(EpochLoader(n, loader_options(0, false, 1), 0), Error);
}

// --- stopping ----------------------------------------------------------------------------------

namespace {

// A long epoch: `count` hard links of a full-size photograph, decoded at full size.
struct LongEpoch {
  TempDir tmp;
  std::unique_ptr<Normalization> job;
  explicit LongEpoch(int count) {
    const fs::path root = tmp.path / "data";
    fs::create_directories(root / "a");
    fs::create_directories(root / "b");
    const fs::path photo = tmp.path / "photo.jpg";
    fs::copy_file(kData + "/photos/kite.jpg", photo);
    for (int i = 0; i < count; ++i)
      fs::create_hard_link(photo, root / (i % 2 ? "a" : "b") / numbered("x", i, ".jpg"));
    NormalizeJob j = job_of(Mode::per_image);
    j.recipe.exact_decode = true;
    job = std::make_unique<Normalization>(j, root.string());
    job->prepare(threads(1));
  }
};

#if defined(__SANITIZE_THREAD__)
#define IMGNORM_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IMGNORM_TEST_TSAN 1
#endif
#endif

// Stopping an epoch early makes EpochLoader's in-order callback throw Error(interrupted) out of
// run_pipeline. libtbb's parallel_pipeline waits for the running filters before it rethrows, but
// TSan cannot see that (libtbb is not instrumented) and src/pipeline.cpp's IMGNORM_TSAN_RELEASE /
// IMGNORM_TSAN_ACQUIRE annotations cover only the normal return: the work and sink filters'
// releases and run_pipeline's final acquires are skipped when a filter throws, so TSan reports
// races on the per-thread Worker buffers and the loader's current Batch. Annotating the exception
// path too (releases in scope guards in the filters, the acquires in a guard around arena.execute)
// makes these tests TSan-clean; until then they are skipped under TSan.
#define SKIP_UNDER_TSAN()                                                                \
  do {                                                                                   \
    if (kUnderTsan)                                                                      \
      GTEST_SKIP() << "TSan: src/pipeline.cpp does not annotate the exception path of "  \
                      "run_pipeline (false races on early stop); see the comment above"; \
  } while (0)
#ifdef IMGNORM_TEST_TSAN
constexpr bool kUnderTsan = true;
#else
constexpr bool kUnderTsan = false;
#endif

// Runs `fn` on its own thread; true when it finished within `timeout`. On a timeout the thread is
// left behind (detached, owning what it uses) so that the test fails instead of hanging.
bool finishes_within(std::function<void()> fn, std::chrono::seconds timeout) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> f = done->get_future();
  std::thread([fn = std::move(fn), done]() mutable {
    fn();
    fn = nullptr;  // what it captured is released before the caller hears of it
    done->set_value();
  }).detach();
  return f.wait_for(timeout) == std::future_status::ready;
}

}  // namespace

TEST(loader, destroying_the_loader_mid_epoch_returns_promptly) {
  SKIP_UNDER_TSAN();
  // A whole epoch takes seconds (about 3 ms per image and thread): destruction must not wait for
  // it.
  auto data = std::make_shared<LongEpoch>(2000);
  for (int t : {1, 3}) {
    SCOPED_TRACE(t);
    auto took = std::make_shared<std::chrono::duration<double>>(0);
    auto first_rows = std::make_shared<std::size_t>(0);
    const bool finished = finishes_within(
        [data, t, took, first_rows] {
          LoaderOptions o = loader_options(2, true, t);
          o.prefetch = 1;
          auto loader = std::make_unique<EpochLoader>(*data->job, o, 0);
          std::optional<Batch> b = loader->next();
          *first_rows = b ? b->rows : 0;
          std::this_thread::sleep_for(50ms);  // the producer fills the queue and waits for room
          const auto start = std::chrono::steady_clock::now();
          loader.reset();
          *took = std::chrono::steady_clock::now() - start;
        },
        60s);
    ASSERT_TRUE(finished) << "~EpochLoader did not return within 60 s (deadlock?)";
    EXPECT_EQ(*first_rows, 2u);
    EXPECT_LT(took->count(), 2.0) << "destruction waited for the epoch";
  }
  // Destroyed at once, before any batch was taken.
  ASSERT_TRUE(
      finishes_within([data] { EpochLoader l(*data->job, loader_options(8, false, 2), 0); }, 60s));
}

TEST(loader, cancel_ends_the_epoch) {
  SKIP_UNDER_TSAN();
  auto data = std::make_shared<LongEpoch>(400);
  for (int t : {1, 3}) {
    SCOPED_TRACE(t);
    auto outcome = std::make_shared<std::string>();
    auto after = std::make_shared<std::size_t>(0);
    const bool finished = finishes_within(
        [data, t, outcome, after] {
          LoaderOptions o = loader_options(2, false, t);
          o.prefetch = 2;
          EpochLoader loader(*data->job, o, 0);
          if (!loader.next()) {
            *outcome = "no first batch";
            return;
          }
          loader.cancel();
          try {
            while (loader.next()) ++*after;
            *outcome = "nullopt";
          } catch (const Error& e) {
            *outcome = e.code() == ErrorCode::interrupted ? "interrupted" : e.what();
          }
          // Once ended, it stays ended.
          try {
            if (loader.next()) *outcome += " then a batch";
          } catch (const Error&) {
          }
          EXPECT_TRUE(loader.wait(0));
        },
        60s);
    ASSERT_TRUE(finished) << "next() after cancel() did not end within 60 s";
    EXPECT_TRUE(*outcome == "nullopt" || *outcome == "interrupted") << *outcome;
    // At most what was already queued (prefetch) or being filled when cancel() came.
    EXPECT_LE(*after, 3u);
  }
}
