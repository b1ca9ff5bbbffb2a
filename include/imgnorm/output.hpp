#pragma once
/// \file output.hpp
/// Outputs are committed whole or not at all: every file imgnorm writes (stats.json, .npy arrays,
/// manifest.json) is written under a temporary name in its own folder and renamed into place when
/// complete. An interrupted or failed run leaves no file that looks whole.
///
///     imgnorm::check_output_path("out/stats.json", force);   // before any work
///     ...
///     imgnorm::write_file_atomic("out/stats.json", text, force);

#include <atomic>
#include <cstdint>
#include <string>

#include "imgnorm/export.hpp"

namespace imgnorm {

/// A file being written under a temporary name next to its final path
/// ("<path>.tmp-<pid>-<n>"). commit() renames it into place; destroying it uncommitted removes the
/// temporary. Move-only.
class IMGNORM_API AtomicFile {
 public:
  /// Creates the temporary file (O_EXCL, mode 0666 & ~umask). Throws Error(io) naming `path`.
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// The open descriptor of the temporary (read-write); -1 after commit() or discard().
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

  /// Writes all of `size` bytes at the current offset. Throws Error(io) (and discards).
  void write(const void* data, std::size_t size);
  /// Optional fsync, close, then rename to path(). Throws Error(io) (the temporary is removed).
  void commit(bool sync = false);
  /// Closes and removes the temporary now.
  void discard() noexcept;
  /// Discards, then throws Error(io) "path: what: strerror(err)".
  [[noreturn]] void fail(const char* what, int err);

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
};

/// Refuses early (before any work) with Error(io) when `path` is a folder, exists and !force, or
/// its folder is missing or not writable.
IMGNORM_API void check_output_path(const std::string& path, bool force);

/// Creates `dir` (one level) when it is missing; Error(io) naming it when that fails or it exists
/// and is not a folder.
IMGNORM_API void ensure_folder(const std::string& dir);

/// Writes `text` to `path` through an AtomicFile. Refuses to replace an existing file unless
/// `force` (checked again here). When `cancel` is raised before the rename, the temporary is
/// removed and Error(interrupted) thrown.
IMGNORM_API void write_file_atomic(const std::string& path, const std::string& text, bool force,
                                   const std::atomic<bool>* cancel = nullptr);

/// Refuses with Error(io) before writing when the filesystem of folder `dir` has fewer than
/// `bytes` bytes free for this user (statvfs f_bavail): the message names `what`, the bytes it
/// needs and the bytes free. Silent when the free space cannot be read.
IMGNORM_API void check_free_space(const std::string& dir, std::uint64_t bytes,
                                  const std::string& what);

/// The folder part of a path: "a/b.json" → "a", "b.json" → ".", "/b" → "/".
IMGNORM_API std::string folder_of(const std::string& path);

}  // namespace imgnorm
