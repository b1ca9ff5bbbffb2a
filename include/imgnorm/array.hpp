#pragma once
/// \file array.hpp
/// Images already in an array: N images of one size, NHWC (or NHW for gray), uint8 pixels or
/// float32/float64 values in 0–255 units. Either a .npy file, read a row at a time (never whole),
/// or memory the caller owns (a numpy array).
///
///     auto a = imgnorm::ImageArray::open_npy("train_u8.npy");
///     a.for_each_row([&](std::uint64_t r, const imgnorm::ArrayRow& row) { ... }, nullptr);

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "imgnorm/dtype.hpp"
#include "imgnorm/export.hpp"
#include "imgnorm/image.hpp"

namespace imgnorm {

class NpyReader;

/// One row of an ImageArray, valid during the callback only.
struct ArrayRow {
  ImageView u8;                    ///< the pixels, for uint8 arrays
  const double* values = nullptr;  ///< H×W×C values in 0–255 units, for float arrays
};

class IMGNORM_API ImageArray {
 public:
  /// Opens and checks a .npy file: rank 4 (N,H,W,C) with C 1 or 3, or rank 3 (N,H,W) gray; dtype
  /// uint8, float32 or float64; N >= 1; H and W 1–65535. Error(format) or Error(empty) naming
  /// `path` otherwise (an (H,W,3) array is refused as one image, not N gray ones).
  static ImageArray open_npy(const std::string& path);
  /// A view of memory the caller owns and keeps alive: rows·height·width·channels elements of
  /// `dtype` (uint8, float32 or float64), C order. `name` is used in messages. The same checks.
  static ImageArray from_memory(const void* data, DType dtype, std::uint64_t rows, int height,
                                int width, int channels, std::string name = "array");

  const std::string& name() const { return name_; }
  DType dtype() const { return dtype_; }
  bool is_float() const { return dtype_ != DType::uint8; }
  std::uint64_t rows() const { return rows_; }
  int width() const { return width_; }
  int height() const { return height_; }
  int channels() const { return channels_; }

  /// Row r (r < rows()). `raw` and `values` are the caller's scratch buffers (reused, so a
  /// worker allocates once); the row is valid while they are. Thread-safe.
  ArrayRow row(std::uint64_t r, std::vector<std::uint8_t>& raw, std::vector<double>& values) const;

  /// Calls f(row index, row) for every row in order. Checks `cancel` before each row and throws
  /// Error(interrupted) when it is raised.
  void for_each_row(const std::function<void(std::uint64_t, const ArrayRow&)>& f,
                    const std::atomic<bool>* cancel = nullptr) const;

 private:
  ImageArray() = default;
  std::string name_;
  std::shared_ptr<NpyReader> reader_;
  const std::uint8_t* memory_ = nullptr;
  DType dtype_ = DType::uint8;
  std::uint64_t rows_ = 0;
  int width_ = 0, height_ = 0, channels_ = 0;
};

/// Whole values 0–255 of a float row as u8 (what the exact statistics are defined on). Throws
/// Error(invalid_argument) "<name>: row R: value V is not a whole number in 0-255; ..." otherwise.
IMGNORM_API void values_to_u8(const double* values, std::size_t n, std::uint64_t row,
                              const std::string& name, std::uint8_t* out);

}  // namespace imgnorm
