// A normalize output read as one array: images.npy, or the shards manifest.json lists
// (include/imgnorm/output_set.hpp).

#include "imgnorm/output_set.hpp"

#include <sys/stat.h>

#include <algorithm>

#include "imgnorm/error.hpp"

namespace imgnorm {

OutputSet::OutputSet(const std::string& path) {
  struct stat st {};
  const bool folder = ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  std::string dir = folder ? path : folder_of(path);
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  dir_ = dir;
  const std::string mpath = folder ? dir_ + "/manifest.json" : path;
  manifest_ = read_manifest(mpath);
  const Manifest& m = manifest_;
  if (m.shards.empty()) {
    images_.push_back(dir_ + "/images.npy");
    if (m.labels) labels_.push_back(dir_ + "/labels.npy");
  } else {
    for (const ManifestShard& s : m.shards) {
      images_.push_back(dir_ + "/" + s.images);
      if (!s.labels.empty()) labels_.push_back(dir_ + "/" + s.labels);
    }
  }
  if (m.shape.size() < 2 || m.shape[0] != m.rows)
    throw Error(ErrorCode::format, mpath + ": field 'shape' does not match 'rows'");
  std::uint64_t at = 0;
  for (std::size_t k = 0; k < images_.size(); ++k) {
    readers_.push_back(std::make_unique<NpyReader>(images_[k]));
    const NpyHeader& h = readers_.back()->header();
    const std::uint64_t want = m.shards.empty() ? m.rows : m.shards[k].rows;
    if (h.dtype != m.dtype || h.shape.size() != m.shape.size() ||
        !std::equal(h.shape.begin() + 1, h.shape.end(), m.shape.begin() + 1) || h.shape[0] != want)
      throw Error(ErrorCode::format, images_[k] + ": does not match " + mpath + " (" +
                                         std::to_string(want) + " rows of its dtype and shape)");
    starts_.push_back(at);
    at += want;
  }
  starts_.push_back(at);
  header_.dtype = m.dtype;
  header_.shape = m.shape;
  header_.count = 1;
  for (std::uint64_t d : m.shape) header_.count *= d;
  header_.data_bytes = header_.count * dtype_size(m.dtype);
}

OutputSet::~OutputSet() = default;

void OutputSet::read_rows(std::uint64_t first, std::uint64_t n, void* out) const {
  if (first > rows() || n > rows() - first)
    throw Error(ErrorCode::invalid_argument, dir_ + ": rows " + std::to_string(first) + "+" +
                                                 std::to_string(n) + " outside the set of " +
                                                 std::to_string(rows()));
  auto* p = static_cast<std::uint8_t*>(out);
  const std::uint64_t rb = header_.row_bytes();
  while (n > 0) {
    // The file holding row `first`: the last one starting at or before it (empty shards skipped).
    const auto k = static_cast<std::size_t>(
        std::upper_bound(starts_.begin(), starts_.end() - 1, first) - starts_.begin() - 1);
    const std::uint64_t take = std::min(n, starts_[k + 1] - first);
    readers_[k]->read_rows(first - starts_[k], take, p);
    p += take * rb;
    first += take;
    n -= take;
  }
}

std::vector<std::int64_t> OutputSet::labels() const {
  std::vector<std::int64_t> all;
  for (std::size_t k = 0; k < labels_.size(); ++k) {
    NpyReader r(labels_[k]);
    const std::uint64_t want = manifest_.shards.empty() ? manifest_.rows : manifest_.shards[k].rows;
    if (r.header().dtype != DType::int64 || r.header().shape.size() != 1 ||
        r.header().shape[0] != want)
      throw Error(ErrorCode::format, labels_[k] + ": not " + std::to_string(want) +
                                         " int64 labels, as the manifest says");
    const std::size_t at = all.size();
    all.resize(at + static_cast<std::size_t>(want));
    if (want > 0) r.read_rows(0, want, all.data() + at);
  }
  return all;
}

}  // namespace imgnorm
