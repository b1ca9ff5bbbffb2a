#pragma once
// Reading a whole file into a buffer that a worker keeps from file to file (src/ only).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace imgnorm::detail {

/// The bytes of the last file read: a grow-only allocation that is never value-initialised
/// (std::vector::resize would zero every byte before the read overwrites it), reused from file to
/// file. Move-only.
class FileBytes {
 public:
  const std::uint8_t* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  /// Frees the allocation (after an unusually large file).
  void release() noexcept {
    data_.reset();
    capacity_ = 0;
    size_ = 0;
  }

 private:
  friend void read_file(const std::string& path, FileBytes& out);
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

/// As imgnorm::read_file (the same checks and messages), into `out`: one pread into the reused
/// allocation, grown (without zeroing) only when the file is larger than any before.
void read_file(const std::string& path, FileBytes& out);

}  // namespace imgnorm::detail
