#pragma once
// The bodies of the libFuzzer targets, shared with tests/crashers_test.cpp so that every input that
// ever crashed a target is replayed by `make test` through exactly the same code.
//
// Each function feeds hostile bytes to one parser and checks what the parser promises: it either
// succeeds with a result that satisfies its documented invariants, or throws imgnorm::Error. Any
// other exception escapes (and is a finding); a broken invariant calls fuzz_fail(), which aborts.

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "exif.hpp"
#include "imgnorm/dataset.hpp"
#include "imgnorm/decode.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/npy.hpp"
#include "imgnorm/recipe.hpp"
#include "imgnorm/stats.hpp"
#include "imgnorm/transform.hpp"
#include "values.hpp"  // tools/imgnorm: the CLI's own value parsers

namespace imgnorm::fuzz {

[[noreturn]] inline void fuzz_fail(const char* what) {
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
  std::abort();
}

#define IMGNORM_FUZZ_CHECK(cond)                    \
  do {                                              \
    if (!(cond)) ::imgnorm::fuzz::fuzz_fail(#cond); \
  } while (0)

/// Pixel limit of the decode target: large enough for every file in tests/data, small enough
/// that one input never allocates more than a few MB, so the fuzzer stays fast.
inline constexpr std::uint64_t kFuzzMaxPixels = std::uint64_t{1} << 20;

/// A temporary file for parsers that read from a path (one per process, rewritten each time).
inline std::string scratch_path(const char* tag) {
  const char* dir = std::getenv("TMPDIR");
  std::string base = dir != nullptr && *dir != '\0' ? dir : "/tmp";
  if (access("/dev/shm", W_OK) == 0) base = "/dev/shm";
  return base + "/imgnorm-fuzz-" + tag + "-" + std::to_string(getpid());
}

inline void write_whole(const std::string& path, const std::uint8_t* data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fuzz_fail("cannot create the scratch file");
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) fuzz_fail("cannot write the scratch file");
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

// -------------------------------------------------------------------------------------------------
// (a) decode: bytes → format sniffer → JPEG / PNG / WebP decoder, with a pixel limit.

/// Decodes with `opt` and checks the result: an image of the requested channels within the pixel
/// limit, or an imgnorm::Error.
inline void decode_checked(const std::uint8_t* data, std::size_t size, const DecodeOptions& opt,
                           Decoder& decoder, Image& out) {
  try {
    const DecodeInfo info = decoder.decode(data, size, opt, out);
    const ImageView v = out.view();
    IMGNORM_FUZZ_CHECK(v.width > 0 && v.height > 0);
    IMGNORM_FUZZ_CHECK(v.channels == channel_count(opt.channels));
    IMGNORM_FUZZ_CHECK(static_cast<std::uint64_t>(info.width) * info.height <= opt.max_pixels);
    IMGNORM_FUZZ_CHECK(info.orientation >= 1 && info.orientation <= 8);
    IMGNORM_FUZZ_CHECK(info.scale_denom == 1 || info.scale_denom == 2 || info.scale_denom == 4 ||
                       info.scale_denom == 8);
    IMGNORM_FUZZ_CHECK(static_cast<std::uint64_t>(v.width) * v.height <= opt.max_pixels);
    // Touch every output byte: uninitialised or out-of-bounds rows show up under the sanitizers.
    unsigned acc = 0;
    for (int y = 0; y < v.height; ++y) {
      const std::uint8_t* row = v.row(y);
      for (int x = 0; x < v.width * v.channels; ++x) acc += row[x];
    }
    volatile unsigned sink = acc;
    (void)sink;
  } catch (const Error& e) {
    IMGNORM_FUZZ_CHECK(e.what()[0] != '\0');
  }
}

/// The options encoded in one byte: channel order, orientation, truncation, pixel limit, DCT
/// prescale target, alpha compositing.
inline DecodeOptions decode_options(std::uint8_t sel) {
  DecodeOptions opt;
  opt.channels = static_cast<ChannelOrder>(sel % 3);
  opt.apply_orientation = (sel & 0x04) == 0;
  opt.allow_truncated = (sel & 0x08) != 0;
  opt.max_pixels = (sel & 0x80) != 0 ? 4096 : kFuzzMaxPixels;
  const int target = 1 + (sel >> 5 & 0x03) * 21;  // 1, 22, 43, 64: exercises the DCT prescale
  if ((sel & 0x10) != 0) {
    // Only JPEG reads min_size and only PNG/WebP read alpha: one bit drives both.
    opt.min_size = [target](Size) { return Size{target, target}; };
    opt.alpha.composite = true;
    opt.alpha.background = {static_cast<std::uint8_t>(3 * target),
                            static_cast<std::uint8_t>(255 - target),
                            static_cast<std::uint8_t>(target)};
  }
  return opt;
}

/// The options come from the last byte (which the decoders mostly ignore: it lies after EOI/IEND
/// in valid files), so seed images work unchanged and the fuzzer can still vary the options.
inline void decode_bytes(const std::uint8_t* data, std::size_t size, Decoder& decoder, Image& out) {
  decode_checked(data, size, decode_options(size > 0 ? data[size - 1] : 0), decoder, out);
}

inline void decode_bytes(const std::uint8_t* data, std::size_t size) {
  // The decoder is reused, as a pipeline worker reuses it: state left by a failed image must not
  // hurt the next one.
  static Decoder decoder;
  static Image out;
  decode_bytes(data, size, decoder, out);
}

// -------------------------------------------------------------------------------------------------
// (b) EXIF orientation from a JPEG APP1 payload. noexcept: it must return 1..8 for any bytes.

inline void exif_bytes(const std::uint8_t* data, std::size_t size) {
  // Exact-size heap copies, so that a read one byte too far is caught by ASan.
  std::vector<std::uint8_t> plain(data, data + size);
  const int a = detail::parse_exif_orientation(plain.empty() ? nullptr : plain.data(), size);
  IMGNORM_FUZZ_CHECK(a >= 1 && a <= 8);
  // The same bytes behind a valid "Exif\0\0" header, so that the TIFF part is always reached.
  std::vector<std::uint8_t> prefixed{'E', 'x', 'i', 'f', 0, 0};
  prefixed.insert(prefixed.end(), data, data + size);
  auto* copy = new std::uint8_t[prefixed.size()];
  std::memcpy(copy, prefixed.data(), prefixed.size());
  const int b = detail::parse_exif_orientation(copy, prefixed.size());
  delete[] copy;
  IMGNORM_FUZZ_CHECK(b >= 1 && b <= 8);
}

// -------------------------------------------------------------------------------------------------
// (c) .npy: the header parser on the bytes, then the file readers on the same bytes as a file.

inline void npy_bytes(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> copy(data, data + size);
  bool header_ok = false;
  try {
    const NpyHeader h = parse_npy_header(copy.empty() ? nullptr : copy.data(), size);
    header_ok = true;
    IMGNORM_FUZZ_CHECK(h.version_major >= 1 && h.version_major <= 3);
    IMGNORM_FUZZ_CHECK(h.data_offset <= size);
    IMGNORM_FUZZ_CHECK(h.shape.size() <= kMaxNpyDims);
    std::uint64_t count = 1;
    for (std::uint64_t d : h.shape) count *= d;
    IMGNORM_FUZZ_CHECK(count == h.count);
    IMGNORM_FUZZ_CHECK(h.data_bytes == h.count * dtype_size(h.dtype));
    IMGNORM_FUZZ_CHECK(h.row_bytes() <= h.data_bytes || h.count == 0);
  } catch (const Error& e) {
    IMGNORM_FUZZ_CHECK(e.code() == ErrorCode::format);
  }
  if (!header_ok) return;  // the file readers parse the same header first
  const std::string path = scratch_path("npy");
  write_whole(path, data, size);
  try {
    const NpyArray a = read_npy(path);
    IMGNORM_FUZZ_CHECK(a.data.size() == a.header.data_bytes);
    IMGNORM_FUZZ_CHECK(a.header.data_offset + a.header.data_bytes == size);
  } catch (const Error&) {
  }
  try {
    NpyReader r(path);
    const std::uint64_t rows = r.rows();
    const std::uint64_t rb = r.header().row_bytes();
    if (rows > 0 && rb > 0 && rb <= (1u << 20)) {
      std::vector<std::uint8_t> buf(static_cast<std::size_t>(rb));
      r.read_rows(rows - 1, 1, buf.data());
      r.read_rows(0, 1, buf.data());
    }
    try {
      std::uint8_t dummy[1];
      r.read_rows(rows, 1, dummy);  // outside: must throw, never read
      fuzz_fail("read_rows past the end did not throw");
    } catch (const Error&) {
    }
  } catch (const Error&) {
  }
  ::unlink(path.c_str());
}

// -------------------------------------------------------------------------------------------------
// (d) stats.json: parse, and for what parses, serialize and parse again (must give the same text),
// summarize and merge with itself.

inline void stats_json_bytes(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  StatsFile st;
  try {
    st = stats_from_json(text);
  } catch (const Error& e) {
    IMGNORM_FUZZ_CHECK(e.code() == ErrorCode::format || e.code() == ErrorCode::invalid_argument);
    return;
  }
  const std::string again = to_json(st);
  StatsFile st2;
  try {
    st2 = stats_from_json(again);
  } catch (const Error& e) {
    std::fprintf(stderr, "re-reading our own output failed: %s\n", e.what());
    fuzz_fail("stats.json written by to_json is refused by stats_from_json");
  }
  IMGNORM_FUZZ_CHECK(to_json(st2) == again);
  try {
    (void)summarize(st.acc, st.ddof, st.sample ? &*st.sample : nullptr);
  } catch (const Error&) {
  }
  try {
    StatsFile twice = st;
    merge_into(twice, st2);
    (void)to_json(twice);
  } catch (const Error&) {
  }
}

/// read_stats_file on the same bytes (for the crasher replay; the fuzz target uses the string).
inline void stats_file_bytes(const std::uint8_t* data, std::size_t size) {
  const std::string path = scratch_path("stats");
  write_whole(path, data, size);
  try {
    (void)read_stats_file(path);
  } catch (const Error&) {
  }
  ::unlink(path.c_str());
}

// -------------------------------------------------------------------------------------------------
// (e) the values a user types on the command line, and list files. The first byte picks the
// parser, the rest is the text. Every parser round-trips its canonical spelling.

inline constexpr int kCliParsers = 13;

inline void cli_value_bytes(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return;
  const int which = data[0] % kCliParsers;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (which) {
      case 0: {
        const Size s = parse_size(text);
        IMGNORM_FUZZ_CHECK(s.width > 0 && s.height > 0);
        const Size t = parse_size(std::to_string(s.width) + "x" + std::to_string(s.height));
        IMGNORM_FUZZ_CHECK(s == t);
        break;
      }
      case 1: {
        const ResizeMode m = parse_resize_mode(text);
        IMGNORM_FUZZ_CHECK(parse_resize_mode(to_string(m)) == m);
        break;
      }
      case 2: {
        const Interp m = parse_interp(text);
        IMGNORM_FUZZ_CHECK(parse_interp(to_string(m)) == m);
        break;
      }
      case 3: {
        const ChannelOrder m = parse_channel_order(text);
        IMGNORM_FUZZ_CHECK(parse_channel_order(to_string(m)) == m);
        break;
      }
      case 4:
      case 5: {
        // "K" or "P%" of a population n taken from the text after a NUL (or a fixed one).
        std::string spec = text;
        std::size_t n = which == 4 ? 1000 : 7;
        if (auto z = text.find('\0'); z != std::string::npos) {
          spec = text.substr(0, z);
          n = 0;
          for (char c : text.substr(z + 1, 8)) n = n << 8 | static_cast<unsigned char>(c);
        }
        const std::size_t k = parse_sample_count(spec, n);
        IMGNORM_FUZZ_CHECK(k <= n);
        if (n > 0 && n <= 4096) {
          const auto idx = sample_indices(n, k, size);
          IMGNORM_FUZZ_CHECK(idx.size() == k);
          for (std::size_t i = 1; i < idx.size(); ++i) IMGNORM_FUZZ_CHECK(idx[i - 1] < idx[i]);
          if (!idx.empty()) IMGNORM_FUZZ_CHECK(idx.back() < n);
        }
        break;
      }
      case 6: {
        int i = 0, n = 1;
        cli::parse_shard(text, i, n);
        IMGNORM_FUZZ_CHECK(n >= 1 && i >= 0 && i < n);
        Dataset ds;
        ds.classes = {""};
        for (int k = 0; k < 37; ++k) ds.entries.push_back({std::to_string(k), 0});
        keep_shard(ds, i, n);
        for (const Entry& e : ds.entries) IMGNORM_FUZZ_CHECK(std::stoi(e.path) % n == i);
        break;
      }
      case 7: {
        const Layout v = parse_layout(text);
        IMGNORM_FUZZ_CHECK(parse_layout(to_string(v)) == v);
        break;
      }
      case 8: {
        const DType v = parse_dtype(text);
        IMGNORM_FUZZ_CHECK(parse_dtype(to_string(v)) == v);
        break;
      }
      case 9: {
        const Mode v = parse_mode(text);
        IMGNORM_FUZZ_CHECK(parse_mode(to_string(v)) == v);
        break;
      }
      case 11: {
        const std::vector<double> v = cli::parse_numbers(text, "--mean");
        IMGNORM_FUZZ_CHECK(!v.empty());
        for (double d : v) IMGNORM_FUZZ_CHECK(std::isfinite(d));
        break;
      }
      case 12: {
        const Mode m = cli::parse_mode_flag(text);
        IMGNORM_FUZZ_CHECK(parse_mode(to_string(m)) == m);
        break;
      }
      case 10: {
        // A list file (--list): one path per line.
        const std::string path = scratch_path("list");
        write_whole(path, data + 1, size - 1);
        try {
          const Dataset ds = read_list(path);
          for (const Entry& e : ds.entries) {
            // -1: a path that named nothing when the list was read (no class).
            IMGNORM_FUZZ_CHECK(
                e.label >= -1 &&
                (e.label == -1 || static_cast<std::size_t>(e.label) < ds.classes.size()));
          }
        } catch (const Error&) {
        }
        ::unlink(path.c_str());
        break;
      }
    }
  } catch (const Error& e) {
    IMGNORM_FUZZ_CHECK(e.what()[0] != '\0');
  }
}

}  // namespace imgnorm::fuzz
