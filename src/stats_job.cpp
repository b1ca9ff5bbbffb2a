#include "imgnorm/stats_job.hpp"

#include <fmt/format.h>
#include <tbb/enumerable_thread_specific.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "blas_threads.hpp"
#include "coverage.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/output.hpp"
#include "sha256.hpp"

namespace imgnorm {

namespace {

// An accumulator for `job` over images of `size` (0x0: not known yet).
Accumulator make_accumulator(int channels, const StatsJob& job, Size size, bool mean_image) {
  Accumulator a(channels);
  if (mean_image) a.enable_mean_image(size);
  if (!job.cross_products) a.skip_cross_products();
  if (job.patch) {
    a.enable_patch(job.patch);
    if (size.width > 0 && (size.width < job.patch || size.height < job.patch))
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("--patch {}: the patch is larger than the {}x{} images", job.patch,
                              size.width, size.height));
  }
  return a;
}

}  // namespace
namespace detail {
// stats_json.cpp: to_json with this "pixel_covariance" record instead of stats.pixel_covariance.
std::string to_json_with(const StatsFile& stats, const std::optional<PixelCovarianceFile>& pixcov);
}  // namespace detail

StatsFile compute_stats(const Dataset& dataset, const StatsJob& job, const PipelineOptions& options,
                        const std::string& tool_version) {
  const int channels = channel_count(job.recipe.channels);
  // --resize none: the size of the first image; recorded in stats.json, every image must have it.
  const Recipe recipe = with_image_size(dataset.entries, job.recipe, options);
  const bool mean_image = job.mean_image && recipe.size.width > 0;  // 0x0: no image decodes
  const bool pixcov = job.pixel_covariance && recipe.size.width > 0;
  if (pixcov)  // one accumulator per thread and the total, before any is allocated
    check_pixel_covariance_memory(static_cast<std::uint64_t>(recipe.size.width) *
                                      static_cast<std::uint64_t>(recipe.size.height) * channels,
                                  effective_threads(options.threads) + 1,
                                  effective_max_memory(options), options.max_memory > 0);
  // Checked (the patch side, the patch against the size) before any image is decoded.
  Accumulator empty = make_accumulator(channels, job, recipe.size, mean_image);
  if (pixcov) empty.enable_pixel_covariance(recipe.size);
  tbb::enumerable_thread_specific<Accumulator> accs([&] { return empty; });

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
  if (!job.selection.empty()) {
    Coverage c{job.selection, job.selection_files, {}};
    if (job.shard_count > 1) c.shards = {Shard{job.shard_index, job.shard_count}};
    detail::normalize(c);
    out.covers = {std::move(c)};
  } else if (job.shard_count == 1 && !dataset.entries.empty()) {
    out.covers = {Coverage{selection_digest(dataset), dataset.entries.size(), {}}};
  }
  if (!out.covers.empty()) {  // a shard that holds every file (more shards than files) is all
    const Shard one = detail::single_shard(out.covers);
    out.shard_index = one.index;
    out.shard_count = one.count;
  }

  // Each worker multiplies its own covariance blocks: OpenBLAS starts no threads of its own.
  std::optional<detail::BlasThreads> serial_blas;
  if (pixcov) serial_blas.emplace(1);
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
  Accumulator total = empty;
  for (const Accumulator& a : accs) total.merge(a);
  out.acc = std::move(total);
  return out;
}

StatsJob with_selection(StatsJob job, const Selection& selection) {
  job.sample = selection.sample;
  job.shard_index = selection.shard_index;
  job.shard_count = selection.shard_count;
  job.selection = selection.digest;
  job.selection_files = selection.files;
  return job;
}

StatsFile compute_stats(const Selection& selection, const StatsJob& job,
                        const PipelineOptions& options) {
  return compute_stats(selection.dataset, with_selection(job, selection), options, version());
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
  Accumulator acc = make_accumulator(nc, job, st.recipe.size, job.mean_image);
  if (job.pixel_covariance) {
    check_pixel_covariance_memory(
        static_cast<std::uint64_t>(array.width()) * static_cast<std::uint64_t>(array.height()) * nc,
        1, default_max_memory(), false);
    acc.enable_pixel_covariance(st.recipe.size);
  }
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

namespace {

// `p` with the symlinks of its last component followed, even when they dangle.
std::filesystem::path resolved(std::filesystem::path p) {
  std::error_code ec;
  for (int i = 0; i < 40 && std::filesystem::is_symlink(p, ec); ++i) {
    auto target = std::filesystem::read_symlink(p, ec);
    if (ec) break;
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  return std::filesystem::weakly_canonical(p, ec);
}

// The same file, also through a symlink (dangling too: it is about to be written) or a hard link.
bool same_file(const std::string& a, const std::string& b) {
  if (resolved(a) == resolved(b)) return true;
  struct stat sa {
  }, sb{};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

}  // namespace

namespace {

void check_sidecar_wanted(const StatsOutputs& o) {
  if (o.stats_json.empty())
    throw Error(ErrorCode::invalid_argument,
                "--pixel-covariance needs -o stats.json: the moments are written beside it");
}

std::string file_sha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, path + ": cannot read it back");
  detail::Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(std::string_view(buf.data(), static_cast<std::size_t>(in.gcount())));
  }
  return h.hex_digest();
}

}  // namespace

void check_outputs(const StatsOutputs& o) {
  if (o.pixel_covariance) {
    check_sidecar_wanted(o);
    check_output_path(pixel_covariance_path(o.stats_json), o.force);
  }
  if (!o.stats_json.empty() && !o.mean_image.empty() && same_file(o.stats_json, o.mean_image))
    throw Error(ErrorCode::invalid_argument,
                o.mean_image + ": -o and --mean-image name the same file; give two paths");
  if (!o.stats_json.empty()) check_output_path(o.stats_json, o.force);
  if (!o.mean_image.empty()) check_output_path(o.mean_image, o.force);
}

void write_outputs(const StatsFile& st, const StatsOutputs& o, const std::atomic<bool>* cancel) {
  if (!o.stats_json.empty() && !o.mean_image.empty() && same_file(o.stats_json, o.mean_image))
    throw Error(ErrorCode::invalid_argument,
                o.mean_image + ": -o and --mean-image name the same file; give two paths");
  // Both are written under temporary names, then committed together: a failure anywhere leaves
  // the previous files (or none), never a new mean image beside an old stats.json.
  std::optional<NpyWriter> mean_file;
  if (!o.mean_image.empty()) {
    if (st.acc.pixel_sums().empty())
      throw Error(ErrorCode::invalid_argument,
                  o.mean_image + ": these statistics have no mean image");
    const std::vector<double> mean = mean_image(st.acc);
    const Size sz = st.acc.mean_image_size();
    mean_file.emplace(o.mean_image, DType::float64,
                      std::vector<std::uint64_t>{static_cast<std::uint64_t>(sz.height),
                                                 static_cast<std::uint64_t>(sz.width),
                                                 static_cast<std::uint64_t>(st.acc.channels())});
    mean_file->write_rows(0, mean.data(), mean_file->rows());
  }
  std::optional<NpyWriter> pixcov_file;
  std::optional<PixelCovarianceFile> pixcov_ref = st.pixel_covariance;
  if (const PixelCovariance& pc = st.acc.pixel_covariance(); pc.enabled()) {
    check_sidecar_wanted(o);
    const std::string path = pixel_covariance_path(o.stats_json);
    const std::vector<double> m = pc.moments();
    const std::uint64_t n = pc.dimension() + 1;
    pixcov_file.emplace(path, DType::float64, std::vector<std::uint64_t>{n, n});
    pixcov_file->write_rows(0, m.data(), n);
    pixcov_ref = PixelCovarianceFile{std::filesystem::path(path).filename().string(),
                                     file_sha256(pixcov_file->temp_path()), pc.dimension()};
  }
  std::optional<AtomicFile> json_file;
  if (!o.stats_json.empty()) {
    const std::string text = detail::to_json_with(st, pixcov_ref);
    json_file.emplace(o.stats_json);
    json_file->write(text.data(), text.size());
  }
  if (cancel && cancel->load()) throw Error(ErrorCode::interrupted, "interrupted");
  std::vector<AtomicFile*> files;
  if (mean_file) files.push_back(&mean_file->file());
  if (pixcov_file) files.push_back(&pixcov_file->file());
  if (json_file) files.push_back(&*json_file);  // stats.json last
  // Checked again: a file that appeared during the run is not replaced without force.
  if (!o.force)
    for (AtomicFile* f : files)
      if (struct stat sb{}; ::stat(f->path().c_str(), &sb) == 0)
        throw Error(ErrorCode::io, f->path() + ": already exists (use --force to replace it)");
  commit_files(files);
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

// "missing 1/4, 3/4" for a selection whose shards all have one count; else how many files.
std::string missing_text(const Coverage& c) {
  const int n = c.shards.front().count;
  const bool one_count =
      std::all_of(c.shards.begin(), c.shards.end(), [&](const Shard& s) { return s.count == n; });
  if (!one_count) return fmt::format("{} of {} files", detail::covered_files(c), c.files);
  std::string missing;
  int listed = 0, left = 0;
  for (int i = 0; i < n && static_cast<std::uint64_t>(i) < c.files; ++i) {
    if (std::find(c.shards.begin(), c.shards.end(), Shard{i, n}) != c.shards.end()) continue;
    if (listed == 8) {
      ++left;
      continue;
    }
    missing += (listed++ ? ", " : "") + detail::shard_text(Shard{i, n});
  }
  if (left > 0) missing += fmt::format(" and {} more", left);
  return "missing " + missing;
}

// Parts are fetched one at a time (files are read only when their turn comes), so the first
// problem in argument order is the one reported.
template <typename Get>
StatsFile merge_parts(std::size_t n, Get get, const std::vector<std::string>& names,
                      std::vector<std::string>* warnings) {
  if (n == 0) throw Error(ErrorCode::invalid_argument, "nothing to merge");
  auto name = [&](std::size_t i) { return i < names.size() ? names[i] : fmt::format("#{}", i); };
  auto warn = [&](const std::string& w) {
    if (warnings) warnings->push_back(w);
  };
  // What each part covers, to name the two parts of an overlap.
  struct Seen {
    std::string name;
    std::vector<Coverage> covers;
  };
  std::vector<Seen> seen;
  std::map<std::string, std::pair<std::string, std::uint64_t>> source_of;  // digest -> source
  // Parts that do not say what they cover (older files): the same shard of the same source twice
  // is the only overlap that can be recognized.
  std::map<std::pair<std::string, int>, std::string> legacy;
  auto note = [&](const StatsFile& st, const std::string& path) {
    if (st.covers.empty()) {
      warn(path +
           ": does not record which files it covers (an older stats.json, or the statistics of "
           "an array); merge cannot check it for overlaps, and the result will not record what "
           "it covers either");
      auto key = std::make_pair(st.source, st.shard_count > 1 ? st.shard_index : -1);
      auto [it, fresh] = legacy.emplace(key, path);
      if (!fresh)
        throw Error(
            ErrorCode::invalid_argument,
            path + ": the same data as " + it->second + " (source " + st.source +
                (st.shard_count > 1 ? fmt::format(", shard {}/{}", st.shard_index, st.shard_count)
                                    : std::string()) +
                "); merging would count it twice");
      return;
    }
    for (const Seen& s : seen) {
      const std::string both = detail::overlap(s.covers, st.covers);
      if (!both.empty())
        throw Error(ErrorCode::invalid_argument, path + ": covers files that " + s.name +
                                                     " covers too (" + both +
                                                     "); merging would count them twice");
    }
    for (const Coverage& c : st.covers) {
      auto [it, fresh] = source_of.emplace(c.selection, std::make_pair(st.source, c.files));
      if (fresh)
        for (const auto& [digest, other] : source_of)
          if (digest != c.selection && other.first == st.source)
            warn(
                fmt::format("{}: a different selection of '{}' than before ({} and {} files); "
                            "merged as different datasets",
                            path, st.source, other.second, c.files));
    }
    seen.push_back({path, st.covers});
  };
  StatsFile all = get(0);
  note(all, name(0));
  for (std::size_t i = 1; i < n; ++i) {
    const StatsFile* part = nullptr;
    try {
      part = &get(i);
    } catch (const Error& e) {
      throw with_path(e, name(i));
    }
    note(*part, name(i));  // its messages name both parts already
    try {
      merge_into(all, *part);
    } catch (const Error& e) {
      throw with_path(e, name(i));
    }
  }
  for (const Coverage& c : all.covers)
    if (!c.shards.empty()) {
      const std::string& source = source_of[c.selection].first;
      const int count = c.shards.front().count;
      if (std::all_of(c.shards.begin(), c.shards.end(),
                      [&](const Shard& s) { return s.count == count; }))
        warn(fmt::format("{} of {} shards of {} merged ({})", c.shards.size(), count, source,
                         missing_text(c)));
      else
        warn(fmt::format("{} of {} merged: {}", detail::describe(c), source, missing_text(c)));
    }
  all.tool_version = version();
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
