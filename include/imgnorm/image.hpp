#pragma once
/// \file image.hpp
/// 8-bit interleaved images: an owning, move-only Image and a non-owning ImageView with a row
/// stride.

#include <cstddef>
#include <cstdint>
#include <memory>

namespace imgnorm {

/// A non-owning view of an interleaved u8 image: `channels` bytes per pixel, rows `stride` bytes
/// apart (stride >= width * channels). Pixel (x, y), channel c is data[y * stride + x * channels +
/// c].
struct ImageView {
  const std::uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  int channels = 0;
  std::size_t stride = 0;

  const std::uint8_t* row(int y) const { return data + static_cast<std::size_t>(y) * stride; }
  bool empty() const { return width == 0 || height == 0; }
};

/// An owning, move-only, tightly packed (stride = width * channels) u8 image. `reset` reuses the
/// allocation when it is large enough, so a worker can decode image after image without allocating.
class Image {
 public:
  Image() = default;
  Image(int width, int height, int channels) { reset(width, height, channels); }
  Image(Image&&) noexcept = default;
  Image& operator=(Image&&) noexcept = default;
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;

  /// Sets the shape; contents are unspecified afterwards. Reallocates only when growing. The caller
  /// checks that width * height * channels does not overflow (decode does, from the header).
  void reset(int width, int height, int channels) {
    std::size_t need = static_cast<std::size_t>(width) * height * channels;
    if (need > capacity_) {
      data_.reset(new std::uint8_t[need]);
      capacity_ = need;
    }
    width_ = width;
    height_ = height;
    channels_ = channels;
  }

  int width() const { return width_; }
  int height() const { return height_; }
  int channels() const { return channels_; }
  std::size_t stride() const { return static_cast<std::size_t>(width_) * channels_; }
  std::size_t size_bytes() const { return stride() * height_; }
  std::uint8_t* data() { return data_.get(); }
  const std::uint8_t* data() const { return data_.get(); }
  std::uint8_t* row(int y) { return data_.get() + static_cast<std::size_t>(y) * stride(); }
  ImageView view() const { return {data_.get(), width_, height_, channels_, stride()}; }

 private:
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t capacity_ = 0;
  int width_ = 0;
  int height_ = 0;
  int channels_ = 0;
};

}  // namespace imgnorm
