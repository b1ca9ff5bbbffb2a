#pragma once
/// \file distributed.hpp
/// The stats and normalize jobs over several processes (`mpirun -np K imgnorm ...`), without MPI
/// in the library: the jobs talk to the other processes through an abstract Communicator. The CLI
/// implements it on Open MPI (tools/imgnorm/mpi_launch.cpp, built with IMGNORM_MPI); a test
/// implements it with threads.
///
/// Rank 0 scans and samples, and broadcasts the selection; rank r takes the contiguous block
/// rank_block(n, r, K) of the files. Statistics: every exact integer sum is gathered to rank 0 and
/// merged there with the same exact merge `imgnorm merge` uses, so stats.json is byte-identical to
/// a single-process run. Normalize: every rank writes its rows into one shared images.npy at its
/// row offset (or into its own shard, --output-shards); rank 0 writes labels.npy and manifest.json
/// and commits the set through the output folder it claimed, once every rank succeeded.
///
///     imgnorm::Selection s = imgnorm::select_dataset(comm, sel);      // on every rank
///     imgnorm::StatsFile st = imgnorm::compute_stats(comm, s, job, {}); // the total on rank 0

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "imgnorm/error.hpp"
#include "imgnorm/export.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/select.hpp"
#include "imgnorm/stats_job.hpp"

namespace imgnorm {

/// A file opened by every rank at once (MPI-IO, or positional writes). Offsets are in bytes from
/// the start of the file. Errors throw Error(io) naming the file.
class IMGNORM_API SharedFile {
 public:
  virtual ~SharedFile();
  /// Writes `size` bytes at `offset` (this rank alone; any size: split as the transport needs).
  virtual void write_at(std::uint64_t offset, const void* data, std::uint64_t size) = 0;
  /// Reads `size` bytes at `offset` (this rank alone).
  virtual void read_at(std::uint64_t offset, void* data, std::uint64_t size) = 0;
  /// Flushes and closes; collective (every rank calls it). Written data is then visible to all.
  virtual void close() = 0;
};

/// The processes of a run, as the distributed jobs need them. Every call except rank(), size()
/// and SharedFile's write_at/read_at is collective: every rank makes it, in the same order.
class IMGNORM_API Communicator {
 public:
  virtual ~Communicator();
  virtual int rank() const = 0;
  /// Number of ranks (1 or more).
  virtual int size() const = 0;
  /// Root's `bytes` replace every other rank's.
  virtual void broadcast(std::vector<std::uint8_t>& bytes, int root) = 0;
  /// Every rank's `bytes`, in rank order, on `root`; empty on the other ranks.
  virtual std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& bytes,
                                                        int root) = 0;
  /// Σ of `value` over the ranks below this one (0 on rank 0). Exact (unsigned 64-bit).
  virtual std::uint64_t exclusive_scan(std::uint64_t value) = 0;
  /// Σ of `value` over all ranks, on every rank. Exact (unsigned 64-bit).
  virtual std::uint64_t sum(std::uint64_t value) = 0;
  virtual void barrier() = 0;
  /// Opens an existing file on every rank for reading and writing.
  virtual std::unique_ptr<SharedFile> open_shared(const std::string& path) = 0;
  /// Ends every rank of the run now with exit status `code` (not collective; does not return).
  [[noreturn]] virtual void abort(int code) = 0;
};

/// An error every rank of a run threw alike (the same code and message), so the run can end in
/// order: print it once (rank 0) and exit with the same status everywhere. Any other exception in
/// a distributed job is one rank's, and the run is aborted.
class IMGNORM_API SharedError : public Error {
 public:
  using Error::Error;
};

/// Runs `work` on every rank, then agrees on the outcome: when it threw an imgnorm::Error on some
/// rank, every rank throws SharedError with the lowest such rank's code and message (prefixed
/// with "rank R: " when it was not rank 0). Other exceptions pass through unchanged.
IMGNORM_API void collective(Communicator& comm, const std::function<void()>& work);

/// Files [first, second) of `n` for `rank` of `ranks`: contiguous blocks, in order, whose sizes
/// differ by at most one (the first n % ranks ranks get one more). A block may be empty.
IMGNORM_API std::pair<std::size_t, std::size_t> rank_block(std::size_t n, int rank, int ranks);

/// select_dataset() on rank 0, broadcast to every rank (one scan of the file system, one view of
/// it). Errors are SharedError.
IMGNORM_API Selection select_dataset(Communicator& comm, const SelectOptions& options);

/// open_input() of a folder or list on rank 0, broadcast. A .npy input is refused (SharedError):
/// arrays are normalized by one process.
IMGNORM_API NormalizeInput open_input(Communicator& comm, const std::string& input,
                                      const std::string& list = "");

/// compute_stats() of `selection` (the same on every rank) over all ranks: each computes its
/// block, rank 0 merges the exact sums in rank order. Rank 0 returns the statistics of the whole
/// selection, equal to compute_stats(selection, job, options) (files_found, skipped sorted by
/// path and all); the other ranks return their block's. Errors are SharedError.
IMGNORM_API StatsFile compute_stats(Communicator& comm, const Selection& selection,
                                    const StatsJob& job, const PipelineOptions& options);

/// write_outputs() on rank 0 (errors are SharedError on every rank).
IMGNORM_API void write_outputs(Communicator& comm, const StatsFile& stats,
                               const StatsOutputs& outputs,
                               const std::atomic<bool>* cancel = nullptr);

/// normalize_to_folder() over all ranks: `job` (built alike on every rank, from the broadcast
/// input; no array input: SharedError naming the alternative) is checked and prepared on every
/// rank; with --fit, the fit pass is compute_stats() over all ranks (so the result, and the
/// --save-stats file rank 0 writes, equal a single run's). Rank 0 first claims the output folder
/// (OutputFolder: a second run into it is refused, dead runs' temporaries removed; existing members
/// need `force`) and creates every temporary. Each rank normalizes its block into one shared
/// temporary images.npy at its row offset (rows in file order, so the file equals a single-process
/// run's byte for byte) or, with `output_shards`, into its own shard images-RRRRR.npy (R = its
/// rank; possibly 0 rows). zca/pca: rank 0 computes the whitening matrix and broadcasts it (every
/// rank applies the same bits; it writes whitening.npy into the set). A check that fails on one
/// rank before a collective step of the preparation (the fit, the matrix) fails every rank with
/// that rank's message. Once every rank succeeded, rank 0 writes labels.npy (or
/// labels-RRRRR.npy) and manifest.json and commits the whole set with OutputFolder::commit. Rank 0
/// returns the whole result; the other ranks their block's. Errors are SharedError; the temporaries
/// are removed.
IMGNORM_API NormalizeResult normalize_to_folder(Communicator& comm, Normalization& job,
                                                const std::string& dir, bool force,
                                                const PipelineOptions& options,
                                                bool output_shards = false);

/// A SharedFile over positional writes (pwrite/pread) on a shared POSIX file system: what a
/// Communicator without MPI-IO (the thread test) can return from open_shared().
IMGNORM_API std::unique_ptr<SharedFile> open_shared_posix(const std::string& path);

}  // namespace imgnorm
