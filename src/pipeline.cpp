#include "imgnorm/pipeline.hpp"

#include <tbb/concurrent_queue.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_pipeline.h>

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <new>
#include <opencv2/core/utility.hpp>
#include <sstream>
#include <thread>
#include <utility>

#include "file_bytes.hpp"
#include "imgnorm/resize.hpp"
#include "job_arena.hpp"

#ifndef IMGNORM_VERSION
#define IMGNORM_VERSION "0.0.0"
#endif

// ThreadSanitizer cannot see the synchronisation inside libtbb (Debian's build is not instrumented)
// that hands items from one pipeline filter to the next and orders the serial filters: without
// these annotations every field of an item and all state of the serial filters look racy.
#if defined(__SANITIZE_THREAD__)
#define IMGNORM_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IMGNORM_UNDER_TSAN 1
#endif
#endif
#ifdef IMGNORM_UNDER_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#define IMGNORM_TSAN_ACQUIRE(p) __tsan_acquire(static_cast<void*>(p))
#define IMGNORM_TSAN_RELEASE(p) __tsan_release(static_cast<void*>(p))
#else
#define IMGNORM_TSAN_ACQUIRE(p) ((void)0)
#define IMGNORM_TSAN_RELEASE(p) ((void)0)
#endif

namespace imgnorm::detail {
#ifdef IMGNORM_UNDER_TSAN
/// A filter body whose copies (made inside libtbb by the thread that starts the pipeline) are
/// ordered before the calls on worker threads.
template <typename F>
struct TsanBody {
  F f;
  explicit TsanBody(F fn) : f(std::move(fn)) { IMGNORM_TSAN_RELEASE(this); }
  TsanBody(const TsanBody& o) : f(o.f) { IMGNORM_TSAN_RELEASE(this); }
  template <typename... A>
  decltype(auto) operator()(A&&... a) const {
    IMGNORM_TSAN_ACQUIRE(const_cast<TsanBody*>(this));
    return f(std::forward<A>(a)...);
  }
};
template <typename F>
TsanBody<F> filter_body(F f) {
  return TsanBody<F>(std::move(f));
}
#else
template <typename F>
F filter_body(F f) {
  return f;
}
#endif
}  // namespace imgnorm::detail

namespace imgnorm {
namespace {

// A worker keeps its buffers from image to image up to this size; an image that needed more gives
// its buffers back afterwards, so one huge file does not hold memory for the rest of the run.
constexpr std::uint64_t kKeepBytes = std::uint64_t{64} << 20;

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) {
  if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
  return a * b;
}

// The bytes the images in flight may take. A worker acquires what its image needs before the
// decoder allocates and releases it once process() is done; it waits while that would go over
// the limit, unless nothing else is in flight (so an image bigger than the limit still loads,
// alone). Waiters hold nothing, and holders never wait, so this cannot deadlock.
class MemoryBudget {
 public:
  explicit MemoryBudget(std::uint64_t limit) : limit_(limit) {}
  void acquire(std::uint64_t n) {
    std::unique_lock<std::mutex> lock(mutex_);
    freed_.wait(lock, [&] { return used_ == 0 || (used_ <= limit_ && n <= limit_ - used_); });
    used_ += n;
  }
  void release(std::uint64_t n) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      used_ -= n;
    }
    freed_.notify_all();
  }
  std::uint64_t limit() const { return limit_; }

 private:
  std::mutex mutex_;
  std::condition_variable freed_;
  std::uint64_t limit_;
  std::uint64_t used_ = 0;
};

// Everything one worker thread needs, kept between images so the hot path does not allocate.
struct Worker {
  Decoder decoder;
  detail::FileBytes bytes;  // the file being decoded; reused, never zeroed
  Image decoded;
  Image resized;
  Image scratch;
  // run_pipeline's decode options, with `reserve` bound to this worker (set up on first use).
  DecodeOptions options;
  bool ready = false;
  std::uint64_t reserved = 0;  // bytes acquired from the budget for the image being loaded

  void release_buffers() {
    bytes.release();
    decoded = Image();
    resized = Image();
    scratch = Image();
    decoder.release_buffers();
  }
};

// Bytes the resize of a `decoded`-size image allocates: the result, and for crop the scaled image
// before cropping.
std::uint64_t resize_bytes(const Recipe& recipe, Size decoded) {
  if (recipe.resize == ResizeMode::none) return 0;
  const std::uint64_t c = static_cast<std::uint64_t>(channel_count(recipe.channels));
  std::uint64_t n = saturating_mul(
      saturating_mul(static_cast<std::uint64_t>(recipe.size.width), recipe.size.height), c);
  if (recipe.resize == ResizeMode::crop) {
    const Size s = needed_source_size(recipe, decoded);
    n += saturating_mul(saturating_mul(static_cast<std::uint64_t>(s.width), s.height), c);
  }
  return n;
}
/// An image whose size is not the one --resize none fixed: the whole run is wrong, not the file.
struct SizeMismatch {
  Size size;
};

// Reads, decodes and resizes one file with a worker's buffers; returns a view of the result.
// With `mismatch_is_fatal`, --resize none with another size throws SizeMismatch.
ImageView load_with(Worker& w, const std::string& path, const Recipe& recipe,
                    const DecodeOptions& decode_options, DecodeInfo& info,
                    bool mismatch_is_fatal = false) {
  detail::read_file(path, w.bytes);
  info = w.decoder.decode(w.bytes.data(), w.bytes.size(), decode_options, w.decoded);
  const Size full{w.decoded.width(), w.decoded.height()};
  if (recipe.resize == ResizeMode::none) {
    if (full == recipe.size) return w.decoded.view();
    if (mismatch_is_fatal) throw SizeMismatch{full};
  }
  resize(w.decoded.view(), recipe, w.resized, w.scratch);
  return w.resized.view();
}

// A cgroup memory limit file: "max", a number, or v1's "unlimited" (a number near 2^63); 0 when
// there is no limit or no such file.
std::uint64_t read_memory_limit(const std::string& path) {
  std::ifstream f(path);
  std::string text;
  if (!(f >> text) || text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return 0;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno != 0 || v >= (1ULL << 60)) return 0;
  return v;
}

// The lowest memory limit of this process's cgroup (v2 memory.max, v1 memory.limit_in_bytes), as
// seen from inside a container (the namespace root) or from the host (the path in
// /proc/self/cgroup); 0 when none.
std::uint64_t cgroup_memory_limit() {
  std::uint64_t best = 0;
  auto take = [&](std::uint64_t v) {
    if (v > 0 && (best == 0 || v < best)) best = v;
  };
  take(read_memory_limit("/sys/fs/cgroup/memory.max"));
  take(read_memory_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line)) {
    const auto a = line.find(':'), b = line.find(':', a == std::string::npos ? a : a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (path.empty() || path == "/" || path.find("..") != std::string::npos) continue;
    if (controllers.empty()) {
      take(read_memory_limit("/sys/fs/cgroup" + path + "/memory.max"));
    } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      take(read_memory_limit("/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes"));
    }
  }
  return best;
}
std::string size_text(Size s) { return std::to_string(s.width) + "x" + std::to_string(s.height); }

// The reason part of an error message: without the "path: " prefix that read errors carry.
std::string reason_of(const Error& e, const std::string& path) {
  std::string msg = e.what();
  if (msg.rfind(path + ": ", 0) == 0) msg.erase(0, path.size() + 2);
  return msg;
}

void disable_opencv_threads() {
  // Our workers are the parallelism; OpenCV's own thread pool would fight them for the cores.
  static std::once_flag once;
  std::call_once(once, [] { cv::setNumThreads(0); });
}

}  // namespace

const char* version() noexcept { return IMGNORM_VERSION; }

int effective_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

std::uint64_t default_max_memory() {
  static const std::uint64_t limit = [] {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGE_SIZE);
    std::uint64_t total = pages > 0 && page > 0 ? saturating_mul(static_cast<std::uint64_t>(pages),
                                                                 static_cast<std::uint64_t>(page))
                                                : std::uint64_t{8} << 30;
    const std::uint64_t cgroup = cgroup_memory_limit();
    if (cgroup > 0 && cgroup < total) total = cgroup;
    return std::max<std::uint64_t>(total / 2, std::uint64_t{64} << 20);
  }();
  return limit;
}

std::uint64_t effective_max_memory(const PipelineOptions& options) {
  return options.max_memory > 0 ? options.max_memory : default_max_memory();
}

std::uint64_t parse_memory_size(const std::string& text, const std::string& flag) {
  auto bad = [&]() -> std::uint64_t {
    throw Error(ErrorCode::invalid_argument,
                flag + ": '" + text +
                    "' is not a memory size (bytes, or a number with K, M, G or "
                    "T, e.g. 512M, 2G)");
  };
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  const std::string number = text.substr(0, i);
  if (number.empty() || number == "." || std::count(number.begin(), number.end(), '.') > 1)
    return bad();
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'b') unit.pop_back();  // "gb"
  if (unit.size() > 1 && unit.back() == 'i') unit.pop_back();  // "gib" -> "g"
  int shift = 0;
  if (unit.empty() || unit == "b") {
    shift = 0;
  } else if (unit == "k") {
    shift = 10;
  } else if (unit == "m") {
    shift = 20;
  } else if (unit == "g") {
    shift = 30;
  } else if (unit == "t") {
    shift = 40;
  } else {
    return bad();
  }
  const double v = std::strtod(number.c_str(), nullptr) * std::ldexp(1.0, shift);
  if (!(v >= 1) || v >= 0x1p63) {
    throw Error(ErrorCode::invalid_argument,
                flag + ": '" + text + "' is out of range (1 byte to 8 EiB)");
  }
  return static_cast<std::uint64_t>(v);
}

std::string memory_size_text(std::uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " bytes";
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes) / 1024;
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.1f %s" : "%.0f %s", v, kUnits[u]);
  return buf;
}

void check_memory(const Recipe& recipe, const PipelineOptions& options) {
  const std::uint64_t limit = effective_max_memory(options);
  const std::uint64_t c = static_cast<std::uint64_t>(channel_count(recipe.channels));
  const std::uint64_t resized =
      recipe.resize == ResizeMode::none
          ? 0
          : saturating_mul(saturating_mul(static_cast<std::uint64_t>(recipe.size.width),
                                          static_cast<std::uint64_t>(recipe.size.height)),
                           c);
  const std::uint64_t need = resized + options.slot_bytes;
  if (need <= limit) return;
  const std::string size =
      std::to_string(recipe.size.width) + "x" + std::to_string(recipe.size.height);
  std::string parts;
  if (resized > 0) parts = memory_size_text(resized) + " for the resized " + size + " image";
  if (options.slot_bytes > 0) {
    if (!parts.empty()) parts += " + ";
    parts += memory_size_text(options.slot_bytes) + " for its output row";
  }
  throw Error(ErrorCode::invalid_argument,
              "--size " + size + ": one image in flight needs " + memory_size_text(need) + " (" +
                  parts + "), more than the memory limit of " + memory_size_text(limit) +
                  (options.max_memory > 0 ? " (--max-memory)"
                                          : " (--max-memory; the default is half of the memory)") +
                  "; give a smaller --size or a larger --max-memory");
}

int pipeline_slots(const PipelineOptions& options, std::size_t images) {
  std::uint64_t slots = options.tokens > 0
                            ? static_cast<std::uint64_t>(options.tokens)
                            : 4 * static_cast<std::uint64_t>(effective_threads(options.threads));
  slots = std::min<std::uint64_t>(slots, images);
  if (options.slot_bytes > 0)
    slots = std::min<std::uint64_t>(slots, effective_max_memory(options) / 2 / options.slot_bytes);
  return static_cast<int>(std::max<std::uint64_t>(slots, 1));
}

DecodeOptions decode_options_for(const Recipe& recipe, bool allow_truncated) {
  DecodeOptions o;
  o.channels = recipe.channels;
  o.max_pixels = recipe.max_pixels;
  o.allow_truncated = allow_truncated;
  o.alpha = recipe.alpha;
  if (!recipe.exact_decode && recipe.resize != ResizeMode::none)
    o.min_size = [recipe](Size full) { return needed_source_size(recipe, full); };
  return o;
}

void load_image(const std::string& path, const Recipe& recipe, Image& out, DecodeInfo* info,
                bool allow_truncated) {
  Worker w;
  DecodeInfo local;
  ImageView v = load_with(w, path, recipe, decode_options_for(recipe, allow_truncated), local);
  out.reset(v.width, v.height, v.channels);
  for (int y = 0; y < v.height; ++y) std::copy(v.row(y), v.row(y) + out.stride(), out.row(y));
  if (info) *info = local;
}

Recipe with_image_size(const std::vector<Entry>& entries, const Recipe& recipe,
                       const PipelineOptions& options) {
  if (recipe.resize != ResizeMode::none || (recipe.size.width > 0 && recipe.size.height > 0))
    return recipe;
  Recipe out = recipe;
  const DecodeOptions decode_options = decode_options_for(recipe, options.allow_truncated);
  Worker w;
  DecodeInfo info;
  for (const Entry& e : entries) {
    if (options.cancel && options.cancel->load())
      throw Error(ErrorCode::interrupted, "interrupted");
    if (e.label < 0) continue;  // skipped by the run too
    try {
      detail::read_file(e.path, w.bytes);
      w.decoder.decode(w.bytes.data(), w.bytes.size(), decode_options, w.decoded);
    } catch (const Error&) {
      continue;  // the run skips it with the same reason
    } catch (const std::bad_alloc&) {
      continue;
    }
    out.size = {w.decoded.width(), w.decoded.height()};
    break;
  }
  return out;
}

void run_pipeline(const std::vector<Entry>& entries, const Recipe& recipe,
                  const PipelineOptions& options,
                  const std::function<void(const LoadedImage&)>& process,
                  const std::function<void(std::size_t, int, const Error*)>& in_order) {
  disable_opencv_threads();
  check_memory(recipe, options);
  const int slots = pipeline_slots(options, entries.size());
  // More threads than images in flight would only wait (and each keeps its own buffers).
  const int threads = std::min(effective_threads(options.threads), slots);
  const DecodeOptions decode_options = decode_options_for(recipe, options.allow_truncated);
  // The output slots are the caller's, allocated up front; the rest of the limit is for loading.
  const std::uint64_t limit = effective_max_memory(options);
  const std::uint64_t fixed = saturating_mul(static_cast<std::uint64_t>(slots), options.slot_bytes);
  MemoryBudget budget(limit > fixed ? limit - fixed : 1);
  const std::uint64_t keep =
      std::min(kKeepBytes, budget.limit() / (2 * static_cast<std::uint64_t>(threads)));

  struct Item {
    std::size_t index = 0;
    int slot = 0;
    std::optional<Error> error;
    std::optional<Size> mismatch;  // --resize none: the image's size, not the recipe's
  };
  std::vector<Item> items(slots);
  tbb::concurrent_queue<int> free_slots;
  for (int i = 0; i < slots; ++i) free_slots.push(i);
  tbb::enumerable_thread_specific<Worker> workers;
  std::size_t next = 0;
  std::size_t done = 0;

  auto source = [&](tbb::flow_control& fc) -> Item* {
    IMGNORM_TSAN_ACQUIRE(&next);
    Item* item = nullptr;
    if (next >= entries.size() || (options.cancel && options.cancel->load())) {
      fc.stop();
    } else {
      int slot = -1;
      [[maybe_unused]] bool got = free_slots.try_pop(slot);
      assert(got && "more items in flight than tokens");
      item = &items[slot];
      IMGNORM_TSAN_ACQUIRE(item);
      item->index = next++;
      item->slot = slot;
      item->error.reset();
      item->mismatch.reset();
      if (options.on_start) options.on_start(item->index, slot);
      IMGNORM_TSAN_RELEASE(item);
    }
    IMGNORM_TSAN_RELEASE(&next);
    return item;
  };
  // Gives the image's memory back; a worker that needed more than `keep` frees its buffers.
  auto finish = [&](Worker& w) {
    if (w.reserved > 0) budget.release(w.reserved);
    if (w.reserved > keep || w.bytes.capacity() > keep) w.release_buffers();
    w.reserved = 0;
  };
  auto out_of_memory = [&](Worker& w, const std::string& path, const std::string& detail) {
    const std::uint64_t needed = w.reserved;
    finish(w);
    std::string msg = path + ": out of memory while loading this image";
    if (needed > 0) msg += " (it needs about " + memory_size_text(needed) + ")";
    if (!detail.empty()) msg += " [" + detail + "]";
    msg += "; running out of memory is not the file's fault: lower --max-memory (now " +
           memory_size_text(limit) + ") or --threads (now " + std::to_string(threads) +
           ") to what this machine can give";
    return Error(ErrorCode::out_of_memory, msg);
  };
  auto work_impl = [&](Item* item) -> Item* {
    Worker& w = workers.local();
    if (!w.ready) {
      w.options = decode_options;
      w.options.reserve = [&w, &budget, &recipe](Size decoded, std::uint64_t bytes) {
        const std::uint64_t need = bytes + w.bytes.size() + resize_bytes(recipe, decoded);
        budget.acquire(need);
        w.reserved = need;
      };
      w.ready = true;
    }
    const std::string& path = entries[item->index].path;
    DecodeInfo info;
    ImageView view;
    try {
      view = load_with(w, path, recipe, w.options, info, true);
    } catch (const SizeMismatch& m) {
      item->mismatch = m.size;
      finish(w);
      return item;
    } catch (const Error& e) {
      if (e.code() == ErrorCode::out_of_memory) throw out_of_memory(w, path, reason_of(e, path));
      item->error.emplace(e.code(), reason_of(e, path));
      finish(w);
      return item;
    } catch (const std::bad_alloc&) {
      throw out_of_memory(w, path, "");
    }
    // A listed file that was missing when the list was read has no class; had it appeared since,
    // using it would depend on timing.
    if (entries[item->index].label < 0) {
      item->error.emplace(ErrorCode::io, "no such file when the list was read");
      finish(w);
      return item;
    }
    // Errors from process() are not about this file (a full disk, say): they end the run.
    try {
      process(LoadedImage{item->index, item->slot, view, &info});
    } catch (const std::bad_alloc&) {
      throw out_of_memory(w, path, "");
    } catch (...) {
      finish(w);
      throw;
    }
    finish(w);
    return item;
  };
  auto work = [&](Item* item) -> Item* {
    IMGNORM_TSAN_ACQUIRE(item);
    work_impl(item);
    IMGNORM_TSAN_RELEASE(item);
    IMGNORM_TSAN_RELEASE(&items);  // what process() wrote, read once the pipeline is over
    return item;
  };
  auto sink = [&](Item* item) {
    IMGNORM_TSAN_ACQUIRE(&done);
    IMGNORM_TSAN_ACQUIRE(item);
    // One message for the run, at the first image in order that disagrees, instead of one skip
    // per image: with --resize none every image must have the size of the first.
    if (item->mismatch)
      throw Error(ErrorCode::invalid_argument,
                  entries[item->index].path + ": image is " + size_text(*item->mismatch) +
                      ", not " + size_text(recipe.size) +
                      " (--resize none keeps each image's size, so all must agree; resize them "
                      "with --size and --resize stretch, crop or pad)");
    in_order(item->index, item->slot, item->error ? &*item->error : nullptr);
    ++done;
    if (options.progress) options.progress(done, entries.size());
    const int slot = item->slot;
    IMGNORM_TSAN_RELEASE(item);
    free_slots.push(slot);
    IMGNORM_TSAN_RELEASE(&done);
  };

  IMGNORM_TSAN_RELEASE(&next);  // everything above, seen by the filters on other threads
  detail::JobArena arena(threads);
  arena.execute([&] {
    tbb::parallel_pipeline(
        static_cast<std::size_t>(slots),
        tbb::make_filter<void, Item*>(tbb::filter_mode::serial_in_order,
                                      detail::filter_body(source)) &
            tbb::make_filter<Item*, Item*>(tbb::filter_mode::parallel, detail::filter_body(work)) &
            tbb::make_filter<Item*, void>(tbb::filter_mode::serial_in_order,
                                          detail::filter_body(sink)));
  });
  IMGNORM_TSAN_ACQUIRE(&next);
  IMGNORM_TSAN_ACQUIRE(&items);
  IMGNORM_TSAN_ACQUIRE(&done);
  if (options.cancel && options.cancel->load() && done < entries.size())
    throw Error(ErrorCode::interrupted, "interrupted");
}

}  // namespace imgnorm
