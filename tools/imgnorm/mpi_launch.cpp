// Running as one rank of an MPI launch (mpirun, srun): detection, the Open MPI Communicator and
// SharedFile (MPI-IO), start and end. Without IMGNORM_HAVE_MPI only the detection remains, to
// refuse a launch this build cannot join.

#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "cli.hpp"
#include "imgnorm/distributed.hpp"
#include "imgnorm/error.hpp"

#if IMGNORM_HAVE_MPI
#include <mpi.h>

#include <algorithm>
#endif

namespace imgnorm::cli {

Communicator* g_comm = nullptr;

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// Set by the launchers for each rank they start: Open MPI's mpirun, PMIx (srun --mpi=pmix,
// prterun), PMI-1/2 (srun --mpi=pmi2, MPICH's hydra). A normal launch has none of them, so it never
// calls MPI_Init (which can be slow, and needs a launcher's environment).
const char* launch_size_var() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (env(v)) return v;
  return nullptr;
}

[[maybe_unused]] bool env_rank_is_zero() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* r = env(v)) return std::strcmp(r, "0") == 0;
  return true;
}

#if IMGNORM_HAVE_MPI

std::string mpi_error(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(rc, text, &n);
  return std::string(text, static_cast<std::size_t>(n));
}

// Pieces below 2^31 bytes: MPI counts are ints.
constexpr std::uint64_t kPiece = 1u << 30;

class MpiFile : public SharedFile {
 public:
  explicit MpiFile(std::string path) : path_(std::move(path)) {
    const int rc = MPI_File_open(MPI_COMM_WORLD, path_.c_str(), MPI_MODE_RDWR, MPI_INFO_NULL, &fh_);
    if (rc != MPI_SUCCESS) fail("cannot open", rc);
    open_ = true;
  }
  // Closing is collective: a file still open here belongs to a run being aborted.
  ~MpiFile() override = default;
  void write_at(std::uint64_t offset, const void* data, std::uint64_t size) override {
    const auto* p = static_cast<const char*>(data);
    for (std::uint64_t done = 0; done < size;) {
      const int n = static_cast<int>(std::min(kPiece, size - done));
      MPI_Status st;
      const int rc = MPI_File_write_at(fh_, static_cast<MPI_Offset>(offset + done),
                                       const_cast<char*>(p + done), n, MPI_BYTE, &st);
      int got = 0;
      if (rc != MPI_SUCCESS) fail("cannot write", rc);
      MPI_Get_count(&st, MPI_BYTE, &got);
      if (got != n) throw Error(ErrorCode::io, path_ + ": cannot write: short write (MPI-IO)");
      done += static_cast<std::uint64_t>(n);
    }
  }
  void read_at(std::uint64_t offset, void* data, std::uint64_t size) override {
    auto* p = static_cast<char*>(data);
    for (std::uint64_t done = 0; done < size;) {
      const int n = static_cast<int>(std::min(kPiece, size - done));
      MPI_Status st;
      const int rc =
          MPI_File_read_at(fh_, static_cast<MPI_Offset>(offset + done), p + done, n, MPI_BYTE, &st);
      int got = 0;
      if (rc != MPI_SUCCESS) fail("cannot read", rc);
      MPI_Get_count(&st, MPI_BYTE, &got);
      if (got != n) throw Error(ErrorCode::io, path_ + ": cannot read: short read (MPI-IO)");
      done += static_cast<std::uint64_t>(n);
    }
  }
  void close() override {
    if (!open_) return;
    open_ = false;
    const int rc = MPI_File_close(&fh_);
    if (rc != MPI_SUCCESS) fail("cannot close", rc);
  }

 private:
  [[noreturn]] void fail(const char* what, int rc) {
    throw Error(ErrorCode::io, path_ + ": " + what + " (MPI-IO): " + mpi_error(rc));
  }
  std::string path_;
  MPI_File fh_{};
  bool open_ = false;
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void broadcast(std::vector<std::uint8_t>& bytes, int root) override {
    std::uint64_t n = bytes.size();
    MPI_Bcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
    if (rank_ != root) bytes.resize(static_cast<std::size_t>(n));
    for (std::uint64_t done = 0; done < n;) {
      const int k = static_cast<int>(std::min(kPiece, n - done));
      MPI_Bcast(bytes.data() + done, k, MPI_BYTE, root, MPI_COMM_WORLD);
      done += static_cast<std::uint64_t>(k);
    }
  }
  std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& bytes,
                                                int root) override {
    std::uint64_t n = bytes.size();
    std::vector<std::uint64_t> sizes(rank_ == root ? static_cast<std::size_t>(size_) : 0);
    MPI_Gather(&n, 1, MPI_UINT64_T, sizes.data(), 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
    std::vector<std::vector<std::uint8_t>> all;
    if (rank_ != root) {
      for (std::uint64_t done = 0; done < n;) {
        const int k = static_cast<int>(std::min(kPiece, n - done));
        MPI_Send(bytes.data() + done, k, MPI_BYTE, root, kGatherTag, MPI_COMM_WORLD);
        done += static_cast<std::uint64_t>(k);
      }
      return all;
    }
    all.resize(static_cast<std::size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      if (r == root) {
        all[r] = bytes;
        continue;
      }
      all[r].resize(static_cast<std::size_t>(sizes[r]));
      for (std::uint64_t done = 0; done < sizes[r];) {
        const int k = static_cast<int>(std::min(kPiece, sizes[r] - done));
        MPI_Recv(all[r].data() + done, k, MPI_BYTE, r, kGatherTag, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        done += static_cast<std::uint64_t>(k);
      }
    }
    return all;
  }
  std::uint64_t exclusive_scan(std::uint64_t value) override {
    std::uint64_t out = 0;
    MPI_Exscan(&value, &out, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    return rank_ == 0 ? 0 : out;  // undefined on rank 0
  }
  std::uint64_t sum(std::uint64_t value) override {
    std::uint64_t out = 0;
    MPI_Allreduce(&value, &out, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    return out;
  }
  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
  std::unique_ptr<SharedFile> open_shared(const std::string& path) override {
    return std::make_unique<MpiFile>(path);
  }
  [[noreturn]] void abort(int code) override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }
  // Ranks on this node (for the default thread count).
  int local_size() const {
    MPI_Comm local;
    int n = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
      MPI_Comm_size(local, &n);
      MPI_Comm_free(&local);
    }
    return n;
  }

 private:
  static constexpr int kGatherTag = 4242;
  int rank_ = 0;
  int size_ = 1;
};

MpiCommunicator* g_mpi = nullptr;
int g_default_threads = 0;

#endif  // IMGNORM_HAVE_MPI

}  // namespace

int start_ranks(int& argc, char**& argv) {
  const char* var = launch_size_var();
  if (!var) return -1;
#if IMGNORM_HAVE_MPI
  int provided = 0;
  // The rows reach the MPI-IO writer from whichever pipeline thread runs the in-order stage (one
  // at a time): MPI_THREAD_SERIALIZED.
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
    print_error("cannot start MPI (launched by " + std::string(var) + ")");
    return kError;
  }
  g_mpi = new MpiCommunicator();
  g_comm = g_mpi;
  if (provided < MPI_THREAD_SERIALIZED) {
    if (g_mpi->rank() == 0) print_error("this MPI library does not support MPI_THREAD_SERIALIZED");
    MPI_Finalize();
    return kError;
  }
  // srun with a task count that disagrees with the world MPI sees: the launch is not the one the
  // batch script asked for (say, mpirun inside srun), and every rank would do the whole job.
  if (const char* tasks = env("SLURM_NTASKS")) {
    if (std::to_string(g_mpi->size()) != tasks) {
      if (g_mpi->rank() == 0)
        print_error("MPI world of " + std::to_string(g_mpi->size()) +
                    " ranks, but SLURM_NTASKS is " + tasks +
                    "; launch imgnorm with srun (or mpirun) alone, not inside one another");
      MPI_Finalize();
      return kUsage;
    }
  }
  // Each rank's pipeline gets its share of the cores it may use: all of this node's cores split
  // among the ranks on it, or the cores the launcher bound it to.
  cpu_set_t set;
  int allowed = static_cast<int>(std::thread::hardware_concurrency());
  if (sched_getaffinity(0, sizeof set, &set) == 0) allowed = CPU_COUNT(&set);
  const int all = static_cast<int>(std::thread::hardware_concurrency());
  g_default_threads =
      allowed >= all ? std::max(1, all / g_mpi->local_size()) : std::max(1, allowed);
  (void)argc;
  return -1;
#else
  (void)argc;
  (void)argv;
  if (env_rank_is_zero())
    print_error(std::string("launched as an MPI rank (") + var +
                " is set), but this imgnorm was built without MPI (IMGNORM_MPI=OFF or Open MPI "
                "not found: scripts/install-deps.sh installs libopenmpi-dev)");
  return kUsage;
#endif
}

void agreed(const std::function<void()>& work) {
  if (g_comm)
    collective(*g_comm, work);
  else
    work();
}

bool is_root() { return g_comm == nullptr || g_comm->rank() == 0; }

int default_threads() {
#if IMGNORM_HAVE_MPI
  return g_comm ? g_default_threads : 0;
#else
  return 0;
#endif
}

void end_ranks() {
#if IMGNORM_HAVE_MPI
  if (g_mpi) {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Finalize();
    delete g_mpi;
    g_mpi = nullptr;
    g_comm = nullptr;
  }
#endif
}

[[noreturn]] void abort_ranks(int code) {
  if (g_comm) g_comm->abort(code);
  std::_Exit(code);
}

}  // namespace imgnorm::cli
