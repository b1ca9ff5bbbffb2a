#pragma once
/// \file npy.hpp
/// NumPy .npy files (format versions 1.0, 2.0 and 3.0; C order only): a validating reader for
/// hostile input and a streaming writer that fills rows in any order from several threads, writes
/// to a temporary file next to the target and renames it into place when complete.
///
///     imgnorm::NpyWriter w("out/images.npy", imgnorm::DType::float32, {n, 224, 224, 3});
///     w.write_rows(i, slot, 1);  // from any thread, distinct rows
///     w.set_rows(n - skipped);   // optional: fewer rows than planned
///     w.commit();                // out/images.npy appears only now

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "imgnorm/dtype.hpp"
#include "imgnorm/export.hpp"
#include "imgnorm/output.hpp"

namespace imgnorm {

/// The little-endian descr written to headers: "|u1", "<f4", "|b1", ...
IMGNORM_API const char* npy_descr(DType dtype) noexcept;

/// Header fields larger than this are refused (numpy itself refuses more than 10,000 bytes unless
/// told otherwise).
inline constexpr std::size_t kMaxNpyHeaderBytes = 1 << 20;
/// numpy's own limit on the number of dimensions.
inline constexpr std::size_t kMaxNpyDims = 64;

/// A parsed, validated .npy header.
struct IMGNORM_API NpyHeader {
  int version_major = 1;  ///< 1, 2 or 3
  DType dtype = DType::uint8;
  bool big_endian = false;           ///< data bytes are big-endian (descr starts with '>')
  std::vector<std::uint64_t> shape;  ///< C order; empty for a 0-d array
  std::size_t data_offset = 0;       ///< bytes from the start of the file to the first element
  std::uint64_t count = 1;           ///< product of shape (checked for overflow)
  std::uint64_t data_bytes = 0;      ///< count · itemsize (checked for overflow)

  /// Bytes of one row (product of shape[1:] · itemsize); the element size for a 0-d array.
  std::uint64_t row_bytes() const;
};

/// Parses the header at the start of `data` (the whole file or at least its header). Throws
/// Error(format) with a short reason: bad magic, unknown version, header length out of bounds or
/// past `size`, malformed dict, missing or unknown keys, unsupported descr, fortran_order True,
/// negative or overflowing shape. Never reads outside [data, data + size). The caller checks the
/// file size against data_offset + data_bytes.
IMGNORM_API NpyHeader parse_npy_header(const std::uint8_t* data, std::size_t size);

/// Reads only the header of a file; errors name the file.
IMGNORM_API NpyHeader read_npy_header(const std::string& path);

/// A whole array in memory: elements in native byte order, C order.
struct NpyArray {
  NpyHeader header;
  std::vector<std::uint8_t> data;  ///< header.data_bytes bytes

  /// Typed view of the data; T must match header.dtype's size (asserted).
  template <typename T>
  const T* as() const {
    return reinterpret_cast<const T*>(data.data());
  }
};

/// Reads a whole .npy file. The file size must equal data_offset + data_bytes exactly (truncated
/// files and trailing garbage are refused) and big-endian data is converted to native order.
/// Errors are Error(format) or Error(io) of the form "path: what went wrong".
IMGNORM_API NpyArray read_npy(const std::string& path);

/// Reads rows of a large .npy file on demand (pread: several threads may read at once).
class IMGNORM_API NpyReader {
 public:
  /// Opens and validates `path` (header and exact file size).
  explicit NpyReader(const std::string& path);
  ~NpyReader();
  NpyReader(const NpyReader&) = delete;
  NpyReader& operator=(const NpyReader&) = delete;

  const NpyHeader& header() const { return header_; }
  /// Number of rows: shape[0] (1 for a 0-d array).
  std::uint64_t rows() const;
  /// Copies rows [first, first + n) into `out` (n · header().row_bytes() bytes, native byte order).
  /// Throws Error(invalid_argument) when the range is outside the array, Error(io) on read errors.
  void read_rows(std::uint64_t first, std::uint64_t n, void* out) const;

 private:
  std::string path_;
  int fd_ = -1;
  NpyHeader header_;
};

/// Writes a .npy file (version 1.0, C order) row by row. The data goes to a temporary file in the
/// same folder ("<path>.tmp-<pid>-<n>"), which commit() renames to `path`; destroying the writer
/// without commit() removes the temporary, so a failed or interrupted run leaves no partial file.
class IMGNORM_API NpyWriter {
 public:
  /// Creates the temporary file, sized for the whole array (space is reserved up front where the
  /// file system allows, so a full disk is reported here rather than halfway through). shape may
  /// not be empty; shape[0] is the number of rows. Throws Error(io) naming `path`, or
  /// Error(invalid_argument) for an overflowing shape.
  NpyWriter(std::string path, DType dtype, std::vector<std::uint64_t> shape);
  ~NpyWriter();
  NpyWriter(const NpyWriter&) = delete;
  NpyWriter& operator=(const NpyWriter&) = delete;

  /// Writes rows [first, first + n) from `data` (n · row_bytes() bytes, native little-endian).
  /// Safe to call from several threads at once for distinct rows. Throws Error(io).
  void write_rows(std::uint64_t first, const void* data, std::uint64_t n);

  /// Shrinks the array to its first n rows (n <= rows()): rewrites the header in place (it was
  /// padded for this) and truncates the file. Not concurrent with write_rows.
  void set_rows(std::uint64_t n);

  /// Makes the file visible under its final name: optional fsync, close, rename. Throws Error(io)
  /// (the temporary is removed). Call at most once.
  void commit(bool sync = false);

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return file_.temp_path(); }
  /// The temporary file, to commit it with others (commit_files, OutputFolder::commit) instead
  /// of commit().
  AtomicFile& file() { return file_; }
  std::uint64_t rows() const { return shape_[0]; }
  std::uint64_t row_bytes() const { return row_bytes_; }
  const std::vector<std::uint64_t>& shape() const { return shape_; }
  /// Bytes before the first row (the header, padded to 64; fixed at creation).
  std::uint64_t data_offset() const { return header_bytes_; }

 private:
  void write_header();

  std::string path_;
  AtomicFile file_;
  DType dtype_;
  std::vector<std::uint64_t> shape_;
  std::uint64_t row_bytes_ = 0;
  std::size_t header_bytes_ = 0;  // data offset, fixed at creation
  bool committed_ = false;
};

/// True when `path` ends in ".npy" (any case): how the CLI and open_input tell an array from a
/// dataset folder.
IMGNORM_API bool has_npy_extension(const std::string& path);

/// Writes a whole array in one call (through NpyWriter, so also atomically). `data` holds
/// product(shape) elements of `dtype`.
IMGNORM_API void write_npy(const std::string& path, DType dtype,
                           const std::vector<std::uint64_t>& shape, const void* data);

}  // namespace imgnorm
