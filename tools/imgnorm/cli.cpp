#include "cli.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "imgnorm/error.hpp"

namespace imgnorm::cli {

std::atomic<bool> g_cancel{false};

namespace {
void on_signal(int) { g_cancel.store(true); }
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void print_error(const std::string& message) {
  std::fprintf(stderr, "imgnorm: %s\n", printable(message).c_str());
}

void print_skipped(const std::string& path, const std::string& reason) {
  std::fprintf(stderr, "imgnorm: skipped %s: %s\n", printable(path).c_str(),
               printable(reason).c_str());
}

void print_warning(const std::string& message) {
  std::fprintf(stderr, "imgnorm: warning: %s\n", printable(message).c_str());
}

void RecipeFlags::add_to(CLI::App& app) {
  app.add_option("--size", size,
                 "Target size: N (square) or WxH, in pixels (with --resize none: the images' own)")
      ->capture_default_str();
  app.add_option("--resize", resize,
                 "stretch | crop (shorter side, center crop) | pad (letterbox) | none (keep the "
                 "size; all images must agree)")
      ->capture_default_str();
  app.add_option("--interp", interp, "linear (= cv2.resize) | area | nearest | cubic | lanczos")
      ->capture_default_str();
  app.add_option("--pad-value", pad_value, "Background of --resize pad, 0-255")
      ->check(CLI::Range(0, 255))
      ->capture_default_str();
  if (channels_flag)
    app.add_option("--channels", channels, "rgb | bgr | gray")->capture_default_str();
  app.add_flag("--exact-decode", exact_decode,
               "Decode JPEGs at full size as cv2.imread does (no DCT-domain downscaling)");
  app.add_option("--max-pixels", max_pixels,
                 "Refuse images whose header declares more pixels than this")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--alpha", alpha,
                 "Transparent PNG/WebP pixels: drop the alpha (as cv2.imread) | composite onto "
                 "white | black | R,G,B (0-255)")
      ->capture_default_str();
}

RecipeOverrides RecipeFlags::overrides(const CLI::App& app) const {
  auto given = [&](const char* name) { return app.count(name) > 0; };
  RecipeOverrides o;
  if (given("--size")) o.size = parse_size(size);
  if (given("--resize")) o.resize = parse_resize_mode(resize);
  if (given("--interp")) o.interp = parse_interp(interp);
  if (channels_flag && given("--channels")) o.channels = parse_channel_order(channels);
  if (given("--pad-value")) o.pad_value = static_cast<std::uint8_t>(pad_value);
  if (given("--exact-decode")) o.exact_decode = exact_decode;
  if (given("--max-pixels")) o.max_pixels = max_pixels;
  if (given("--alpha")) o.alpha = parse_alpha(alpha);
  return o;
}

void RunFlags::add_to(CLI::App& app) {
  app.add_option("--threads,-j", threads, "Worker threads, 1-1024; 0 (the default): all cores")
      ->check(CLI::Range(0, 1024));
  app.add_flag("--quiet,-q", quiet, "No progress bar, no per-file warnings on stderr");
  app.add_flag("--progress", progress, "Progress bar on stderr even when it is not a terminal");
  app.add_flag("--allow-truncated", allow_truncated,
               "Decode truncated JPEGs as far as they go (grey fill) instead of skipping them");
  app.add_option(
      "--max-memory", max_memory,
      "Memory for the images in flight, e.g. 2G, 512M: more images wait instead of "
      "failing; also the limit of the pixel covariance and of the zca/pca fit, "
      "refused beyond it (default: half of the physical memory or of the container's limit, "
      "here " +
          memory_size_text(default_max_memory()) + ")");
}

PipelineOptions RunFlags::options(const char* label, bool report_skips) const {
  PipelineOptions o;
  o.threads = threads > 0 ? threads : default_threads();
  o.allow_truncated = allow_truncated;
  if (!max_memory.empty()) o.max_memory = parse_memory_size(max_memory, "--max-memory");
  o.cancel = &g_cancel;
  if (report_skips && !quiet)
    o.on_skip = [](const std::string& path, const Error& e) { print_skipped(path, e.what()); };
  const bool show = !quiet && (progress || isatty(STDERR_FILENO));
  if (show) {
    auto start = std::chrono::steady_clock::now();
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    std::string name = label;
    o.progress = [start, last, name](std::size_t done, std::size_t total) {
      auto now = std::chrono::steady_clock::now();
      if (done != total && now - *last < std::chrono::milliseconds(100)) return;
      *last = now;
      double secs = std::chrono::duration<double>(now - start).count();
      int width = 30;
      int filled = total ? static_cast<int>(width * done / total) : width;
      std::string bar(filled, '#');
      bar.resize(width, '.');
      double rate = secs > 0 ? done / secs : 0;
      std::fprintf(stderr, "\r%s [%s] %zu/%zu  %.0f img/s  %.1fs", name.c_str(), bar.c_str(), done,
                   total, rate, secs);
      if (done == total) std::fputc('\n', stderr);
      std::fflush(stderr);
    };
  }
  return o;
}

}  // namespace imgnorm::cli
