// Atomic outputs: single files (AtomicFile), sets of files committed together (commit_files), the
// claimed output folder of a run (OutputFolder), the clean-up after dead runs, and bounded reads
// of text inputs.

#include "imgnorm/output.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "imgnorm/error.hpp"
#include "imgnorm/pipeline.hpp"
#include "output_hooks.hpp"

namespace imgnorm {

namespace detail {
int (*commit_rename_hook)(const char* from, const char* to) = nullptr;
}  // namespace detail

namespace {

std::atomic<unsigned> temp_counter{0};
std::string sys_error(int err) { return std::strerror(err); }

constexpr const char* kLockName = ".imgnorm.lock";
constexpr std::string_view kMarkerPrefix = ".imgnorm.commit-";

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string old_suffix(long pid) { return ".old-" + std::to_string(pid); }

// A rename of the commit protocol; 0 or the errno.
int commit_rename(const std::string& from, const std::string& to) {
  if (detail::commit_rename_hook)
    if (int err = detail::commit_rename_hook(from.c_str(), to.c_str())) return err;
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

// Decimal digits only (no sign, no spaces); 0 when `s` is not such a number.
long parse_number(std::string_view s) {
  if (s.empty() || s.size() > 9) return 0;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + (c - '0');
  }
  return v;
}

// The run `pid` of this host is gone (its pid may have been reused: then it looks alive, and its
// files stay, which is the safe mistake).
bool process_gone(long pid) {
  if (pid <= 0 || pid == static_cast<long>(::getpid())) return false;
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

// The owner of "<name>.tmp-<pid>-<n>" (0 when `entry` is not a temporary of `name`).
long temporary_owner(std::string_view entry, std::string_view name) {
  if (entry.size() <= name.size() || entry.substr(0, name.size()) != name) return 0;
  std::string_view rest = entry.substr(name.size());
  if (rest.substr(0, 5) != ".tmp-") return 0;
  rest.remove_prefix(5);
  const auto dash = rest.find('-');
  if (dash == std::string_view::npos || rest.substr(dash + 1).empty() ||
      rest.substr(dash + 1).find_first_not_of("0123456789") != std::string_view::npos)
    return 0;
  return parse_number(rest.substr(0, dash));
}

std::vector<std::string> folder_entries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (const dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  return names;
}

bool lexists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

const char* file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  return "not a plain file";
}

std::string size_text(std::uint64_t bytes) {
  if (bytes >= (1u << 30) && bytes % (1u << 30) == 0) return std::to_string(bytes >> 30) + " GiB";
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

}  // namespace

std::string folder_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

// ---- AtomicFile ----

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  temp_path_ = path_ + ".tmp-" + std::to_string(::getpid()) + "-" +
               std::to_string(temp_counter.fetch_add(1));
  fd_ = ::open(temp_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    const int err = errno;
    temp_path_.clear();  // not ours: never remove it
    throw Error(ErrorCode::io, path_ + ": cannot create: " + sys_error(err));
  }
}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : path_(std::move(o.path_)), temp_path_(std::move(o.temp_path_)), fd_(o.fd_) {
  o.fd_ = -1;
  o.temp_path_.clear();
}

AtomicFile::~AtomicFile() { discard(); }

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  temp_path_.clear();
}

void AtomicFile::fail(const char* what, int err) {
  discard();
  throw Error(ErrorCode::io, path_ + ": " + what + ": " + sys_error(err));
}

void AtomicFile::write(const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write failed", n < 0 ? errno : EIO);
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void AtomicFile::close_for_commit(bool sync) {
  if (fd_ < 0) return;
  if (sync && ::fsync(fd_) != 0) fail("cannot sync", errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("write failed", errno);
}

void AtomicFile::commit(bool sync) {
  close_for_commit(sync);
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("cannot rename into place", errno);
  temp_path_.clear();
}

// ---- sets of files ----

void commit_set(const std::vector<AtomicFile*>& files, const std::vector<std::string>& remove,
                const std::string& marker, bool sync);

// The set commit (see commit_files). `marker` (empty: none) is written before the first rename
// and removed at the commit point, so that OutputFolder::recover() can roll back a commit whose
// process died half-way.
void commit_set(const std::vector<AtomicFile*>& files, const std::vector<std::string>& remove,
                const std::string& marker, bool sync) {
  // A write error that only close() or fsync() reports fails the commit before any rename.
  for (AtomicFile* f : files) f->close_for_commit(sync);
  std::vector<std::string> targets;
  for (AtomicFile* f : files) targets.push_back(f->path());
  for (const auto& r : remove)
    if (std::find(targets.begin(), targets.end(), r) == targets.end()) targets.push_back(r);
  std::vector<char> had_old(targets.size(), 0), aside(targets.size(), 0);
  for (std::size_t k = 0; k < targets.size(); ++k) {
    struct stat st {};
    if (::lstat(targets[k].c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) throw Error(ErrorCode::io, targets[k] + ": is a folder");
      had_old[k] = 1;
    } else if (errno != ENOENT) {
      throw Error(ErrorCode::io, targets[k] + ": " + sys_error(errno));
    }
  }
  const std::string suffix = old_suffix(::getpid());
  if (!marker.empty()) {
    std::string text;
    for (std::size_t k = 0; k < targets.size(); ++k)
      text += base_name(targets[k]) + (had_old[k] ? " old\n" : " none\n");
    AtomicFile m(marker);
    m.write(text.data(), text.size());
    m.close_for_commit(sync);
    if (int err = commit_rename(m.temp_path_, marker))
      m.fail("cannot write the commit marker", err);
    m.temp_path_.clear();
  }
  std::size_t moved_in = 0;
  // Puts the old set back; keeps the marker when that fails too, for the next run to finish.
  auto roll_back = [&]() noexcept {
    bool restored = true;
    for (std::size_t k = 0; k < moved_in; ++k) {
      ::unlink(targets[k].c_str());
      files[k]->temp_path_.clear();
    }
    for (std::size_t k = 0; k < targets.size(); ++k)
      if (aside[k] && ::rename((targets[k] + suffix).c_str(), targets[k].c_str()) != 0)
        restored = false;
    if (restored && !marker.empty()) ::unlink(marker.c_str());
  };
  // Old files aside, the "complete" one (last) first; new files in, the "complete" one last.
  for (std::size_t k = targets.size(); k-- > 0;) {
    if (!had_old[k]) continue;
    if (int err = commit_rename(targets[k], targets[k] + suffix)) {
      roll_back();
      throw Error(ErrorCode::io,
                  targets[k] + ": cannot move the old file aside: " + sys_error(err));
    }
    aside[k] = 1;
  }
  for (; moved_in < files.size(); ++moved_in) {
    if (int err = commit_rename(files[moved_in]->temp_path_, targets[moved_in])) {
      roll_back();
      throw Error(ErrorCode::io, targets[moved_in] + ": cannot rename into place: " +
                                     sys_error(err) + " (the previous files were kept)");
    }
  }
  // The commit point.
  for (AtomicFile* f : files) f->temp_path_.clear();
  if (!marker.empty()) ::unlink(marker.c_str());
  for (std::size_t k = 0; k < targets.size(); ++k)
    if (aside[k]) ::unlink((targets[k] + suffix).c_str());
}

void commit_files(const std::vector<AtomicFile*>& files, const std::vector<std::string>& remove,
                  bool sync) {
  commit_set(files, remove, "", sync);
}

// ---- the output folder ----

OutputFolder::OutputFolder(std::string dir, std::vector<std::string> names)
    : names_(std::move(names)) {
  if (dir.empty()) throw Error(ErrorCode::invalid_argument, "no output folder given");
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  dir_ = std::move(dir);
  const std::string lock = path(kLockName);
  for (int attempt = 0;; ++attempt) {
    struct stat st {};
    if (::stat(dir_.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) throw Error(ErrorCode::io, dir_ + ": exists and is not a folder");
    } else if (::mkdir(dir_.c_str(), 0777) == 0) {
      created_ = true;
    } else if (errno != EEXIST) {
      const int err = errno;
      if (err == ENOENT || err == ENOTDIR)
        throw Error(ErrorCode::io,
                    dir_ + ": cannot create it: folder " + folder_of(dir_) + " does not exist");
      throw Error(ErrorCode::io, dir_ + ": cannot create folder: " + sys_error(err));
    }
    int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) {
      const int err = errno;
      // The run that held the folder had created it, failed and removed it meanwhile.
      if (err == ENOENT && attempt < 10) continue;
      if (created_) ::rmdir(dir_.c_str());
      throw Error(ErrorCode::io, dir_ + ": cannot write in this folder: " + sys_error(err));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err == EWOULDBLOCK) {
        char buf[24] = {};
        ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
        ::close(fd);
        std::string_view text(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
        const long pid = parse_number(text.substr(0, text.find('\n')));
        throw Error(ErrorCode::io, dir_ + ": in use by another imgnorm run" +
                                       (pid ? " (pid " + std::to_string(pid) + ")" : "") +
                                       "; wait for it to finish or write elsewhere");
      }
      // File systems without locks (some FUSE mounts): the folder is written unclaimed.
      if (err != ENOLCK && err != EOPNOTSUPP && err != ENOSYS) {
        ::close(fd);
        if (created_) ::rmdir(dir_.c_str());
        throw Error(ErrorCode::io, lock + ": cannot lock: " + sys_error(err));
      }
    }
    // The holder removes the lock file before it lets go: if it did so between our open() and
    // our flock(), we hold a lock on a file nobody else sees. Start again.
    struct stat mine {
    }, now{};
    if (::fstat(fd, &mine) != 0 || ::stat(lock.c_str(), &now) != 0 || mine.st_ino != now.st_ino ||
        mine.st_dev != now.st_dev) {
      ::close(fd);
      if (attempt < 10) continue;
      throw Error(ErrorCode::io, lock + ": cannot lock: the lock file keeps changing");
    }
    lock_fd_ = fd;
    break;
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0) {
    // Only the "in use" message reads it.
  }
  recover();
}

OutputFolder::~OutputFolder() {
  if (lock_fd_ >= 0) {
    ::unlink(path(kLockName).c_str());  // while still holding the lock (see the constructor)
    ::close(lock_fd_);
  }
  if (created_ && !committed_) ::rmdir(dir_.c_str());  // only when empty
}

void OutputFolder::recover() {
  auto member = [&](std::string_view s) {
    return std::find(names_.begin(), names_.end(), s) != names_.end();
  };
  // A commit that a dead run left half done: roll it back to the old set.
  for (const std::string& e : folder_entries(dir_)) {
    if (e.compare(0, kMarkerPrefix.size(), kMarkerPrefix) != 0) continue;
    const long pid = parse_number(std::string_view(e).substr(kMarkerPrefix.size()));
    if (!process_gone(pid)) continue;
    std::string text;
    try {
      text = read_text_file(path(e), 1 << 16, "commit marker");
    } catch (const Error&) {
      continue;
    }
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      const auto space = line.rfind(' ');
      if (space == std::string_view::npos || !member(line.substr(0, space))) continue;
      const std::string target = path(std::string(line.substr(0, space)));
      const std::string old = target + old_suffix(pid);
      if (line.substr(space + 1) == "old") {
        if (lexists(old)) ::rename(old.c_str(), target.c_str());
      } else {
        ::unlink(target.c_str());
      }
    }
    ::unlink(path(e).c_str());
  }
  // Temporaries of dead runs, and old files of dead runs whose commit was complete.
  for (const std::string& e : folder_entries(dir_)) {
    for (const std::string& name : names_) {
      long pid = temporary_owner(e, name);
      if (!pid && e.size() > name.size() && e.compare(0, name.size(), name) == 0 &&
          e.compare(name.size(), 5, ".old-") == 0)
        pid = parse_number(std::string_view(e).substr(name.size() + 5));
      if (pid && process_gone(pid)) ::unlink(path(e).c_str());
    }
    if (e.compare(0, kMarkerPrefix.size(), kMarkerPrefix) == 0) {
      const auto dot = e.find('.', kMarkerPrefix.size());
      if (dot != std::string::npos) {
        const long pid = temporary_owner(e, std::string_view(e).substr(0, dot));
        if (pid && process_gone(pid)) ::unlink(path(e).c_str());
      }
    }
  }
}

void OutputFolder::check_existing(bool force) const {
  for (const std::string& name : names_) {
    const std::string p = path(name);
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) throw Error(ErrorCode::io, p + ": is a folder");
    if (!force) throw Error(ErrorCode::io, p + ": already exists (use --force to replace it)");
  }
}

void OutputFolder::commit(const std::vector<AtomicFile*>& files, bool sync) {
  std::vector<std::string> remove;
  for (const std::string& name : names_) remove.push_back(path(name));
  commit_set(files, remove, path(std::string(kMarkerPrefix) + std::to_string(::getpid())), sync);
  committed_ = true;
}

// ---- single files ----

int remove_stale_temporaries(const std::string& path) {
  const std::string dir = folder_of(path), name = base_name(path);
  int removed = 0;
  for (const std::string& e : folder_entries(dir)) {
    const long pid = temporary_owner(e, name);
    if (pid && process_gone(pid) && ::unlink((dir + "/" + e).c_str()) == 0) ++removed;
  }
  return removed;
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
  remove_stale_temporaries(path);
}

void ensure_folder(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw Error(ErrorCode::io, dir + ": exists and is not a folder");
    return;
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw Error(ErrorCode::io, dir + ": cannot create folder: " + sys_error(errno));
}

void write_file_atomic(const std::string& path, const std::string& text, bool force,
                       const std::atomic<bool>* cancel) {
  check_output_path(path, force);
  AtomicFile file(path);
  file.write(text.data(), text.size());
  if (cancel && cancel->load()) {
    file.discard();
    throw Error(ErrorCode::interrupted, "interrupted");
  }
  file.commit();
}

// ---- text inputs ----

std::string read_text_file(const std::string& path, std::uint64_t max_bytes, const char* what,
                           bool allow_pipe) {
  int fd;
  // O_NONBLOCK: opening a FIFO without a writer must not hang.
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    throw Error(ErrorCode::io, path + ": cannot open the " + what + ": " + sys_error(err));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw Error(ErrorCode::io, path + ": cannot stat: " + sys_error(errno));
  const bool pipe = S_ISFIFO(st.st_mode) && allow_pipe;
  if (!S_ISREG(st.st_mode) && !pipe)
    throw Error(ErrorCode::io, path + ": not a regular file (" + file_kind(st.st_mode) + ")");
  auto too_large = [&] {
    throw Error(ErrorCode::too_large,
                path + ": larger than " + size_text(max_bytes) + ", the limit for a " + what);
  };
  if (!pipe && static_cast<std::uint64_t>(st.st_size) > max_bytes) too_large();
  if (pipe) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  std::string text;
  if (!pipe) text.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::io, path + ": cannot read: " + sys_error(errno));
    }
    if (n == 0) break;
    if (text.size() + static_cast<std::size_t>(n) > max_bytes) too_large();
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

void check_free_space(const std::string& dir, std::uint64_t bytes, const std::string& what) {
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0 || fs.f_frsize == 0) return;
  const std::uint64_t free_bytes = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (bytes <= free_bytes) return;
  throw Error(ErrorCode::io, dir + ": " + what + " needs " + std::to_string(bytes) + " bytes (" +
                                 memory_size_text(bytes) + "), but its filesystem has only " +
                                 std::to_string(free_bytes) + " bytes (" +
                                 memory_size_text(free_bytes) + ") free");
}

}  // namespace imgnorm
