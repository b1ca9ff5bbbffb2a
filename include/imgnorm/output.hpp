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
#include <vector>

#include "imgnorm/export.hpp"

namespace imgnorm {

/// A file being written under a temporary name next to its final path
/// ("<path>.tmp-<pid>-<n>"; the pid lets a later run tell that the owner is gone and remove it).
/// commit() renames it into place; destroying it uncommitted removes the temporary. Several files
/// that belong together are committed with commit_files() or OutputFolder::commit(). Move-only.
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
  friend void commit_set(const std::vector<AtomicFile*>&, const std::vector<std::string>&,
                         const std::string&, bool);
  void close_for_commit(bool sync);

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
};

/// Refuses early (before any work) with Error(io) when `path` is a folder, exists and !force, or
/// its folder is missing or not writable. Also removes the temporaries of `path` that dead runs
/// left (remove_stale_temporaries).
IMGNORM_API void check_output_path(const std::string& path, bool force);

/// Removes the temporaries "<path>.tmp-<pid>-<n>" of AtomicFiles whose process `pid` is gone
/// (kill(pid, 0) fails with ESRCH), e.g. after a SIGKILL. PIDs are those of this host: a folder
/// shared by several hosts must not be written by two of them at once. Returns how many files
/// were removed.
IMGNORM_API int remove_stale_temporaries(const std::string& path);

/// Commits complete AtomicFiles (not yet committed, each in its final folder) as one set, in the
/// order given (put the file whose presence means "the set is complete" last): existing files at
/// their paths and at the paths in `remove` are renamed aside ("<path>.old-<pid>"), the new files
/// renamed into place, then the old ones deleted. So the paths hold either the old set or the new
/// one, never a mix of two runs; a reader that opens them during the commit (microseconds) may
/// find some missing. When a rename fails, everything already renamed is put back (the old set
/// restored, the temporaries removed) and Error(io) names the path. `sync`: fsync the files first.
IMGNORM_API void commit_files(const std::vector<AtomicFile*>& files,
                              const std::vector<std::string>& remove = {}, bool sync = false);

/// The output folder of one run, claimed for the whole run (`imgnorm normalize -o DIR`).
///
///     imgnorm::OutputFolder out("out", {"images.npy", "labels.npy", "manifest.json"});
///     out.check_existing(force);                 // before any work
///     imgnorm::AtomicFile m(out.path("manifest.json"));
///     ...
///     out.commit({&m});                          // the other members of the set are removed
///
/// Two runs into the same folder: the second fails at once with Error(io) "DIR: in use by another
/// imgnorm run (pid N)". A run that was killed (SIGKILL, power loss) leaves its temporaries, and
/// perhaps a commit half done; the next run that claims the folder removes the temporaries and
/// rolls such a commit back to the old set.
class IMGNORM_API OutputFolder {
 public:
  /// Claims `dir`: creates it when missing (its parent must be a folder; Error(io) otherwise),
  /// takes an exclusive lock (flock) on DIR/.imgnorm.lock, then cleans up after dead runs.
  /// `names` are the members of the set (plain file names in DIR).
  OutputFolder(std::string dir, std::vector<std::string> names);
  /// Releases the folder and removes the lock file; a folder this run created is removed again
  /// unless commit() succeeded (so a failed run leaves nothing).
  ~OutputFolder();
  OutputFolder(const OutputFolder&) = delete;
  OutputFolder& operator=(const OutputFolder&) = delete;

  /// The folder as given, without a trailing slash.
  const std::string& dir() const { return dir_; }
  /// DIR/name.
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  /// Error(io) naming the first member of the set that is a folder, or exists and !force.
  void check_existing(bool force) const;
  /// Commits `files` (members of the set, in order; last = "complete") as the set, removing the
  /// members not among them, as commit_files() does. A commit cut short by the death of the
  /// process is rolled back by the next run (a marker file, ".imgnorm.commit-<pid>", lists what
  /// the old set held while the renames run).
  void commit(const std::vector<AtomicFile*>& files, bool sync = false);

 private:
  std::string dir_;
  std::vector<std::string> names_;
  int lock_fd_ = -1;
  bool created_ = false;
  bool committed_ = false;
  void recover();
};

/// Creates `dir` (one level) when it is missing; Error(io) naming it when that fails or it exists
/// and is not a folder.
IMGNORM_API void ensure_folder(const std::string& dir);

/// Writes `text` to `path` through an AtomicFile. Refuses to replace an existing file unless
/// `force` (checked again here). When `cancel` is raised before the rename, the temporary is
/// removed and Error(interrupted) thrown.
IMGNORM_API void write_file_atomic(const std::string& path, const std::string& text, bool force,
                                   const std::atomic<bool>* cancel = nullptr);

/// Reads a whole text input (a list file, stats.json, manifest.json) of at most `max_bytes`.
/// Refuses what is not a regular file (a folder, a device such as /dev/zero, a socket, a FIFO:
/// opening never blocks) with Error(io) "path: not a regular file (...)", except a pipe when
/// `allow_pipe` (a shell's `<(cmd)`, read to its end); Error(too_large) when it is larger than
/// `max_bytes`. `what` names the input in that message ("list file").
IMGNORM_API std::string read_text_file(const std::string& path, std::uint64_t max_bytes,
                                       const char* what, bool allow_pipe = false);

/// The largest list file, stats.json or manifest.json imgnorm reads: 1 GiB.
inline constexpr std::uint64_t kMaxTextFileBytes = std::uint64_t(1) << 30;
/// Refuses with Error(io) before writing when the filesystem of folder `dir` has fewer than
/// `bytes` bytes free for this user (statvfs f_bavail): the message names `what`, the bytes it
/// needs and the bytes free. Silent when the free space cannot be read.
IMGNORM_API void check_free_space(const std::string& dir, std::uint64_t bytes,
                                  const std::string& what);

/// The folder part of a path: "a/b.json" → "a", "b.json" → ".", "/b" → "/".
IMGNORM_API std::string folder_of(const std::string& path);

}  // namespace imgnorm
