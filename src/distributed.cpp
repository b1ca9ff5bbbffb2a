// The stats and normalize jobs over the ranks of a Communicator (include/imgnorm/distributed.hpp).
// No MPI here: the CLI's MPI communicator (tools/imgnorm/mpi_launch.cpp) and the thread test's
// both run this code.

#include "imgnorm/distributed.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "accumulator_access.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/output.hpp"
#include "normalize_access.hpp"

namespace imgnorm {

SharedFile::~SharedFile() = default;
Communicator::~Communicator() = default;

namespace {

// The messages ranks exchange: little framing, no versioning (every rank runs the same binary).
struct Writer {
  std::vector<std::uint8_t> b;
  void u64(std::uint64_t v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof v);
  }
  void str(const std::string& s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void f64(double v) {
    std::uint64_t u;
    std::memcpy(&u, &v, sizeof u);
    u64(u);
  }
};

struct Reader {
  const std::vector<std::uint8_t>& b;
  std::size_t at = 0;
  void need(std::size_t n) const {
    // Bytes from another rank of this run; a short message is a bug, not bad input.
    if (b.size() - at < n) throw std::logic_error("distributed: truncated message");
  }
  std::uint64_t u64() {
    need(sizeof(std::uint64_t));
    std::uint64_t v;
    std::memcpy(&v, b.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
  std::string str() {
    const std::uint64_t n = u64();
    need(static_cast<std::size_t>(n));
    std::string s(reinterpret_cast<const char*>(b.data() + at), static_cast<std::size_t>(n));
    at += static_cast<std::size_t>(n);
    return s;
  }
  double f64() {
    const std::uint64_t u = u64();
    double v;
    std::memcpy(&v, &u, sizeof v);
    return v;
  }
};

void put_dataset(Writer& w, const Dataset& d) {
  w.str(d.root);
  w.u64(d.classes.size());
  for (const auto& c : d.classes) w.str(c);
  w.u64(d.entries.size());
  for (const auto& e : d.entries) {
    w.str(e.path);
    w.u64(static_cast<std::uint64_t>(e.label));
  }
  w.u64(d.ignored.size());
  for (const auto& i : d.ignored) {
    w.str(i.path);
    w.str(i.reason);
  }
}

Dataset get_dataset(Reader& r) {
  Dataset d;
  d.root = r.str();
  d.classes.resize(static_cast<std::size_t>(r.u64()));
  for (auto& c : d.classes) c = r.str();
  d.entries.resize(static_cast<std::size_t>(r.u64()));
  for (auto& e : d.entries) {
    e.path = r.str();
    e.label = static_cast<int>(r.u64());
  }
  d.ignored.resize(static_cast<std::size_t>(r.u64()));
  for (auto& i : d.ignored) {
    i.path = r.str();
    i.reason = r.str();
  }
  return d;
}

void put_skipped(Writer& w, const std::vector<Skipped>& skipped) {
  w.u64(skipped.size());
  for (const auto& k : skipped) {
    w.str(k.path);
    w.u64(static_cast<std::uint64_t>(k.code));
    w.str(k.reason);
  }
}

void get_skipped(Reader& r, std::vector<Skipped>& out) {
  const std::uint64_t n = r.u64();
  for (std::uint64_t i = 0; i < n; ++i) {
    Skipped k;
    k.path = r.str();
    k.code = static_cast<ErrorCode>(r.u64());
    k.reason = r.str();
    out.push_back(std::move(k));
  }
}

Dataset block_of(const Dataset& d, int rank, int ranks) {
  const auto [lo, hi] = rank_block(d.entries.size(), rank, ranks);
  Dataset part;
  part.root = d.root;
  part.classes = d.classes;
  part.ignored = d.ignored;
  part.entries.assign(d.entries.begin() + static_cast<std::ptrdiff_t>(lo),
                      d.entries.begin() + static_cast<std::ptrdiff_t>(hi));
  return part;
}

// Only rank 0 draws a progress bar (of its own block: the ranks move at about the same pace).
PipelineOptions rank_options(const Communicator& comm, const PipelineOptions& options) {
  PipelineOptions o = options;
  if (comm.rank() != 0) o.progress = nullptr;
  return o;
}

// Writes the rows of a block at their planned place in the shared file, gathered into large
// pieces (one write per piece, not per row).
class SharedFileSink : public RowSink {
 public:
  SharedFileSink(SharedFile& file, std::uint64_t first_byte, std::size_t row_bytes)
      : file_(file), at_(first_byte), row_bytes_(row_bytes) {
    const std::size_t rows = std::max<std::size_t>(1, kPiece / std::max<std::size_t>(1, row_bytes));
    buffer_.reserve(rows * row_bytes);
  }
  void begin(std::uint64_t, std::size_t) override {}
  void write_row(std::uint64_t, const void* data) override {
    if (buffer_.size() + row_bytes_ > buffer_.capacity()) flush();
    const auto* p = static_cast<const std::uint8_t*>(data);
    buffer_.insert(buffer_.end(), p, p + row_bytes_);
  }
  void end(std::uint64_t) override { flush(); }
  void flush() {
    if (buffer_.empty()) return;
    file_.write_at(at_, buffer_.data(), buffer_.size());
    at_ += buffer_.size();
    buffer_.clear();
  }

 private:
  static constexpr std::size_t kPiece = 16u << 20;
  SharedFile& file_;
  std::uint64_t at_;
  std::size_t row_bytes_;
  std::vector<std::uint8_t> buffer_;
};

// Moves `bytes` from `from` to `to` (to < from) inside the file, front to back, in pieces read
// whole before they are written: safe for overlapping ranges.
void move_left(SharedFile& file, std::uint64_t from, std::uint64_t to, std::uint64_t bytes) {
  std::vector<std::uint8_t> piece(
      static_cast<std::size_t>(std::min<std::uint64_t>(bytes, 16u << 20)));
  for (std::uint64_t done = 0; done < bytes;) {
    const std::uint64_t n = std::min<std::uint64_t>(piece.size(), bytes - done);
    file.read_at(from + done, piece.data(), n);
    file.write_at(to + done, piece.data(), n);
    done += n;
  }
}

class PosixSharedFile : public SharedFile {
 public:
  explicit PosixSharedFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) fail("cannot open");
  }
  ~PosixSharedFile() override {
    if (fd_ >= 0) ::close(fd_);
  }
  void write_at(std::uint64_t offset, const void* data, std::uint64_t size) override {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (size > 0) {
      const ssize_t w =
          ::pwrite(fd_, p, static_cast<std::size_t>(std::min<std::uint64_t>(size, 1u << 30)),
                   static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("cannot write", w < 0 ? errno : EIO);
      p += w;
      offset += static_cast<std::uint64_t>(w);
      size -= static_cast<std::uint64_t>(w);
    }
  }
  void read_at(std::uint64_t offset, void* data, std::uint64_t size) override {
    auto* p = static_cast<std::uint8_t*>(data);
    while (size > 0) {
      const ssize_t r =
          ::pread(fd_, p, static_cast<std::size_t>(std::min<std::uint64_t>(size, 1u << 30)),
                  static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) fail("cannot read", r < 0 ? errno : EIO);
      p += r;
      offset += static_cast<std::uint64_t>(r);
      size -= static_cast<std::uint64_t>(r);
    }
  }
  void close() override {
    if (fd_ >= 0 && ::close(fd_) != 0) {
      fd_ = -1;
      fail("cannot close");
    }
    fd_ = -1;
  }

 private:
  [[noreturn]] void fail(const char* what, int err = errno) {
    throw Error(ErrorCode::io, path_ + ": " + what + ": " + std::strerror(err));
  }
  std::string path_;
  int fd_ = -1;
};

}  // namespace

std::unique_ptr<SharedFile> open_shared_posix(const std::string& path) {
  return std::make_unique<PosixSharedFile>(path);
}

void collective(Communicator& comm, const std::function<void()>& work) {
  Writer w;
  try {
    work();
    w.u64(0);
  } catch (const Error& e) {
    w.u64(1);
    w.u64(static_cast<std::uint64_t>(e.code()));
    w.str(e.what());
  }
  const auto all = comm.gather(w.b, 0);
  std::vector<std::uint8_t> outcome{0};
  if (comm.rank() == 0) {
    for (std::size_t r = 0; r < all.size(); ++r)
      if (!all[r].empty() && all[r][0] == 1) {
        Reader rd{all[r]};
        rd.u64();
        Writer o;
        o.u64(1);
        o.u64(rd.u64());
        const std::string msg = rd.str();
        o.str(r == 0 ? msg : "rank " + std::to_string(r) + ": " + msg);
        outcome = std::move(o.b);
        break;
      }
  }
  comm.broadcast(outcome, 0);
  if (outcome.size() > 1) {
    Reader rd{outcome};
    rd.u64();
    const auto code = static_cast<ErrorCode>(rd.u64());
    throw SharedError(code, rd.str());
  }
}

std::pair<std::size_t, std::size_t> rank_block(std::size_t n, int rank, int ranks) {
  const std::size_t k = static_cast<std::size_t>(ranks), r = static_cast<std::size_t>(rank);
  const std::size_t base = n / k, extra = n % k;
  const std::size_t lo = r * base + std::min(r, extra);
  return {lo, lo + base + (r < extra ? 1 : 0)};
}

Selection select_dataset(Communicator& comm, const SelectOptions& options) {
  Selection s;
  collective(comm, [&] {
    if (comm.rank() == 0) s = select_dataset(options);
  });
  Writer w;
  if (comm.rank() == 0) {
    put_dataset(w, s.dataset);
    w.str(s.source);
    w.u64(s.sample ? 1 : 0);
    if (s.sample) {
      w.u64(s.sample->population);
      w.u64(s.sample->sampled);
      w.u64(s.sample->seed);
      w.str(s.sample->spec);
    }
    w.u64(static_cast<std::uint64_t>(s.shard_index));
    w.u64(static_cast<std::uint64_t>(s.shard_count));
    w.str(s.digest);
    w.u64(s.files);
  }
  comm.broadcast(w.b, 0);
  if (comm.rank() != 0) {
    Reader r{w.b};
    s.dataset = get_dataset(r);
    s.source = r.str();
    if (r.u64()) {
      SampleInfo si;
      si.population = r.u64();
      si.sampled = r.u64();
      si.seed = r.u64();
      si.spec = r.str();
      s.sample = si;
    }
    s.shard_index = static_cast<int>(r.u64());
    s.shard_count = static_cast<int>(r.u64());
    s.digest = r.str();
    s.files = r.u64();
  }
  return s;
}

NormalizeInput open_input(Communicator& comm, const std::string& input, const std::string& list) {
  if (list.empty() && has_npy_extension(input))
    throw SharedError(ErrorCode::invalid_argument,
                      input + ": an array is normalized by one process; run it without mpirun");
  NormalizeInput in;
  collective(comm, [&] {
    if (comm.rank() == 0) in = open_input(input, list);
  });
  Writer w;
  if (comm.rank() == 0) {
    w.str(in.source);
    w.u64(in.from_list ? 1 : 0);
    put_dataset(w, in.dataset);
  }
  comm.broadcast(w.b, 0);
  if (comm.rank() != 0) {
    Reader r{w.b};
    in.source = r.str();
    in.from_list = r.u64() != 0;
    in.dataset = get_dataset(r);
  }
  return in;
}

StatsFile compute_stats(Communicator& comm, const Selection& selection, const StatsJob& job,
                        const PipelineOptions& options) {
  // The whole run's sample, shard and "covers", not this rank's block.
  StatsJob j = with_selection(job, selection);
  j.cross_products = true;  // the ranks exchange every sum (AccumulatorAccess::append_raw)
  StatsFile st;
  const Dataset part = block_of(selection.dataset, comm.rank(), comm.size());
  collective(comm, [&] { st = compute_stats(part, j, rank_options(comm, options), version()); });

  // Every exact sum goes to rank 0 as it is (integers, no floating reduction) and is merged there
  // in rank order with Accumulator::merge, the merge `imgnorm merge` uses.
  Writer w;
  w.u64(st.class_images.size());
  for (std::uint64_t c : st.class_images) w.u64(c);
  put_skipped(w, st.skipped);
  detail::AccumulatorAccess::append_raw(st.acc, w.b);
  const auto parts = comm.gather(w.b, 0);
  if (comm.rank() != 0) return st;

  for (std::size_t r = 1; r < parts.size(); ++r) {
    Reader rd{parts[r]};
    const std::uint64_t nc = rd.u64();
    if (nc != st.class_images.size()) throw std::logic_error("distributed: class count differs");
    for (auto& c : st.class_images) c += rd.u64();
    get_skipped(rd, st.skipped);
    Accumulator acc;
    if (detail::AccumulatorAccess::read_raw(acc, parts[r].data() + rd.at,
                                            parts[r].size() - rd.at) == 0)
      throw std::logic_error("distributed: truncated accumulator");
    st.acc.merge(acc);
  }
  // As compute_stats sorts them, so the result equals a single-process run byte for byte.
  std::stable_sort(st.skipped.begin(), st.skipped.end(),
                   [](const Skipped& a, const Skipped& b) { return a.path < b.path; });
  st.files_found = selection.dataset.entries.size();
  return st;
}

void write_outputs(Communicator& comm, const StatsFile& stats, const StatsOutputs& outputs,
                   const std::atomic<bool>* cancel) {
  collective(comm, [&] {
    if (comm.rank() == 0) write_outputs(stats, outputs, cancel);
  });
}

NormalizeResult normalize_to_folder(Communicator& comm, Normalization& job, const std::string& dir,
                                    bool force, const PipelineOptions& options,
                                    bool output_shards) {
  using detail::NormalizationAccess;
  if (job.input().array)
    throw SharedError(
        ErrorCode::invalid_argument,
        job.input().source + ": an array is normalized by one process; run it without mpirun");
  const int ranks = comm.size();
  const bool root = comm.rank() == 0;
  auto check_cancel = [&] {
    if (options.cancel && options.cancel->load())
      throw Error(ErrorCode::interrupted, "interrupted");
  };
  // Rank 0 claims the output folder before any rank works and holds it to the end: a second run
  // into it is refused, temporaries of dead runs are removed, a dead run's half commit is rolled
  // back (OutputFolder). Declared before the temporaries: a failed run removes them, then the
  // folder when it created it.
  std::optional<OutputFolder> folder;
  collective(comm, [&] {
    if (root) {
      NormalizationAccess::check_output(job, dir);
      folder.emplace(dir, NormalizationAccess::set_names(dir, output_shards ? ranks : 0));
      folder->check_existing(force);
      if (!job.job().save_stats.empty()) check_outputs({job.job().save_stats, "", force});
    }
  });
  // prepare() makes collective calls of its own: the --fit pass and, for zca/pca, the whitening
  // matrix. What it checks before them is partly this rank's alone (--resize none reads the
  // first image here; a --mean-image file; ...), and a rank that failed there would leave the
  // others waiting in the first collective call. So each of these steps starts with an agreement
  // (collective()), and a rank whose prepare() threw an error of its own before the last step
  // joins the next agreement with it: every rank then fails with that rank's message (below).
  const int steps = (job.job().fit ? 1 : 0) + (is_full_image(job.job().spec.mode) ? 1 : 0);
  int passed = 0;
  auto agree = [&] {
    collective(comm, [] {});
    ++passed;
  };
  // --fit: the statistics of the input over all ranks (compute_stats: each rank its block, the
  // exact sums merged on rank 0), then rank 0's merged sums to every rank, which all need them to
  // build the Normalizer. Every rank reaches the fit with the same input, so its collective calls
  // line up; what fails in it fails alike (SharedError).
  auto fit = [&](const StatsJob& sj, const PipelineOptions& o) {
    agree();
    Selection whole;
    whole.dataset = job.input().dataset;
    whole.source = job.input().source;
    // What a single run's fit records as the statistics' "covers": the whole input.
    if (!whole.dataset.entries.empty()) whole.digest = selection_digest(whole.dataset);
    whole.files = whole.dataset.entries.size();
    StatsFile st = compute_stats(comm, whole, sj, rank_options(comm, o));
    Writer sums;
    if (root) detail::AccumulatorAccess::append_raw(st.acc, sums.b);
    comm.broadcast(sums.b, 0);
    if (!root && detail::AccumulatorAccess::read_raw(st.acc, sums.b.data(), sums.b.size()) == 0)
      throw std::logic_error("distributed: truncated accumulator");
    return st;
  };
  // zca/pca: the whitening matrix is rank 0's (its eigen-decomposition), broadcast as it is (K×D
  // doubles), so every rank applies the same bits: a decomposition on each rank could differ in
  // the last bits between nodes (OpenBLAS/LAPACK pick their kernels per CPU).
  auto whitening = [&](const std::function<std::vector<double>()>& compute) {
    agree();
    std::vector<double> w;
    collective(comm, [&] {
      if (root) w = compute();
    });
    std::vector<std::uint8_t> bytes;
    if (root) {
      bytes.resize(w.size() * sizeof(double));
      if (!w.empty()) std::memcpy(bytes.data(), w.data(), bytes.size());
    }
    comm.broadcast(bytes, 0);
    if (!root) {
      if (bytes.size() % sizeof(double) != 0)
        throw std::logic_error("distributed: truncated whitening matrix");
      w.resize(bytes.size() / sizeof(double));
      if (!w.empty()) std::memcpy(w.data(), bytes.data(), bytes.size());
    }
    return w;
  };
  collective(comm, [&] {
    if (job.prepared()) return;
    try {
      NormalizationAccess::prepare(job, options, fit, whitening);
    } catch (const SharedError&) {
      throw;  // every rank has it
    } catch (const Error& e) {
      // This rank's own: the others are in (or will reach) the next agreement; join it.
      if (passed < steps) collective(comm, [&] { throw Error(e.code(), e.what()); });
      throw;
    }
  });

  // Rank 0 creates every temporary and owns them all (one process removes them when the run
  // fails, and commits them as one set): the shared images.npy sized for every planned row, or
  // one shard per rank sized for that rank's block. Each rank then writes its rows into its own
  // part with positional writes.
  const std::vector<Entry>& entries = job.input().dataset.entries;
  const std::uint64_t planned = job.planned_rows();
  std::vector<std::unique_ptr<NpyWriter>> images;
  collective(comm, [&] {
    if (!root) return;
    check_cancel();
    if (!output_shards) {
      images.push_back(std::make_unique<NpyWriter>(folder->path("images.npy"), job.job().dtype,
                                                   job.shape(planned)));
      return;
    }
    for (int r = 0; r < ranks; ++r) {
      const auto block = rank_block(entries.size(), r, ranks);
      images.push_back(
          std::make_unique<NpyWriter>(folder->path(NormalizationAccess::shard_name("images", r)),
                                      job.job().dtype, job.shape(block.second - block.first)));
    }
  });
  Writer w;
  for (const auto& f : images) {
    w.str(f->temp_path());
    w.u64(f->data_offset());
  }
  comm.broadcast(w.b, 0);
  Reader rd{w.b};
  std::string temp;
  std::uint64_t data_offset = 0;
  for (int k = 0; k <= (output_shards ? comm.rank() : 0); ++k) {
    temp = rd.str();
    data_offset = rd.u64();
  }

  std::unique_ptr<SharedFile> file;
  collective(comm, [&] {
    // A shard is this rank's alone: no MPI-IO, no collective open.
    file = output_shards ? open_shared_posix(temp) : comm.open_shared(temp);
  });
  const std::uint64_t rb = job.row_bytes();
  // Plain variables, not a structured binding: lambdas below capture them (C++17, clang 14).
  const std::pair<std::size_t, std::size_t> range = rank_block(entries.size(), comm.rank(), ranks);
  const std::size_t lo = range.first, hi = range.second;
  const std::vector<Entry> block(entries.begin() + static_cast<std::ptrdiff_t>(lo),
                                 entries.begin() + static_cast<std::ptrdiff_t>(hi));

  // Each rank writes at its planned offset (the rows of the blocks before it, were nothing
  // skipped; 0 in its own shard); skipped files leave a gap at the end of a block, closed below.
  NormalizeResult res;
  collective(comm, [&] {
    SharedFileSink sink(*file, data_offset + (output_shards ? 0 : lo) * rb,
                        static_cast<std::size_t>(rb));
    res = NormalizationAccess::run_entries(job, block, sink, rank_options(comm, options));
    sink.end(res.rows);
  });
  const std::uint64_t first = comm.exclusive_scan(res.rows);
  const std::uint64_t total = comm.sum(res.rows);
  const std::uint64_t skipped = comm.sum(res.skipped.size());
  if (total == 0)
    throw SharedError(ErrorCode::empty, "no image could be used: all " + std::to_string(skipped) +
                                            " files were skipped");
  if (!output_shards && total != planned) {
    // Rank by rank, in order: a block's new place may overlap the old places of the blocks
    // before it, which have moved by then.
    for (int r = 1; r < ranks; ++r) {
      collective(comm, [&] {
        if (comm.rank() == r && first != lo && res.rows > 0)
          move_left(*file, data_offset + lo * rb, data_offset + first * rb, res.rows * rb);
      });
    }
  }
  collective(comm, [&] { file->close(); });

  // The rows' files, labels and maps, to rank 0 in rank order (= file order).
  Writer m;
  m.u64(res.rows);
  for (const auto& f : res.files) m.str(f);
  m.u64(res.labels.size());
  for (auto l : res.labels) m.u64(static_cast<std::uint64_t>(l));
  put_skipped(m, res.skipped);
  m.u64(res.per_image_maps.size());
  for (const Affine& a : res.per_image_maps) {
    m.u64(static_cast<std::uint64_t>(a.channels));
    for (const ChannelMap& c : a.ch)
      for (double v : {c.d, c.m, c.s, c.g, c.t}) m.f64(v);
  }
  m.u64(res.constant_channels);
  const auto parts = comm.gather(m.b, 0);
  NormalizeResult all;
  std::vector<std::uint64_t> rank_rows;
  if (root) {
    for (const auto& part : parts) {
      Reader p{part};
      const std::uint64_t rows = p.u64();
      rank_rows.push_back(rows);
      all.rows += rows;
      for (std::uint64_t i = 0; i < rows; ++i) all.files.push_back(p.str());
      const std::uint64_t nl = p.u64();
      for (std::uint64_t i = 0; i < nl; ++i)
        all.labels.push_back(static_cast<std::int64_t>(p.u64()));
      get_skipped(p, all.skipped);
      const std::uint64_t nm = p.u64();
      for (std::uint64_t i = 0; i < nm; ++i) {
        Affine a;
        a.channels = static_cast<int>(p.u64());
        for (ChannelMap& c : a.ch)
          for (double* v : {&c.d, &c.m, &c.s, &c.g, &c.t}) *v = p.f64();
        all.per_image_maps.push_back(a);
      }
      all.constant_channels += p.u64();
    }
  }
  // The commit, once every rank got here: rank 0 writes the labels and the manifest and commits
  // the whole set through the folder it claimed (the file whose presence means "complete" last:
  // images.npy, or for shards manifest.json, which lists them).
  collective(comm, [&] {
    if (!root) return;
    check_cancel();
    Manifest man = job.manifest(all);
    std::vector<std::unique_ptr<NpyWriter>> labels;
    std::vector<AtomicFile*> files;
    if (!output_shards) {
      if (total != planned) images[0]->set_rows(total);
      if (job.labels()) {
        labels.push_back(std::make_unique<NpyWriter>(folder->path("labels.npy"), DType::int64,
                                                     std::vector<std::uint64_t>{total}));
        labels[0]->write_rows(0, all.labels.data(), total);
      }
    } else {
      std::uint64_t at = 0;
      for (int r = 0; r < ranks; ++r) {
        const std::uint64_t n = rank_rows[static_cast<std::size_t>(r)];
        if (n != images[r]->rows()) images[r]->set_rows(n);
        std::string labels_name;
        if (job.labels()) {
          labels_name = NormalizationAccess::shard_name("labels", r);
          labels.push_back(std::make_unique<NpyWriter>(folder->path(labels_name), DType::int64,
                                                       std::vector<std::uint64_t>{n}));
          if (n > 0) labels.back()->write_rows(0, all.labels.data() + at, n);
        }
        man.shards.push_back({NormalizationAccess::shard_name("images", r), labels_name, n});
        at += n;
      }
    }
    // zca/pca: whitening.npy (μ and rank 0's matrix, which every rank applied).
    const std::unique_ptr<NpyWriter> whitening_file =
        NormalizationAccess::whitening_file(job, *folder);
    save_fitted_stats(job, force, options.cancel);  // beside the folder, before its commit
    AtomicFile manifest(folder->path("manifest.json"));
    const std::string text = to_json(man);
    manifest.write(text.data(), text.size());
    for (auto& l : labels) files.push_back(&l->file());
    if (whitening_file) files.push_back(&whitening_file->file());
    if (output_shards)
      for (auto& f : images) files.push_back(&f->file());
    files.push_back(&manifest);
    if (!output_shards) files.push_back(&images[0]->file());
    check_cancel();
    folder->commit(files);
  });
  return root ? all : res;
}

}  // namespace imgnorm
