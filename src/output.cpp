#include "imgnorm/output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "imgnorm/error.hpp"
#include "imgnorm/pipeline.hpp"

namespace imgnorm {

namespace {
std::atomic<unsigned> temp_counter{0};
std::string sys_error(int err) { return std::strerror(err); }
}  // namespace

std::string folder_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  temp_path_ = path_ + ".tmp-" + std::to_string(::getpid()) + "-" +
               std::to_string(temp_counter.fetch_add(1));
  fd_ = ::open(temp_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0) throw Error(ErrorCode::io, path_ + ": cannot create: " + sys_error(errno));
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

void AtomicFile::commit(bool sync) {
  if (sync && ::fsync(fd_) != 0) fail("cannot sync", errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("write failed", errno);
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("cannot rename into place", errno);
  temp_path_.clear();
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
