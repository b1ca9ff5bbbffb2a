#include "imgnorm/array.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "imgnorm/error.hpp"
#include "imgnorm/npy.hpp"

namespace imgnorm {

namespace {

void check_shape(const std::string& name, const std::vector<std::uint64_t>& sh, DType dtype) {
  if (sh.size() != 3 && sh.size() != 4)
    throw Error(ErrorCode::format, name + ": expected an NHWC array (N,H,W,C) or (N,H,W)");
  if (sh.size() == 3 && (sh[2] == 3 || sh[2] == 4))
    throw Error(ErrorCode::format,
                fmt::format("{}: shape ({},{},{}) looks like one HxWxC image, not N gray images; "
                            "save it as x[None] (1,H,W,C)",
                            name, sh[0], sh[1], sh[2]));
  if (sh[0] == 0) throw Error(ErrorCode::empty, name + ": the array has no rows");
  std::uint64_t c = sh.size() == 4 ? sh[3] : 1;
  if (c != 1 && c != 3)
    throw Error(
        ErrorCode::format,
        name + ": expected 1 or 3 channels in the last axis (NHWC), got " + std::to_string(c));
  if (sh[1] == 0 || sh[2] == 0 || sh[1] > 65535 || sh[2] > 65535)
    throw Error(ErrorCode::format, name + ": image size out of range");
  if (dtype != DType::uint8 && dtype != DType::float32 && dtype != DType::float64)
    throw Error(ErrorCode::format, name + ": dtype " + to_string(dtype) +
                                       " is not supported (uint8, float32 or float64)");
}

}  // namespace

ImageArray ImageArray::open_npy(const std::string& path) {
  ImageArray a;
  a.name_ = path;
  a.reader_ = std::make_shared<NpyReader>(path);
  const NpyHeader& h = a.reader_->header();
  check_shape(path, h.shape, h.dtype);
  a.dtype_ = h.dtype;
  a.rows_ = h.shape[0];
  a.height_ = static_cast<int>(h.shape[1]);
  a.width_ = static_cast<int>(h.shape[2]);
  a.channels_ = h.shape.size() == 4 ? static_cast<int>(h.shape[3]) : 1;
  return a;
}

ImageArray ImageArray::from_memory(const void* data, DType dtype, std::uint64_t rows, int height,
                                   int width, int channels, std::string name) {
  if (height < 0 || width < 0 || channels < 0)
    throw Error(ErrorCode::format, name + ": negative dimension");
  check_shape(name, {rows, std::uint64_t(height), std::uint64_t(width), std::uint64_t(channels)},
              dtype);
  ImageArray a;
  a.name_ = std::move(name);
  a.memory_ = static_cast<const std::uint8_t*>(data);
  a.dtype_ = dtype;
  a.rows_ = rows;
  a.height_ = height;
  a.width_ = width;
  a.channels_ = channels;
  return a;
}

ArrayRow ImageArray::row(std::uint64_t r, std::vector<std::uint8_t>& raw,
                         std::vector<double>& values) const {
  const std::size_t n = static_cast<std::size_t>(width_) * height_ * channels_;
  const std::size_t row_bytes = n * dtype_size(dtype_);
  const std::uint8_t* p = memory_ ? memory_ + r * row_bytes : nullptr;
  if (reader_) {
    raw.resize(row_bytes);
    reader_->read_rows(r, 1, raw.data());
    p = raw.data();
  }
  ArrayRow row;
  if (is_float()) {
    values.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (dtype_ == DType::float32) {
        float x;
        std::memcpy(&x, p + 4 * i, 4);
        values[i] = x;
      } else {
        std::memcpy(&values[i], p + 8 * i, 8);
      }
    }
    row.values = values.data();
  } else {
    row.u8 = ImageView{p, width_, height_, channels_, static_cast<std::size_t>(width_) * channels_};
  }
  return row;
}

void ImageArray::for_each_row(const std::function<void(std::uint64_t, const ArrayRow&)>& f,
                              const std::atomic<bool>* cancel) const {
  std::vector<std::uint8_t> raw;
  std::vector<double> values;
  for (std::uint64_t r = 0; r < rows_; ++r) {
    if (cancel && cancel->load()) throw Error(ErrorCode::interrupted, "interrupted");
    f(r, row(r, raw, values));
  }
}

void values_to_u8(const double* v, std::size_t n, std::uint64_t row, const std::string& name,
                  std::uint8_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    if (!(v[i] >= 0 && v[i] <= 255) || v[i] != std::floor(v[i]))
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: row {}: value {} is not a whole number in 0-255; --fit needs u8 "
                              "pixel values (compute the statistics elsewhere and use --stats)",
                              name, row, v[i]));
    out[i] = static_cast<std::uint8_t>(v[i]);
  }
}

}  // namespace imgnorm
