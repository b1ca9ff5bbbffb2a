#include "imgnorm/select.hpp"

#include <string_view>
#include <vector>

#include "imgnorm/error.hpp"
#include "sha256.hpp"

namespace imgnorm {

namespace {

// "a/./b//c/../d" -> "a/b/d"; a leading "/" and leading ".." components are kept.
std::string lexically_normal(std::string_view path) {
  std::vector<std::string_view> parts;
  const bool absolute = !path.empty() && path.front() == '/';
  std::size_t i = 0;
  while (i <= path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    const std::string_view part = path.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..")
        parts.pop_back();
      else if (!absolute)
        parts.push_back(part);
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out = absolute ? "/" : "";
  for (std::size_t k = 0; k < parts.size(); ++k) {
    if (k > 0) out += '/';
    out += parts[k];
  }
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return !prefix.empty() && s.substr(0, prefix.size()) == prefix;
}

}  // namespace

std::string selection_digest(const Dataset& dataset) {
  // A folder's entries are root + "/" + relative path; a list file's are its folder + the line (or
  // the absolute line). A list file is never a folder, so no entry of a list starts with "list/".
  std::string folder_prefix = dataset.root;
  if (!folder_prefix.empty() && folder_prefix.back() != '/') folder_prefix += '/';
  const std::size_t slash = dataset.root.rfind('/');
  const std::string list_prefix =
      slash == std::string::npos ? std::string() : dataset.root.substr(0, slash + 1);
  detail::Sha256 h;
  h.update(std::string_view("imgnorm-selection 1\0", 20));
  for (const Entry& e : dataset.entries) {
    std::string_view rel = e.path;
    if (starts_with(rel, folder_prefix))
      rel.remove_prefix(folder_prefix.size());
    else if (starts_with(rel, list_prefix))
      rel.remove_prefix(list_prefix.size());
    h.update(lexically_normal(rel));
    h.update(std::string_view("\0", 1));
  }
  return "sha256:" + h.hex_digest();
}

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
  // The identity of what is selected, before sharding: every shard of it records the same one.
  s.digest = selection_digest(s.dataset);
  s.files = s.dataset.entries.size();
  if (o.shard_count != 1 || o.shard_index != 0) keep_shard(s.dataset, o.shard_index, o.shard_count);
  s.shard_index = o.shard_index;
  s.shard_count = o.shard_count;
  return s;
}

std::string empty_class_warning(const std::string& name) {
  return "class '" + name + "' has no usable image (its label is kept; --strict fails on it)";
}

}  // namespace imgnorm
