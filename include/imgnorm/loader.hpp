#pragma once
/// \file loader.hpp
/// Normalized training batches straight from the files: one epoch of a normalize job, in a
/// deterministic order (a permutation of (seed, epoch), or the manifest order), this rank's slice
/// of it, cut into batches that are produced on a background thread through the same pipeline and
/// kernels as `imgnorm normalize` (the same bytes per row) while the caller consumes earlier ones.
///
///     imgnorm::Normalization job(job_description, "train/");
///     job.prepare({});
///     imgnorm::LoaderOptions o;
///     o.batch_size = 64;
///     o.shuffle = true;
///     imgnorm::EpochLoader epoch(job, o, /*epoch=*/0);
///     while (auto b = epoch.next()) train(b->images.get(), b->labels, b->rows);

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "imgnorm/export.hpp"
#include "imgnorm/normalize.hpp"

namespace imgnorm {

class BatchPool;

struct LoaderOptions {
  std::size_t batch_size = 64;
  bool shuffle = false;  ///< a new permutation per epoch, a function of (seed, epoch)
  std::uint64_t seed = 0;
  /// Drop the last, smaller batch of the epoch.
  bool drop_last = false;
  int rank = 0;  ///< this process's slice: every world_size-th index starting at rank
  int world_size = 1;
  /// world_size > 1: cut the permutation to a multiple of world_size instead of padding it. The
  /// Python Loader sets it with drop_last; unset, ranks are padded as DistributedSampler.
  bool drop_tail = false;
  /// Within this rank's slice, every `workers`-th index starting at `worker` (no padding): how
  /// DataLoader workers share a rank's images without duplicates.
  int worker = 0;
  int workers = 1;
  int prefetch = 2;  ///< batches produced ahead of the consumer (memory: prefetch + 1 batches)
  /// Raw u8 pixels (the recipe's output, in the job's layout) instead of normalized values.
  bool raw_u8 = false;
  PipelineOptions pipeline;  ///< threads, allow_truncated; its cancel flag is honoured too
  /// Where batch buffers come from and return to; null: a pool of this epoch's own.
  std::shared_ptr<BatchPool> pool;
};

/// The entry indices (into the job's dataset) this rank reads in `epoch`, in order.
IMGNORM_API std::vector<std::size_t> epoch_indices(std::size_t n, const LoaderOptions& options,
                                                   std::uint64_t epoch);

/// Batches per epoch for this rank (the last one may be smaller unless drop_last).
IMGNORM_API std::size_t batches_per_epoch(std::size_t n, const LoaderOptions& options);

/// Releases a batch buffer: back to its pool when the pool has room (so a later batch can reuse
/// memory that is already mapped), else to the allocator. Only a buffer the owner released is
/// ever reused: a batch a consumer still holds is never written again.
struct BatchFree {
  std::shared_ptr<BatchPool> pool;
  std::size_t size = 0;
  void operator()(std::uint8_t* p) const noexcept;
};
using BatchBuffer = std::unique_ptr<std::uint8_t[], BatchFree>;

/// Released batch buffers kept for reuse (at most `capacity`, all of one size). Shared by the
/// epochs of a loader (LoaderOptions::pool) and by the buffers themselves; thread-safe.
class IMGNORM_API BatchPool : public std::enable_shared_from_this<BatchPool> {
 public:
  explicit BatchPool(std::size_t capacity = 4) : capacity_(capacity) {}
  ~BatchPool();
  /// A buffer of at least `bytes` bytes (uninitialized): a released one of that size, or a new
  /// 2 MiB-aligned one marked for transparent huge pages.
  BatchBuffer get(std::size_t bytes);
  /// Takes `p` back (called by BatchFree); frees it when the pool is full or the size differs.
  void put(std::uint8_t* p, std::size_t size) noexcept;

 private:
  std::mutex mutex_;
  std::size_t capacity_;
  std::vector<std::pair<std::uint8_t*, std::size_t>> free_;
};

/// One batch: `rows` rows of the job's row layout; a fresh allocation the caller owns.
struct Batch {
  BatchBuffer images;  ///< rows × row_bytes (uninitialized beyond them); free with BatchFree
  std::size_t rows = 0;
  std::size_t row_bytes = 0;
  std::vector<std::int64_t> labels;  ///< training class ids (empty without labels)
  std::vector<std::size_t> indices;  ///< entry index of each row
};

/// One epoch in flight. The constructor starts a producer thread; next() hands over batches in
/// order. Files that fail are skipped (listed in skipped()); the batch is filled from the next
/// files, so every batch but the last has batch_size rows. Destroying it (or cancel()) stops the
/// producer promptly and joins it.
class IMGNORM_API EpochLoader {
 public:
  /// `job` must be prepared (Normalization::prepare) and outlive this object; dataset input only.
  EpochLoader(const Normalization& job, const LoaderOptions& options, std::uint64_t epoch);
  ~EpochLoader();
  EpochLoader(const EpochLoader&) = delete;
  EpochLoader& operator=(const EpochLoader&) = delete;

  /// The next batch, blocking until it is ready; nullopt after the last one. Rethrows what
  /// stopped the producer (Error(interrupted) after cancel()).
  std::optional<Batch> next();
  /// Waits up to `milliseconds` for next() to have something (a batch, the end or an error)
  /// without taking it; true when it has. For callers that must stay responsive (Python's Ctrl-C).
  bool wait(int milliseconds);
  /// Stops the producer (next() then ends the epoch).
  void cancel();
  /// Files skipped so far, in epoch order.
  std::vector<Skipped> skipped() const;
  /// Images this epoch reads (this rank's slice).
  std::size_t size() const { return order_.size(); }

 private:
  void produce();

  const Normalization& job_;
  LoaderOptions options_;
  std::vector<std::size_t> order_;
  std::atomic<bool> cancel_{false};
  mutable std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::deque<Batch> queue_;
  bool done_ = false;
  std::exception_ptr error_;
  std::vector<Skipped> skipped_;
  std::thread producer_;
};

}  // namespace imgnorm
