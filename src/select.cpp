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
  // Classes with no file at all, judged on the whole dataset (a sample or a shard may miss one).
  std::vector<std::size_t> files(s.dataset.classes.size(), 0);
  for (const Entry& e : s.dataset.entries)
    if (e.label >= 0) ++files[static_cast<std::size_t>(e.label)];
  for (std::size_t c = 0; c < files.size(); ++c) {
    if (files[c] != 0) continue;
    s.empty_classes.push_back(s.dataset.classes[c]);
  }
  if (!o.sample.empty()) {
    const std::size_t n = s.dataset.entries.size();
    SampleInfo si;
    si.population = n;
    si.sampled = parse_sample_count(o.sample, n);
    si.seed = o.seed;
    si.spec = o.sample;
    keep_indices(s.dataset, sample_indices(n, si.sampled, o.seed));
    s.sample = si;
    if (si.sampled == n)
      s.warnings.push_back("--sample " + o.sample + " takes all " + std::to_string(n) +
                           " images: the sample is the whole dataset");
  }
  if (o.shard_count != 1 || o.shard_index != 0) keep_shard(s.dataset, o.shard_index, o.shard_count);
  s.shard_index = o.shard_index;
  s.shard_count = o.shard_count;
  return s;
}

std::string empty_class_warning(const std::string& name) {
  return "class '" + name + "' has no usable image (its label is kept; --strict fails on it)";
}

}  // namespace imgnorm
