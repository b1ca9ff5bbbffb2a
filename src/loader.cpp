// Training batches: one epoch of a normalize job streamed through the pipeline into fresh batch
// buffers, produced on a background thread, bounded by `prefetch`.

#include "imgnorm/loader.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <numeric>

#include "imgnorm/error.hpp"

namespace imgnorm {

std::vector<std::size_t> epoch_indices(std::size_t n, const LoaderOptions& o, std::uint64_t epoch) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
    throw Error(ErrorCode::invalid_argument, "invalid rank " + std::to_string(o.rank) +
                                                 " of world size " + std::to_string(o.world_size));
  if (o.workers < 1 || o.worker < 0 || o.worker >= o.workers)
    throw Error(ErrorCode::invalid_argument,
                "invalid worker " + std::to_string(o.worker) + " of " + std::to_string(o.workers));
  std::vector<std::size_t> order(n);
  if (o.shuffle)
    order = permutation(n, o.seed, epoch);
  else
    std::iota(order.begin(), order.end(), std::size_t{0});
  std::vector<std::size_t> mine;
  if (o.world_size == 1 || n == 0) {
    mine = std::move(order);
  } else {
    const std::size_t ws = static_cast<std::size_t>(o.world_size);
    const std::size_t total = o.drop_tail ? n / ws * ws : (n + ws - 1) / ws * ws;
    for (std::size_t i = static_cast<std::size_t>(o.rank); i < total; i += ws)
      mine.push_back(order[i % n]);  // padding repeats the first indices, as DistributedSampler
  }
  if (o.workers == 1) return mine;
  std::vector<std::size_t> part;
  for (std::size_t i = static_cast<std::size_t>(o.worker); i < mine.size();
       i += static_cast<std::size_t>(o.workers))
    part.push_back(mine[i]);
  return part;
}

std::size_t batches_per_epoch(std::size_t n, const LoaderOptions& o) {
  if (o.batch_size == 0) throw Error(ErrorCode::invalid_argument, "batch_size must be positive");
  LoaderOptions plain = o;
  plain.shuffle = false;  // the slice's size does not depend on the order
  const std::size_t m = epoch_indices(n, plain, 0).size();
  return o.drop_last ? m / o.batch_size : (m + o.batch_size - 1) / o.batch_size;
}

void BatchFree::operator()(std::uint8_t* p) const noexcept {
  if (pool)
    pool->put(p, size);
  else
    std::free(p);
}

namespace {
constexpr std::size_t kHugePage = std::size_t{2} << 20;
}  // namespace

BatchPool::~BatchPool() {
  for (auto& [p, size] : free_) std::free(p);
}

BatchBuffer BatchPool::get(std::size_t bytes) {
  const std::size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t i = 0; i < free_.size(); ++i)
      if (free_[i].second == size) {
        std::uint8_t* p = free_[i].first;
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
        return BatchBuffer(p, BatchFree{shared_from_this(), size});
      }
  }
  // Batches are tens of MB: 2 MiB-aligned and marked for transparent huge pages (as numpy does
  // for large arrays), they fault in 512 times less often than 4 KiB pages.
  auto* p = static_cast<std::uint8_t*>(std::aligned_alloc(kHugePage, size));
  if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  ::madvise(p, size, MADV_HUGEPAGE);  // advice only: failure changes nothing but speed
#endif
  return BatchBuffer(p, BatchFree{shared_from_this(), size});
}

void BatchPool::put(std::uint8_t* p, std::size_t size) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (free_.size() < capacity_ && (free_.empty() || free_.front().second == size)) {
    try {
      free_.emplace_back(p, size);
      return;
    } catch (...) {
    }
  }
  std::free(p);
}

namespace {

// The resized u8 pixels in the job's layout (NHWC as they are, or planes for NCHW).
void copy_raw(const ImageView& img, Layout layout, std::uint8_t* out) {
  const int c = img.channels;
  const std::size_t w = static_cast<std::size_t>(img.width),
                    h = static_cast<std::size_t>(img.height);
  for (int y = 0; y < img.height; ++y) {
    const std::uint8_t* row = img.row(y);
    if (layout == Layout::nhwc) {
      std::memcpy(out + y * w * c, row, w * c);
      continue;
    }
    for (std::size_t x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) out[(k * h + y) * w + x] = row[x * c + k];
  }
}

}  // namespace

EpochLoader::EpochLoader(const Normalization& job, const LoaderOptions& options,
                         std::uint64_t epoch)
    : job_(job), options_(options) {
  if (job.input().array)
    throw Error(ErrorCode::invalid_argument, "the loader reads files, not an array");
  if (!job.prepared()) throw Error(ErrorCode::invalid_argument, "the job is not prepared");
  if (options_.batch_size == 0)
    throw Error(ErrorCode::invalid_argument, "batch_size must be positive");
  if (options_.prefetch < 1) options_.prefetch = 1;
  order_ = epoch_indices(job.input().dataset.entries.size(), options_, epoch);
  producer_ = std::thread([this] { produce(); });
}

EpochLoader::~EpochLoader() {
  cancel();
  if (producer_.joinable()) producer_.join();
}

void EpochLoader::cancel() {
  cancel_.store(true);
  std::lock_guard<std::mutex> lock(mutex_);
  space_.notify_all();
}

std::vector<Skipped> EpochLoader::skipped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return skipped_;
}

bool EpochLoader::wait(int milliseconds) {
  std::unique_lock<std::mutex> lock(mutex_);
  return ready_.wait_for(lock, std::chrono::milliseconds(milliseconds),
                         [&] { return !queue_.empty() || done_; });
}

std::optional<Batch> EpochLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  ready_.wait(lock, [&] { return !queue_.empty() || done_; });
  if (!queue_.empty()) {
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    space_.notify_all();
    return b;
  }
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

void EpochLoader::produce() {
  try {
    const std::vector<Entry>& all = job_.input().dataset.entries;
    std::vector<Entry> entries;
    entries.reserve(order_.size());
    for (std::size_t i : order_) entries.push_back(all[i]);
    const Normalizer& norm = job_.normalizer();
    const Recipe& recipe = job_.recipe();
    const Layout layout = norm.format().layout;
    const std::size_t rb = options_.raw_u8 ? static_cast<std::size_t>(recipe.size.width) *
                                                 recipe.size.height * channel_count(recipe.channels)
                                           : job_.row_bytes();
    const std::size_t bs = options_.batch_size;
    PipelineOptions po = options_.pipeline;
    po.cancel = &cancel_;
    const int slots = pipeline_slots(po);

    const std::shared_ptr<BatchPool> pool =
        options_.pool
            ? options_.pool
            : std::make_shared<BatchPool>(static_cast<std::size_t>(options_.prefetch) + 2);

    // Rows are written by the workers straight into their batch, at a tentative position chosen
    // in order when the image starts: max(previous + 1, index - skips known so far). Files that
    // fail later than that shift the rows after them down; the in-order stage then moves a row
    // from its tentative to its actual position. Tentative positions strictly increase and are
    // never below the actual ones, so a move never touches a row still being written.
    std::mutex batches_mutex;  // the source stage and the in-order stage both reach the map
    std::map<std::size_t, BatchBuffer> batches;  // batch number -> buffer, allocated on demand
    auto row_at = [&](std::size_t position) {
      std::lock_guard<std::mutex> lock(batches_mutex);
      BatchBuffer& b = batches[position / bs];
      if (!b) b = pool->get(bs * rb);
      return b.get() + position % bs * rb;
    };
    std::vector<std::size_t> tentative(static_cast<std::size_t>(slots));
    std::vector<std::uint8_t*> slot_row(static_cast<std::size_t>(slots));
    std::atomic<std::size_t> skips{0};
    std::size_t next_tentative = 0;  // source stage only
    std::size_t rows = 0;            // in-order stage only: rows placed so far
    po.on_start = [&](std::size_t index, int slot) {
      const std::size_t known = skips.load(std::memory_order_acquire);
      const std::size_t p = std::max(next_tentative, index - known);
      next_tentative = p + 1;
      tentative[static_cast<std::size_t>(slot)] = p;
      slot_row[static_cast<std::size_t>(slot)] = row_at(p);
    };

    Batch cur;
    auto push = [&](Batch&& b) {
      std::unique_lock<std::mutex> lock(mutex_);
      space_.wait(lock, [&] {
        return queue_.size() < static_cast<std::size_t>(options_.prefetch) || cancel_.load();
      });
      if (cancel_.load()) throw Error(ErrorCode::interrupted, "interrupted");
      queue_.push_back(std::move(b));
      ready_.notify_all();
    };
    auto take_batch = [&](std::size_t number) {
      std::lock_guard<std::mutex> lock(batches_mutex);
      auto it = batches.find(number);
      BatchBuffer b = std::move(it->second);
      batches.erase(it);
      return b;
    };
    run_pipeline(
        entries, recipe, po,
        [&](const LoadedImage& li) {
          std::uint8_t* dst = slot_row[static_cast<std::size_t>(li.slot)];
          if (options_.raw_u8) {
            copy_raw(li.image, layout, dst);
          } else {
            int constant = 0;
            norm.apply_per_image(li.image, dst, &constant);
          }
        },
        [&](std::size_t index, int slot, const Error* error) {
          const Entry& e = entries[index];
          if (error) {
            skips.fetch_add(1, std::memory_order_release);
            {
              std::lock_guard<std::mutex> lock(mutex_);
              skipped_.push_back({e.path, error->code(), error->what()});
            }
            if (options_.pipeline.on_skip) options_.pipeline.on_skip(e.path, *error);
            return;
          }
          const std::size_t from = tentative[static_cast<std::size_t>(slot)];
          if (from != rows) std::memcpy(row_at(rows), slot_row[static_cast<std::size_t>(slot)], rb);
          ++rows;
          if (job_.labels()) cur.labels.push_back(job_.label_of(e));
          cur.indices.push_back(order_[index]);
          if (++cur.rows == bs) {
            cur.images = take_batch((rows - 1) / bs);
            cur.row_bytes = rb;
            push(std::move(cur));
            cur = Batch{};
          }
        });
    if (cur.rows > 0 && !options_.drop_last) {
      cur.images = take_batch((rows - 1) / bs);
      cur.row_bytes = rb;
      push(std::move(cur));
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  done_ = true;
  ready_.notify_all();
}

}  // namespace imgnorm
