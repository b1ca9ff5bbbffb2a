#pragma once
/// \file pipeline.hpp
/// The streaming engine: read → decode → resize every entry of a dataset on all cores (a oneTBB
/// parallel_pipeline), handing each resized image to a parallel callback and each result, in
/// dataset order, to a serial callback. Memory is bounded by the images in flight, never by the
/// dataset size, and the images in flight by PipelineOptions::max_memory. The jobs built on it:
/// compute_stats (stats_job.hpp) and normalize (normalize.hpp).

#include <atomic>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "imgnorm/dataset.hpp"
#include "imgnorm/decode.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/export.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/recipe.hpp"

namespace imgnorm {

struct PipelineOptions {
  /// Worker threads; 0 means all cores. Never more than the images to load (nor the slots).
  int threads = 0;
  /// Images in flight at once (token slots); 0 means 4 per thread. Never more than the images to
  /// load, nor than the slots whose `slot_bytes` fit in half of `max_memory`.
  int tokens = 0;
  /// Memory the images in flight may take, in bytes (the CLI's --max-memory, e.g. "2G"); 0 means
  /// default_max_memory(). A worker waits before decoding an image that would not fit beside the
  /// others in flight (throttling, never failing); an image that alone needs more is decoded when
  /// nothing else is in flight (--max-pixels is the per-file refusal). A size or output row that
  /// cannot fit even once is refused up front (Error invalid_argument naming --size and the
  /// bytes).
  std::uint64_t max_memory = 0;
  /// Bytes the caller keeps per token slot (normalize's output row), counted against max_memory.
  std::size_t slot_bytes = 0;
  /// A truncated JPEG is decoded as far as its data goes (grey fill) instead of being skipped.
  bool allow_truncated = false;
  /// Called from the serial stage after each image: (images done, total).
  std::function<void(std::size_t, std::size_t)> progress;
  /// When it becomes true, no new image is started and run() throws Error(interrupted).
  const std::atomic<bool>* cancel = nullptr;
  /// Called from the serial stage, in dataset order, for each file a job skips (the CLI prints
  /// "imgnorm: skipped PATH: REASON"); the job also lists it in its result.
  std::function<void(const std::string& path, const Error& error)> on_skip;
  /// Called from the serial source stage, in dataset order, when an entry is handed to a worker
  /// (before its process() call): (entry index, token slot). Lets a caller choose where that
  /// image's output goes (the loader writes rows straight into their batch).
  std::function<void(std::size_t index, int slot)> on_start;
};

/// An image as the parallel stage sees it.
struct LoadedImage {
  std::size_t index = 0;  ///< position in the entry list
  int slot = 0;           ///< token slot in [0, slots()), for handing data to the serial stage
  ImageView image;        ///< resized u8 pixels, valid during the callback only
  const DecodeInfo* info = nullptr;
};

/// Runs `entries` through the recipe. `process` runs in parallel for every image that loaded;
/// `in_order` runs serially, in entry order, for every entry, with the error that made it fail
/// (nullptr when it loaded) and the slot its process() call used. A file that fails is never
/// fatal here; what to do with it is the caller's decision. Running out of memory is not about a
/// file: it ends the run with Error(out_of_memory), naming the file and what it needed.
/// Throws Error(interrupted) when options.cancel was raised, Error(invalid_argument) up front when
/// one resized image and its slot cannot fit in max_memory (see check_memory()). With
/// ResizeMode::none, an image whose decoded size is not recipe.size ends the run:
/// Error(invalid_argument) "PATH: image is WxH, not W0xH0 (--resize none keeps each image's size,
/// so all must agree; ...)", once, for the first such image in entry order. An entry with label < 0
/// (a listed file that was missing) is skipped: Error(io) "no such file" from reading it, or "no
/// such file when the list was read".
IMGNORM_API void run_pipeline(
    const std::vector<Entry>& entries, const Recipe& recipe, const PipelineOptions& options,
    const std::function<void(const LoadedImage&)>& process,
    const std::function<void(std::size_t index, int slot, const Error* error)>& in_order);

/// The recipe with its size fixed: with ResizeMode::none and no size (0x0, "the images' own"),
/// the decoded size of the first entry, in order, that decodes (entries that fail are passed
/// over here and skipped by the run); any other recipe unchanged. Still 0x0 when none decodes.
/// Error(interrupted) when options.cancel is raised.
IMGNORM_API Recipe with_image_size(const std::vector<Entry>& entries, const Recipe& recipe,
                                   const PipelineOptions& options);

/// The number of token slots run_pipeline uses for these options and `images` entries (so callers
/// can size per-slot buffers before calling it): tokens (default 4 per thread), at most `images`,
/// at most as many `slot_bytes` slots as fit in half of max_memory, at least 1.
IMGNORM_API int pipeline_slots(const PipelineOptions& options,
                               std::size_t images = static_cast<std::size_t>(-1));

/// Effective thread count for options.threads (0 → hardware concurrency).
IMGNORM_API int effective_threads(int threads);

/// options.max_memory, or default_max_memory() when it is 0.
IMGNORM_API std::uint64_t effective_max_memory(const PipelineOptions& options);

/// The default memory limit: half of the physical memory, or of the cgroup (container) memory
/// limit when that is lower.
IMGNORM_API std::uint64_t default_max_memory();

/// Parses a memory size: bytes ("1048576") or a number with a binary unit K, M, G, T ("512M",
/// "1.5G", "2GiB", "2gb": all powers of 1024). Throws Error(invalid_argument) naming `flag`.
IMGNORM_API std::uint64_t parse_memory_size(const std::string& text,
                                            const std::string& flag = "--max-memory");

/// A byte count for messages: "123 bytes", "1.5 GiB".
IMGNORM_API std::string memory_size_text(std::uint64_t bytes);

/// Checks up front that one image in flight fits in the memory limit: the resized image of
/// `recipe` plus options.slot_bytes. Throws Error(invalid_argument) naming --size, the bytes needed
/// and the limit.
IMGNORM_API void check_memory(const Recipe& recipe, const PipelineOptions& options);

/// Decode options that implement `recipe` (channel order, pixel limit, DCT prescale unless
/// exact_decode).
IMGNORM_API DecodeOptions decode_options_for(const Recipe& recipe, bool allow_truncated = false);

/// Loads one file through the recipe (read, decode, resize) — the plain path, used by tools and
/// tests. `out` receives the resized image.
IMGNORM_API void load_image(const std::string& path, const Recipe& recipe, Image& out,
                            DecodeInfo* info = nullptr, bool allow_truncated = false);

/// The version of this library ("0.1.0").
IMGNORM_API const char* version() noexcept;

}  // namespace imgnorm
