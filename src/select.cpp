#include "imgnorm/select.hpp"

#include "imgnorm/error.hpp"

namespace imgnorm {

Selection select_dataset(const SelectOptions& o) {
  if (o.folder.empty() == o.list.empty())
    throw Error(ErrorCode::invalid_argument, "give either a dataset folder or a list file");
  Selection s;
  s.source = o.list.empty() ? o.folder : o.list;
  s.dataset = o.list.empty() ? scan_folder(o.folder, o.scan) : read_list(o.list, o.scan);
  if (s.dataset.entries.empty())
    throw Error(ErrorCode::empty, s.source + ": no image files found (" +
                                      std::to_string(s.dataset.ignored.size()) +
                                      " other files ignored)");
  if (!o.sample.empty()) {
    const std::size_t n = s.dataset.entries.size();
    SampleInfo si;
    si.population = n;
    si.sampled = parse_sample_count(o.sample, n);
    si.seed = o.seed;
    si.spec = o.sample;
    keep_indices(s.dataset, sample_indices(n, si.sampled, o.seed));
    s.sample = si;
  }
  if (o.shard_count != 1 || o.shard_index != 0) keep_shard(s.dataset, o.shard_index, o.shard_count);
  s.shard_index = o.shard_index;
  s.shard_count = o.shard_count;
  return s;
}

}  // namespace imgnorm
