#include "cli.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
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

std::string folder_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void print_error(const std::string& message) {
  std::fprintf(stderr, "imgnorm: %s\n", message.c_str());
}

void RecipeFlags::add_to(CLI::App& app) {
  app.add_option("--size", size, "Target size: N (square) or WxH, in pixels")
      ->capture_default_str();
  app.add_option("--resize", resize,
                 "stretch | crop (shorter side, center crop) | pad (letterbox) | none")
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
}

Recipe RecipeFlags::to_recipe(const CLI::App& app, Recipe r) const {
  auto given = [&](const char* name) { return app.count(name) > 0; };
  const bool all = r == Recipe{};
  if (all || given("--size")) r.size = parse_size(size);
  if (all || given("--resize")) r.resize = parse_resize_mode(resize);
  if (all || given("--interp")) r.interp = parse_interp(interp);
  if (channels_flag && (all || given("--channels"))) r.channels = parse_channel_order(channels);
  if (all || given("--pad-value")) r.pad_value = static_cast<std::uint8_t>(pad_value);
  if (all || given("--exact-decode")) r.exact_decode = exact_decode;
  if (all || given("--max-pixels")) r.max_pixels = max_pixels;
  return r;
}

void RunFlags::add_to(CLI::App& app) {
  app.add_option("--threads,-j", threads, "Worker threads, 1-1024 (default: all cores)")
      ->check(CLI::Range(0, 1024));
  app.add_flag("--quiet,-q", quiet, "No progress bar, no per-file warnings on stderr");
  app.add_flag("--progress", progress, "Progress bar on stderr even when it is not a terminal");
  app.add_flag("--allow-truncated", allow_truncated,
               "Decode truncated JPEGs as far as they go (grey fill) instead of skipping them");
}

PipelineOptions RunFlags::options(const char* label) const {
  PipelineOptions o;
  o.threads = threads;
  o.allow_truncated = allow_truncated;
  o.cancel = &g_cancel;
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

Dataset load_dataset(const std::string& input, const std::string& list_file) {
  return list_file.empty() ? scan_folder(input) : read_list(list_file);
}

void check_output_path(const std::string& path, bool force) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw Error(ErrorCode::io, path + ": is a folder");
    if (!force) throw Error(ErrorCode::io, path + ": already exists (use --force to replace it)");
  }
  std::string dir = folder_of(path);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(ErrorCode::io, path + ": folder " + dir + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0)
    throw Error(ErrorCode::io, path + ": folder " + dir + " is not writable");
}

void ensure_folder(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw Error(ErrorCode::io, dir + ": exists and is not a folder");
    return;
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw Error(ErrorCode::io, dir + ": cannot create folder: " + std::strerror(errno));
}

void write_file_atomic(const std::string& path, const std::string& text, bool force) {
  check_output_path(path, force);
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(ErrorCode::io, path + ": cannot create: " + std::strerror(errno));
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(ErrorCode::io, path + ": write failed: " + std::strerror(err));
    }
    off += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorCode::io, path + ": write failed: " + std::strerror(err));
  }
  if (g_cancel.load()) {
    ::unlink(tmp.c_str());
    throw Error(ErrorCode::interrupted, "interrupted");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorCode::io, path + ": cannot rename into place: " + std::strerror(err));
  }
}

}  // namespace imgnorm::cli
