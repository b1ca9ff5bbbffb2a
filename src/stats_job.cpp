#include "imgnorm/stats_job.hpp"

#include <fmt/format.h>
#include <tbb/enumerable_thread_specific.h>

#include <algorithm>
#include <map>
#include <set>

#include "imgnorm/error.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/output.hpp"

namespace imgnorm {

StatsFile compute_stats(const Dataset& dataset, const StatsJob& job, const PipelineOptions& options,
                        const std::string& tool_version) {
  const int channels = channel_count(job.recipe.channels);
  // --resize none: the size of the first image; recorded in stats.json, every image must have it.
  const Recipe recipe = with_image_size(dataset.entries, job.recipe, options);
  const bool mean_image = job.mean_image && recipe.size.width > 0;  // 0x0: no image decodes
  tbb::enumerable_thread_specific<Accumulator> accs([&] {
    Accumulator a(channels);
    if (mean_image) a.enable_mean_image(recipe.size);
    return a;
  });

  StatsFile out;
  out.tool_version = tool_version;
  out.source = dataset.root;
  out.recipe = recipe;
  out.ddof = job.ddof;
  out.classes = dataset.classes;
  out.class_images.assign(dataset.classes.size(), 0);
  out.files_found = dataset.entries.size();
  out.ignored = dataset.ignored;
  out.sample = job.sample;
  out.shard_index = job.shard_index;
  out.shard_count = job.shard_count;

  run_pipeline(
      dataset.entries, recipe, options, [&](const LoadedImage& li) { accs.local().add(li.image); },
      [&](std::size_t index, int, const Error* error) {
        const Entry& e = dataset.entries[index];
        if (error) {
          out.skipped.push_back({e.path, error->code(), error->what()});
          if (options.on_skip) options.on_skip(e.path, *error);
        } else
          ++out.class_images[e.label];
      });

  // Sorted by path, as merge_into sorts them, so merged shards equal a single run byte for byte.
  std::stable_sort(out.skipped.begin(), out.skipped.end(),
                   [](const Skipped& a, const Skipped& b) { return a.path < b.path; });
  Accumulator total(channels);
  if (mean_image) total.enable_mean_image(recipe.size);
  for (const Accumulator& a : accs) total.merge(a);
  out.acc = std::move(total);
  return out;
}

StatsFile compute_stats(const Selection& selection, const StatsJob& job,
                        const PipelineOptions& options) {
  StatsJob j = job;
  j.sample = selection.sample;
  j.shard_index = selection.shard_index;
  j.shard_count = selection.shard_count;
  return compute_stats(selection.dataset, j, options, version());
}

std::vector<std::string> classes_without_images(const Selection& selection,
                                                const StatsFile& stats) {
  const Dataset& ds = selection.dataset;
  std::vector<std::uint64_t> selected(ds.classes.size(), 0);
  for (const Entry& e : ds.entries)
    if (e.label >= 0) ++selected[static_cast<std::size_t>(e.label)];
  std::vector<std::string> out;
  for (std::size_t c = 0; c < ds.classes.size(); ++c) {
    const bool empty = std::find(selection.empty_classes.begin(), selection.empty_classes.end(),
                                 ds.classes[c]) != selection.empty_classes.end();
    const bool none_used =
        selected[c] > 0 && c < stats.class_images.size() && stats.class_images[c] == 0;
    if (empty || none_used) out.push_back(ds.classes[c]);
  }
  return out;
}

StatsFile compute_stats(const ImageArray& array, const StatsJob& job,
                        const std::atomic<bool>* cancel) {
  StatsFile st;
  st.tool_version = version();
  st.source = array.name();
  st.recipe = job.recipe;
  if (array.channels() == 1)
    st.recipe.channels = ChannelOrder::gray;
  else if (st.recipe.channels == ChannelOrder::gray)
    st.recipe.channels = ChannelOrder::rgb;
  st.recipe.size = {array.width(), array.height()};
  st.recipe.resize = ResizeMode::none;
  st.ddof = job.ddof;
  const int nc = array.channels();
  Accumulator acc(nc);
  if (job.mean_image) acc.enable_mean_image(st.recipe.size);
  std::vector<std::uint8_t> px(array.is_float() ? std::size_t(array.width()) * array.height() * nc
                                                : 0);
  array.for_each_row(
      [&](std::uint64_t r, const ArrayRow& row) {
        if (!row.values) return acc.add(row.u8);
        values_to_u8(row.values, px.size(), r, array.name(), px.data());
        acc.add(ImageView{px.data(), array.width(), array.height(), nc,
                          static_cast<std::size_t>(array.width()) * nc});
      },
      cancel);
  st.files_found = array.rows();
  st.acc = std::move(acc);
  return st;
}

std::vector<double> mean_image(const Accumulator& acc) {
  const auto& sums = acc.pixel_sums();
  std::vector<double> mean(sums.size());
  const double n = static_cast<double>(acc.images());
  for (std::size_t i = 0; i < sums.size(); ++i) mean[i] = static_cast<double>(sums[i]) / n;
  return mean;
}

void check_outputs(const StatsOutputs& o) {
  if (!o.stats_json.empty()) check_output_path(o.stats_json, o.force);
  if (!o.mean_image.empty()) check_output_path(o.mean_image, o.force);
}

void write_outputs(const StatsFile& st, const StatsOutputs& o, const std::atomic<bool>* cancel) {
  if (!o.mean_image.empty()) {
    if (st.acc.pixel_sums().empty())
      throw Error(ErrorCode::invalid_argument,
                  o.mean_image + ": these statistics have no mean image");
    const std::vector<double> mean = mean_image(st.acc);
    const Size sz = st.acc.mean_image_size();
    write_npy(o.mean_image, DType::float64,
              {static_cast<std::uint64_t>(sz.height), static_cast<std::uint64_t>(sz.width),
               static_cast<std::uint64_t>(st.acc.channels())},
              mean.data());
  }
  // stats.json last: a failure writing the mean image leaves no stats.json that looks whole.
  if (!o.stats_json.empty()) write_file_atomic(o.stats_json, to_json(st), o.force, cancel);
}

std::vector<double> read_mean_image(const std::string& path, int channels, Size& size) {
  const NpyHeader hd = read_npy_header(path);  // checked before reading the data
  const auto& sh = hd.shape;
  if (hd.dtype != DType::float64 || sh.size() != 3 ||
      sh[2] != static_cast<std::uint64_t>(channels) || sh[0] == 0 || sh[1] == 0 || sh[0] > 65535 ||
      sh[1] > 65535)
    throw Error(ErrorCode::format, path + ": not a mean image (expected float64 H x W x " +
                                       std::to_string(channels) +
                                       ", as written by imgnorm stats --mean-image)");
  size = {static_cast<int>(sh[1]), static_cast<int>(sh[0])};
  NpyArray a = read_npy(path);
  const double* d = a.as<double>();
  return std::vector<double>(d, d + a.header.count);
}

namespace {

// Parts are fetched one at a time (files are read only when their turn comes), so the first
// problem in argument order is the one reported.
template <typename Get>
StatsFile merge_parts(std::size_t n, Get get, const std::vector<std::string>& names,
                      std::vector<std::string>* warnings) {
  if (n == 0) throw Error(ErrorCode::invalid_argument, "nothing to merge");
  auto name = [&](std::size_t i) { return i < names.size() ? names[i] : fmt::format("#{}", i); };
  // The same shard of the same source twice would be counted twice: refuse it.
  std::map<std::pair<std::string, int>, std::string> seen;
  std::map<std::string, std::set<int>> shards_of;
  int count = 0;
  auto note_shard = [&](const StatsFile& st, const std::string& path) {
    if (st.shard_count != count) count = -1;
    auto key = std::make_pair(st.source, st.shard_count > 1 ? st.shard_index : -1);
    auto [it, fresh] = seen.emplace(key, path);
    if (!fresh)
      throw Error(
          ErrorCode::invalid_argument,
          path + ": the same data as " + it->second + " (source " + st.source +
              (st.shard_count > 1 ? fmt::format(", shard {}/{}", st.shard_index, st.shard_count)
                                  : std::string()) +
              "); merging would count it twice");
    if (st.shard_count > 1) shards_of[st.source].insert(st.shard_index);
  };
  StatsFile all = get(0);
  count = all.shard_count;
  note_shard(all, name(0));
  for (std::size_t i = 1; i < n; ++i) {
    try {
      const StatsFile& part = get(i);
      note_shard(part, name(i));
      merge_into(all, part);
    } catch (const Error& e) {
      throw with_path(e, name(i));
    }
  }
  if (count > 1 && warnings)
    for (const auto& [source, got] : shards_of)
      if (static_cast<int>(got.size()) != count)
        warnings->push_back(fmt::format("{} of {} shards of {} merged", got.size(), count, source));
  all.tool_version = version();
  all.shard_index = 0;
  all.shard_count = 1;
  return all;
}

}  // namespace

StatsFile merge_stats(const std::vector<StatsFile>& parts, const std::vector<std::string>& names,
                      std::vector<std::string>* warnings) {
  return merge_parts(
      parts.size(), [&](std::size_t i) -> const StatsFile& { return parts[i]; }, names, warnings);
}

StatsFile merge_stats_files(const std::vector<std::string>& paths,
                            std::vector<std::string>* warnings) {
  StatsFile current;
  return merge_parts(
      paths.size(),
      [&](std::size_t i) -> const StatsFile& { return current = read_stats_file(paths[i]); }, paths,
      warnings);
}

}  // namespace imgnorm
