#include "imgnorm/pipeline.hpp"

#include <tbb/concurrent_queue.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cassert>
#include <mutex>
#include <new>
#include <opencv2/core/utility.hpp>
#include <thread>
#include <utility>

#include "imgnorm/resize.hpp"

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

// Everything one worker thread needs, kept between images so the hot path does not allocate.
struct Worker {
  Decoder decoder;
  std::vector<std::uint8_t> bytes;
  Image decoded;
  Image resized;
  Image scratch;
};

/// An image whose size is not the one --resize none fixed: the whole run is wrong, not the file.
struct SizeMismatch {
  Size size;
};

// Reads, decodes and resizes one file with a worker's buffers; returns a view of the result.
// With `mismatch_is_fatal`, --resize none with another size throws SizeMismatch.
ImageView load_with(Worker& w, const std::string& path, const Recipe& recipe,
                    const DecodeOptions& decode_options, DecodeInfo& info,
                    bool mismatch_is_fatal = false) {
  read_file(path, w.bytes);
  info = w.decoder.decode(w.bytes.data(), w.bytes.size(), decode_options, w.decoded);
  const Size full{w.decoded.width(), w.decoded.height()};
  if (recipe.resize == ResizeMode::none) {
    if (full == recipe.size) return w.decoded.view();
    if (mismatch_is_fatal) throw SizeMismatch{full};
  }
  resize(w.decoded.view(), recipe, w.resized, w.scratch);
  return w.resized.view();
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

int pipeline_slots(const PipelineOptions& options) {
  return options.tokens > 0 ? options.tokens : 4 * effective_threads(options.threads);
}

DecodeOptions decode_options_for(const Recipe& recipe, bool allow_truncated) {
  DecodeOptions o;
  o.channels = recipe.channels;
  o.max_pixels = recipe.max_pixels;
  o.allow_truncated = allow_truncated;
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
      read_file(e.path, w.bytes);
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
  const int threads = effective_threads(options.threads);
  const int slots = pipeline_slots(options);
  const DecodeOptions decode_options = decode_options_for(recipe, options.allow_truncated);

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
  auto work_impl = [&](Item* item) -> Item* {
    Worker& w = workers.local();
    const std::string& path = entries[item->index].path;
    DecodeInfo info;
    ImageView view;
    try {
      view = load_with(w, path, recipe, decode_options, info, true);
    } catch (const SizeMismatch& m) {
      item->mismatch = m.size;
      return item;
    } catch (const Error& e) {
      item->error.emplace(e.code(), reason_of(e, path));
      return item;
    } catch (const std::bad_alloc&) {
      item->error.emplace(ErrorCode::too_large, "out of memory while decoding");
      return item;
    }
    // A listed file that was missing when the list was read has no class; had it appeared since,
    // using it would depend on timing.
    if (entries[item->index].label < 0) {
      item->error.emplace(ErrorCode::io, "no such file when the list was read");
      return item;
    }
    // Errors from process() are not about this file (a full disk, say): they end the run.
    process(LoadedImage{item->index, item->slot, view, &info});
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
  tbb::task_arena arena(threads);
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
