#include "imgnorm/npy.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "imgnorm/error.hpp"

namespace imgnorm {

namespace {

constexpr std::uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorCode::format, "invalid .npy: " + what);
}

std::string sys_error(int err) { return std::strerror(err); }

bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

struct DescrEntry {
  const char* code;  // without byte-order character
  DType dtype;
};
constexpr DescrEntry kDescrs[] = {
    {"b1", DType::bool_}, {"u1", DType::uint8},   {"u2", DType::uint16},  {"i4", DType::int32},
    {"i8", DType::int64}, {"f2", DType::float16}, {"f4", DType::float32}, {"f8", DType::float64},
};

// Parser for the Python dict literal numpy writes, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 224, 224, 3), }
class DictParser {
 public:
  DictParser(const char* p, const char* end) : p_(p), end_(end) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') {
        ++p_;
        break;
      }
      std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (have_descr) bad("duplicate key 'descr'");
        have_descr = true;
        if (peek() != '\'' && peek() != '"')
          bad("unsupported descr (structured dtypes are not supported)");
        parse_descr(parse_string(), h);
      } else if (key == "fortran_order") {
        if (have_order) bad("duplicate key 'fortran_order'");
        have_order = true;
        if (consume_word("True")) bad("fortran_order True is not supported (write C order)");
        if (!consume_word("False")) bad("fortran_order must be True or False");
      } else if (key == "shape") {
        if (have_shape) bad("duplicate key 'shape'");
        have_shape = true;
        parse_shape(h);
      } else {
        bad("unexpected key '" + key + "' in header");
      }
      skip_ws();
      if (peek() == ',') {
        ++p_;
      } else if (peek() != '}') {
        bad("expected ',' or '}' in header");
      }
    }
    // numpy pads with spaces and ends the header with '\n'; allow any whitespace.
    skip_ws();
    if (p_ != end_) bad("unexpected text after the header dict");
    if (!have_descr) bad("header has no 'descr'");
    if (!have_order) bad("header has no 'fortran_order'");
    if (!have_shape) bad("header has no 'shape'");
    return h;
  }

 private:
  char peek() const { return p_ < end_ ? *p_ : '\0'; }
  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  void expect(char c) {
    if (peek() != c) bad(std::string("expected '") + c + "' in header");
    ++p_;
  }
  bool consume_word(const char* w) {
    std::size_t n = std::strlen(w);
    if (static_cast<std::size_t>(end_ - p_) < n || std::memcmp(p_, w, n) != 0) return false;
    const char* after = p_ + n;
    if (after < end_ && (std::isalnum(static_cast<unsigned char>(*after)) || *after == '_'))
      return false;
    p_ = after;
    return true;
  }
  std::string parse_string() {
    char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted key in header");
    ++p_;
    std::string s;
    while (p_ < end_ && *p_ != q) {
      if (*p_ == '\\' || static_cast<unsigned char>(*p_) < 0x20)
        bad("unexpected character in string");
      if (s.size() > 64) bad("string too long in header");
      s += *p_++;
    }
    if (p_ >= end_) bad("unterminated string in header");
    ++p_;
    return s;
  }
  void parse_descr(const std::string& d, NpyHeader& h) {
    if (d.size() == 3 && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) {
      for (const DescrEntry& e : kDescrs) {
        if (d.compare(1, 2, e.code) != 0) continue;
        h.dtype = e.dtype;
        bool multi = dtype_size(e.dtype) > 1;
        if (multi && d[0] == '|') break;  // byte order is required for multi-byte types
        h.big_endian = multi && d[0] == '>';
        return;
      }
    }
    bad("unsupported descr '" + d + "' (expected one of |b1 |u1 <u2 <i4 <i8 <f2 <f4 <f8)");
  }
  void parse_shape(NpyHeader& h) {
    expect('(');
    h.shape.clear();
    while (true) {
      skip_ws();
      if (peek() == ')') {
        ++p_;
        break;
      }
      if (peek() < '0' || peek() > '9') bad("shape must be a tuple of non-negative integers");
      std::uint64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (mul_overflows(v, 10, &v) || __builtin_add_overflow(v, std::uint64_t(*p_ - '0'), &v))
          bad("shape dimension overflows");
        ++p_;
      }
      if (h.shape.size() >= kMaxNpyDims) bad("too many dimensions");
      h.shape.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++p_;
      } else if (peek() != ')') {
        bad("expected ',' or ')' in shape");
      } else if (h.shape.size() == 1) {
        bad("a 1-d shape needs a trailing comma: (n,)");
      }
    }
  }

  const char* p_;
  const char* end_;
};

std::uint64_t shape_count(const std::vector<std::uint64_t>& shape, std::size_t from) {
  std::uint64_t n = 1;
  for (std::size_t i = from; i < shape.size(); ++i)
    if (mul_overflows(n, shape[i], &n)) return UINT64_MAX;
  return n;
}

void byteswap(std::uint8_t* p, std::uint64_t bytes, std::size_t itemsize) {
  if (itemsize == 1) return;
  for (std::uint64_t i = 0; i + itemsize <= bytes; i += itemsize)
    for (std::size_t a = 0, b = itemsize - 1; a < b; ++a, --b) std::swap(p[i + a], p[i + b]);
}

// Reads exactly n bytes at offset; false on a short read (EOF), throws on errors.
bool pread_all(int fd, void* out, std::size_t n, std::uint64_t offset, const std::string& path) {
  auto* p = static_cast<std::uint8_t*>(out);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::io, path + ": cannot read: " + sys_error(errno));
    }
    if (r == 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
  return true;
}

int open_for_read(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::io, path + ": cannot open: " + sys_error(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::io, path + ": not a regular file");
  }
  return fd;
}

// Reads and parses the header of an open file, and checks the file size against it.
NpyHeader read_header_fd(int fd, const std::string& path) {
  try {
    std::uint8_t pre[12];
    if (!pread_all(fd, pre, 10, 0, path)) bad("file too short for a header");
    if (std::memcmp(pre, kMagic, 6) != 0) bad("not a .npy file (bad magic)");
    std::size_t prefix = pre[6] == 1 ? 10 : 12;
    if (prefix == 12 && !pread_all(fd, pre + 10, 2, 10, path)) bad("file too short for a header");
    std::uint64_t hlen = prefix == 10
                             ? pre[8] | (pre[9] << 8)
                             : std::uint64_t(pre[8]) | std::uint64_t(pre[9]) << 8 |
                                   std::uint64_t(pre[10]) << 16 | std::uint64_t(pre[11]) << 24;
    // parse_npy_header validates the version and the bounds; read at most what it accepts.
    std::size_t want =
        prefix + static_cast<std::size_t>(std::min<std::uint64_t>(hlen, kMaxNpyHeaderBytes + 1));
    std::vector<std::uint8_t> buf(want);
    std::memcpy(buf.data(), pre, prefix);
    if (!pread_all(fd, buf.data() + prefix, want - prefix, prefix, path)) {
      // Let the parser name the problem (version, or header past the end of the file).
      struct stat st;
      if (::fstat(fd, &st) != 0) throw Error(ErrorCode::io, path + ": cannot stat");
      buf.resize(static_cast<std::size_t>(std::min<off_t>(st.st_size, static_cast<off_t>(want))));
      pread_all(fd, buf.data(), buf.size(), 0, path);
    }
    NpyHeader h = parse_npy_header(buf.data(), buf.size());
    struct stat st;
    if (::fstat(fd, &st) != 0) throw Error(ErrorCode::io, path + ": cannot stat");
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    std::uint64_t expect = h.data_offset + h.data_bytes;
    if (h.data_bytes > UINT64_MAX - h.data_offset || size != expect)
      bad("file is " + std::to_string(size) + " bytes but the header declares " +
          std::to_string(h.data_bytes) + " data bytes after a " + std::to_string(h.data_offset) +
          "-byte header" + (size < expect ? " (truncated)" : " (trailing bytes)"));
    return h;
  } catch (const Error& e) {
    throw with_path(e, path);
  }
}

}  // namespace

const char* npy_descr(DType dtype) noexcept {
  switch (dtype) {
    case DType::bool_:
      return "|b1";
    case DType::uint8:
      return "|u1";
    case DType::uint16:
      return "<u2";
    case DType::int32:
      return "<i4";
    case DType::int64:
      return "<i8";
    case DType::float16:
      return "<f2";
    case DType::float32:
      return "<f4";
    case DType::float64:
      return "<f8";
  }
  return "?";
}

std::uint64_t NpyHeader::row_bytes() const {
  std::uint64_t n = shape_count(shape, shape.empty() ? 0 : 1);
  return n * dtype_size(dtype);  // parse checked count · itemsize; a row is no larger
}

NpyHeader parse_npy_header(const std::uint8_t* data, std::size_t size) {
  if (size < 10) bad("file too short for a header");
  if (std::memcmp(data, kMagic, 6) != 0) bad("not a .npy file (bad magic)");
  int major = data[6], minor = data[7];
  if (major < 1 || major > 3 || minor != 0)
    bad("unsupported format version " + std::to_string(major) + "." + std::to_string(minor));
  std::size_t prefix = major == 1 ? 10 : 12;
  if (size < prefix) bad("file too short for a header");
  std::uint64_t hlen = major == 1
                           ? std::uint64_t(data[8]) | std::uint64_t(data[9]) << 8
                           : std::uint64_t(data[8]) | std::uint64_t(data[9]) << 8 |
                                 std::uint64_t(data[10]) << 16 | std::uint64_t(data[11]) << 24;
  if (hlen > kMaxNpyHeaderBytes)
    bad("header length " + std::to_string(hlen) + " exceeds the limit of " +
        std::to_string(kMaxNpyHeaderBytes) + " bytes");
  if (hlen > size - prefix)
    bad("header length " + std::to_string(hlen) + " runs past the end of the file");
  const char* text = reinterpret_cast<const char*>(data + prefix);
  // Version 3.0 allows UTF-8; every valid header is ASCII anyway, so anything else is refused.
  for (std::uint64_t i = 0; i < hlen; ++i)
    if (static_cast<unsigned char>(text[i]) >= 0x80 || text[i] == '\0')
      bad("non-ASCII byte in header");
  NpyHeader h = DictParser(text, text + hlen).parse();
  h.version_major = major;
  h.data_offset = prefix + static_cast<std::size_t>(hlen);
  h.count = 1;
  for (std::uint64_t d : h.shape)
    if (mul_overflows(h.count, d, &h.count)) bad("shape product overflows");
  std::uint64_t row = shape_count(h.shape, h.shape.empty() ? 0 : 1), row_bytes = 0;
  if (row == UINT64_MAX || mul_overflows(row, dtype_size(h.dtype), &row_bytes))
    bad("row size overflows");
  if (mul_overflows(h.count, dtype_size(h.dtype), &h.data_bytes) ||
      h.data_bytes > UINT64_MAX - h.data_offset)
    bad("array size overflows");
  return h;
}

NpyHeader read_npy_header(const std::string& path) {
  int fd = open_for_read(path);
  try {
    NpyHeader h = read_header_fd(fd, path);
    ::close(fd);
    return h;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

NpyArray read_npy(const std::string& path) {
  NpyReader reader(path);
  NpyArray a;
  a.header = reader.header();
  // The file size was checked against data_bytes, so this allocation is backed by real bytes.
  a.data.resize(static_cast<std::size_t>(a.header.data_bytes));
  if (a.header.count > 0) reader.read_rows(0, reader.rows(), a.data.data());
  return a;
}

NpyReader::NpyReader(const std::string& path) : path_(path) {
  fd_ = open_for_read(path);
  try {
    header_ = read_header_fd(fd_, path);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

NpyReader::~NpyReader() {
  if (fd_ >= 0) ::close(fd_);
}

std::uint64_t NpyReader::rows() const { return header_.shape.empty() ? 1 : header_.shape[0]; }

void NpyReader::read_rows(std::uint64_t first, std::uint64_t n, void* out) const {
  if (first > rows() || n > rows() - first)
    throw Error(ErrorCode::invalid_argument, path_ + ": rows " + std::to_string(first) + "+" +
                                                 std::to_string(n) + " outside the array of " +
                                                 std::to_string(rows()) + " rows");
  std::uint64_t rb = header_.row_bytes();
  std::uint64_t bytes = n * rb;  // within data_bytes, checked at open
  if (!pread_all(fd_, out, static_cast<std::size_t>(bytes), header_.data_offset + first * rb,
                 path_))
    throw Error(ErrorCode::io, path_ + ": file shrank while reading");
  if (header_.big_endian)
    byteswap(static_cast<std::uint8_t*>(out), bytes, dtype_size(header_.dtype));
}

namespace {
// The shape's row and total bytes, refused when they overflow.
std::uint64_t checked_row_bytes(const std::string& path, DType dtype,
                                const std::vector<std::uint64_t>& shape) {
  if (shape.empty() || shape.size() > kMaxNpyDims)
    throw Error(ErrorCode::invalid_argument, path + ": .npy writer needs 1 to 64 dimensions");
  std::uint64_t count = shape_count(shape, 0), row = shape_count(shape, 1), total = 0, rb = 0;
  if (count == UINT64_MAX || row == UINT64_MAX || mul_overflows(row, dtype_size(dtype), &rb) ||
      mul_overflows(count, dtype_size(dtype), &total) || total > (UINT64_MAX >> 2))
    throw Error(ErrorCode::invalid_argument, path + ": array shape overflows");
  return rb;
}
}  // namespace

NpyWriter::NpyWriter(std::string path, DType dtype, std::vector<std::uint64_t> shape)
    : path_(std::move(path)),
      file_((checked_row_bytes(path_, dtype, shape), path_)),
      dtype_(dtype),
      shape_(std::move(shape)) {
  row_bytes_ = checked_row_bytes(path_, dtype_, shape_);
  const std::uint64_t total = shape_[0] * row_bytes_;
  header_bytes_ = 0;
  write_header();
  std::uint64_t size = header_bytes_ + total;
  // Reserve the blocks now so that a full disk fails here; file systems without fallocate
  // (tmpfs on old kernels, some network file systems) just get a sparse file.
  if (size > 0 && ::fallocate(file_.fd(), 0, 0, static_cast<off_t>(size)) != 0) {
    int err = errno;
    if (err == ENOSPC || err == EDQUOT || err == EFBIG) file_.fail("cannot reserve space", err);
  }
  if (::ftruncate(file_.fd(), static_cast<off_t>(size)) != 0) file_.fail("cannot size file", errno);
}

NpyWriter::~NpyWriter() = default;

void NpyWriter::write_header() {
  std::string dict =
      std::string("{'descr': '") + npy_descr(dtype_) + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape_.size(); ++i) {
    dict += std::to_string(shape_[i]);
    dict += shape_.size() == 1 || i + 1 < shape_.size() ? "," : "";
    if (i + 1 < shape_.size()) dict += " ";
  }
  dict += "), }";
  if (header_bytes_ == 0) {
    // First write fixes the data offset: room for the text plus '\n', aligned to 64 as numpy does.
    // A smaller shape[0] later has no more digits, so the rewritten header always fits.
    header_bytes_ = (10 + dict.size() + 1 + 63) / 64 * 64;
  }
  assert(10 + dict.size() + 1 <= header_bytes_);
  std::string h(header_bytes_, ' ');
  std::memcpy(h.data(), kMagic, 6);
  h[6] = 1;
  h[7] = 0;
  std::size_t hlen = header_bytes_ - 10;
  h[8] = static_cast<char>(hlen & 0xff);
  h[9] = static_cast<char>(hlen >> 8);
  std::memcpy(h.data() + 10, dict.data(), dict.size());
  h.back() = '\n';
  std::size_t done = 0;
  while (done < h.size()) {
    ssize_t w = ::pwrite(file_.fd(), h.data() + done, h.size() - done, static_cast<off_t>(done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) file_.fail("cannot write header", w < 0 ? errno : EIO);
    done += static_cast<std::size_t>(w);
  }
}

void NpyWriter::write_rows(std::uint64_t first, const void* data, std::uint64_t n) {
  assert(file_.fd() >= 0 && !committed_);
  assert(first <= shape_[0] && n <= shape_[0] - first);
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::uint64_t left = n * row_bytes_;
  std::uint64_t off = header_bytes_ + first * row_bytes_;
  while (left > 0) {
    std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(left, 1u << 30));
    ssize_t w = ::pwrite(file_.fd(), p, chunk, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int err = w < 0 ? errno : EIO;
      throw Error(ErrorCode::io, path_ + ": cannot write: " + sys_error(err));
    }
    p += w;
    off += static_cast<std::uint64_t>(w);
    left -= static_cast<std::uint64_t>(w);
  }
}

void NpyWriter::set_rows(std::uint64_t n) {
  assert(file_.fd() >= 0 && !committed_);
  if (n > shape_[0])
    throw Error(ErrorCode::invalid_argument, path_ + ": cannot grow rows from " +
                                                 std::to_string(shape_[0]) + " to " +
                                                 std::to_string(n));
  shape_[0] = n;
  write_header();
  if (::ftruncate(file_.fd(), static_cast<off_t>(header_bytes_ + n * row_bytes_)) != 0)
    file_.fail("cannot truncate", errno);
}

void NpyWriter::commit(bool sync) {
  assert(file_.fd() >= 0 && !committed_);
  file_.commit(sync);
  committed_ = true;
}

void write_npy(const std::string& path, DType dtype, const std::vector<std::uint64_t>& shape,
               const void* data) {
  NpyWriter w(path, dtype, shape);
  if (w.rows() > 0) w.write_rows(0, data, w.rows());
  w.commit();
}

bool has_npy_extension(const std::string& path) {
  if (path.size() < 4) return false;
  std::string t = path.substr(path.size() - 4);
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t == ".npy";
}

}  // namespace imgnorm
