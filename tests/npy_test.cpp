#include "imgnorm/npy.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "imgnorm/error.hpp"

namespace fs = std::filesystem;
using imgnorm::DType;

namespace {

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("imgnorm-npy-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  // Every entry of the folder, to prove that no temporary is left behind.
  std::vector<std::string> entries() const {
    std::vector<std::string> v;
    for (auto& e : fs::directory_iterator(path_)) v.push_back(e.path().filename().string());
    return v;
  }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// Runs a Python snippet with /usr/bin/python3 (numpy is the reference); returns its exit status.
int run_python(const TempDir& dir, const std::string& code, const std::string& args = "") {
  std::string script = dir.file("check.py");
  std::ofstream(script) << "import sys\nimport numpy as np\n" << code << "\n";
  std::string cmd = "/usr/bin/python3 " + script + " " + args;
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::vector<std::uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
}

// Element i of the test pattern, as the bytes of `dtype` (numpy computes the same in Python).
template <typename T>
std::vector<std::uint8_t> pattern(std::size_t n, T (*f)(std::size_t)) {
  std::vector<std::uint8_t> out(n * sizeof(T));
  for (std::size_t i = 0; i < n; ++i) {
    T v = f(i);
    std::memcpy(out.data() + i * sizeof(T), &v, sizeof(T));
  }
  return out;
}

struct DtypeCase {
  DType dtype;
  const char* numpy_expr;  // element i as numpy computes it, i an int64 arange
  std::vector<std::uint8_t> (*make)(std::size_t);
};

const DtypeCase kCases[] = {
    {DType::bool_, "(i % 3 == 0)",
     [](std::size_t n) {
       return pattern<std::uint8_t>(n, [](std::size_t i) -> std::uint8_t { return i % 3 == 0; });
     }},
    {DType::uint8, "(i * 7 % 256).astype(np.uint8)",
     [](std::size_t n) {
       return pattern<std::uint8_t>(n, [](std::size_t i) -> std::uint8_t { return i * 7 % 256; });
     }},
    {DType::uint16, "(i * 999 % 65536).astype(np.uint16)",
     [](std::size_t n) {
       return pattern<std::uint16_t>(
           n, [](std::size_t i) -> std::uint16_t { return i * 999 % 65536; });
     }},
    {DType::int32, "(i * 123457 - 1000000).astype(np.int32)",
     [](std::size_t n) {
       return pattern<std::int32_t>(
           n, [](std::size_t i) -> std::int32_t { return std::int32_t(i) * 123457 - 1000000; });
     }},
    {DType::int64, "(i * 10**12 - 5).astype(np.int64)",
     [](std::size_t n) {
       return pattern<std::int64_t>(
           n, [](std::size_t i) -> std::int64_t { return std::int64_t(i) * 1000000000000 - 5; });
     }},
    // float16 bits: i * 37 + 0x3000 (all finite), compared as bit patterns.
    {DType::float16, "(i * 37 + 0x3000).astype(np.uint16).view(np.float16)",
     [](std::size_t n) {
       return pattern<std::uint16_t>(
           n, [](std::size_t i) -> std::uint16_t { return i * 37 + 0x3000; });
     }},
    {DType::float32, "(i.astype(np.float32) / np.float32(7) - np.float32(3))",
     [](std::size_t n) {
       return pattern<float>(n, [](std::size_t i) -> float { return float(i) / 7.0f - 3.0f; });
     }},
    {DType::float64, "(i / 7.0 - 3.0)",
     [](std::size_t n) {
       return pattern<double>(n, [](std::size_t i) -> double { return double(i) / 7.0 - 3.0; });
     }},
};

}  // namespace

TEST(npy, round_trip_every_dtype) {
  TempDir dir;
  for (const DtypeCase& c : kCases) {
    SCOPED_TRACE(imgnorm::to_string(c.dtype));
    std::vector<std::uint64_t> shape{4, 3, 5};
    auto data = c.make(60);
    std::string path = dir.file(std::string(imgnorm::to_string(c.dtype)) + ".npy");
    imgnorm::write_npy(path, c.dtype, shape, data.data());
    imgnorm::NpyArray a = imgnorm::read_npy(path);
    EXPECT_EQ(a.header.dtype, c.dtype);
    EXPECT_EQ(a.header.shape, shape);
    EXPECT_EQ(a.header.data_offset % 64, 0u);
    EXPECT_EQ(a.data, data);
  }
}

TEST(npy, numpy_reads_what_we_write) {
  TempDir dir;
  for (const DtypeCase& c : kCases) {
    SCOPED_TRACE(imgnorm::to_string(c.dtype));
    auto data = c.make(2 * 3 * 7);
    std::string path = dir.file("w.npy");
    imgnorm::write_npy(path, c.dtype, {2, 3, 7}, data.data());
    std::string code = std::string("a = np.load(sys.argv[1])\n") +
                       "i = np.arange(42, dtype=np.int64)\n"
                       "e = (" +
                       c.numpy_expr +
                       ").reshape(2, 3, 7)\n"
                       "assert a.dtype == np.dtype('" +
                       imgnorm::to_string(c.dtype) +
                       "'), a.dtype\n"
                       "assert a.shape == (2, 3, 7), a.shape\n"
                       "assert a.tobytes() == e.tobytes(), (a, e)\n";
    EXPECT_EQ(run_python(dir, code, path), 0);
  }
}

TEST(npy, reads_what_numpy_writes) {
  TempDir dir;
  std::string code =
      "from numpy.lib import format as F\n"
      "d = sys.argv[1]\n"
      "i = np.arange(24, dtype=np.int64)\n"
      "np.save(d + '/u1.npy', (i * 7 % 256).astype(np.uint8).reshape(2, 3, 4))\n"
      "np.save(d + '/f4.npy', (i.astype(np.float32) / np.float32(7) - np.float32(3)).reshape(4, "
      "6))\n"
      "np.save(d + '/f2.npy', (i * 37 + 0x3000).astype(np.uint16).view(np.float16))\n"
      "np.save(d + '/f8.npy', (i / 7.0 - 3.0).reshape(2, 12))\n"
      "np.save(d + '/i8.npy', (i * 10**12 - 5).reshape(24, 1))\n"
      "np.save(d + '/b1.npy', (i % 3 == 0).reshape(3, 8))\n"
      "np.save(d + '/be.npy', (i.astype(np.float32) / np.float32(7) - "
      "np.float32(3)).astype('>f4').reshape(4, 6))\n"
      "np.save(d + '/scalar.npy', np.float64(2.5))\n"
      "np.save(d + '/empty.npy', np.zeros((0, 3), np.float32))\n"
      "np.save(d + '/fortran.npy', np.asfortranarray(np.zeros((2, 3), np.float32)))\n"
      "for v in [(2, 0), (3, 0)]:\n"
      "    with open(d + '/v%d.npy' % v[0], 'wb') as f:\n"
      "        F.write_array(f, (i.astype(np.float32) / np.float32(7) - np.float32(3)).reshape(4, "
      "6), version=v)\n";
  ASSERT_EQ(run_python(dir, code, dir.file("")), 0);

  auto f4 = kCases[6].make(24);
  for (const char* name : {"f4.npy", "be.npy", "v2.npy", "v3.npy"}) {
    SCOPED_TRACE(name);
    imgnorm::NpyArray a = imgnorm::read_npy(dir.file(name));
    EXPECT_EQ(a.header.dtype, DType::float32);
    EXPECT_EQ(a.header.shape, (std::vector<std::uint64_t>{4, 6}));
    EXPECT_EQ(a.data, f4);
  }
  EXPECT_TRUE(imgnorm::read_npy(dir.file("be.npy")).header.big_endian);
  EXPECT_EQ(imgnorm::read_npy(dir.file("v2.npy")).header.version_major, 2);
  EXPECT_EQ(imgnorm::read_npy(dir.file("v3.npy")).header.version_major, 3);

  struct Expect {
    const char* file;
    DType dtype;
    std::vector<std::uint64_t> shape;
    int case_index;
  };
  for (const Expect& e :
       {Expect{"u1.npy", DType::uint8, {2, 3, 4}, 1}, Expect{"f2.npy", DType::float16, {24}, 5},
        Expect{"i8.npy", DType::int64, {24, 1}, 4}, Expect{"b1.npy", DType::bool_, {3, 8}, 0}}) {
    SCOPED_TRACE(e.file);
    imgnorm::NpyArray a = imgnorm::read_npy(dir.file(e.file));
    EXPECT_EQ(a.header.dtype, e.dtype);
    EXPECT_EQ(a.header.shape, e.shape);
    EXPECT_EQ(a.data, kCases[e.case_index].make(24));
  }
  imgnorm::NpyArray f8 = imgnorm::read_npy(dir.file("f8.npy"));
  EXPECT_EQ(f8.data, kCases[7].make(24));

  imgnorm::NpyArray scalar = imgnorm::read_npy(dir.file("scalar.npy"));
  EXPECT_TRUE(scalar.header.shape.empty());
  EXPECT_EQ(scalar.as<double>()[0], 2.5);

  imgnorm::NpyArray empty = imgnorm::read_npy(dir.file("empty.npy"));
  EXPECT_EQ(empty.header.shape, (std::vector<std::uint64_t>{0, 3}));
  EXPECT_TRUE(empty.data.empty());

  try {
    imgnorm::read_npy(dir.file("fortran.npy"));
    FAIL() << "fortran order accepted";
  } catch (const imgnorm::Error& e) {
    EXPECT_EQ(e.code(), imgnorm::ErrorCode::format);
    EXPECT_NE(std::string(e.what()).find(dir.file("fortran.npy") + ": "), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("fortran_order True"), std::string::npos) << e.what();
  }
}

// Builds a version 1.0 file image around a header dict (padded as numpy pads).
std::vector<std::uint8_t> npy_bytes(const std::string& dict, std::size_t data_bytes = 0) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  // Sized once and filled in place: GCC 12 warns (-Warray-bounds, a false positive) on inserting
  // the header after a 10-byte initializer list, which it inlines as a copy past its end.
  const std::uint8_t magic[10] = {0x93,
                                  'N',
                                  'U',
                                  'M',
                                  'P',
                                  'Y',
                                  1,
                                  0,
                                  static_cast<std::uint8_t>(h.size() & 0xff),
                                  static_cast<std::uint8_t>(h.size() >> 8)};
  std::vector<std::uint8_t> b(sizeof magic + h.size() + data_bytes, 0);
  std::copy(magic, magic + sizeof magic, b.begin());
  std::copy(h.begin(), h.end(), b.begin() + sizeof magic);
  return b;
}

TEST(npy, parses_valid_headers) {
  auto b = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 224, 224, 3), }");
  imgnorm::NpyHeader h = imgnorm::parse_npy_header(b.data(), b.size());
  EXPECT_EQ(h.dtype, DType::float32);
  EXPECT_EQ(h.shape, (std::vector<std::uint64_t>{3, 224, 224, 3}));
  EXPECT_EQ(h.count, 3u * 224 * 224 * 3);
  EXPECT_EQ(h.data_bytes, h.count * 4);
  EXPECT_EQ(h.data_offset, b.size());
  EXPECT_EQ(h.row_bytes(), 224u * 224 * 3 * 4);
  // Key order, quotes and spacing as other writers produce them.
  b = npy_bytes("{\"shape\":(5,),\"fortran_order\":False,\"descr\":\"|u1\"}");
  h = imgnorm::parse_npy_header(b.data(), b.size());
  EXPECT_EQ(h.dtype, DType::uint8);
  EXPECT_EQ(h.shape, (std::vector<std::uint64_t>{5}));
}

TEST(npy, rejects_malformed_headers) {
  struct Bad {
    std::vector<std::uint8_t> bytes;
    const char* message;
  };
  auto dict = [](const std::string& d) { return npy_bytes(d); };
  std::vector<Bad> cases = {
      {{0x93, 'N', 'U', 'M'}, "too short"},
      {{'P', 'K', 3, 4, 0, 0, 1, 0, 0, 0}, "bad magic"},
      {{0x93, 'N', 'U', 'M', 'P', 'Y', 4, 0, 0, 0}, "unsupported format version 4.0"},
      {{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0xff, '{'}, "runs past the end"},
      {{0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0xff, 0xff, 0xff, 0xff}, "exceeds the limit"},
      {dict("{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }"), "fortran_order True"},
      {dict("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }"),
       "unsupported descr '<c8'"},
      {dict("{'descr': '|f4', 'fortran_order': False, 'shape': (3,), }"), "unsupported descr"},
      {dict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }"), "structured"},
      {dict("{'descr': '<f4', 'fortran_order': False, }"), "no 'shape'"},
      {dict("{'descr': '<f4', 'shape': (3,), }"), "no 'fortran_order'"},
      {dict("{'fortran_order': False, 'shape': (3,), }"), "no 'descr'"},
      {dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}"),
       "unexpected key 'x'"},
      {dict("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}"),
       "duplicate key 'descr'"},
      {dict("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }"), "non-negative"},
      {dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }"), "trailing comma"},
      {dict("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }"),
       "overflows"},
      {dict("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"),
       "shape product overflows"},
      {dict("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }"),
       "array size overflows"},
      {dict("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }"),
       "row size overflows"},
      {dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } junk"), "after the header"},
      {dict("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3,), }"), "True or False"},
      {dict("{'descr': '<f4\xc3\xa9', 'fortran_order': False, 'shape': (3,), }"), "non-ASCII"},
      {dict("{'descr': '<f4' 'fortran_order': False, 'shape': (3,), }"), "expected ','"},
      {dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), "), "expected a quoted key"},
  };
  for (const Bad& c : cases) {
    SCOPED_TRACE(c.message);
    try {
      imgnorm::parse_npy_header(c.bytes.data(), c.bytes.size());
      ADD_FAILURE() << "accepted";
    } catch (const imgnorm::Error& e) {
      EXPECT_EQ(e.code(), imgnorm::ErrorCode::format);
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << e.what();
    }
  }
  // Every prefix of a valid file is either rejected cleanly or (once the header is complete)
  // parsed: the parser never reads past `size` (run under ASan to prove it).
  auto good = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12);
  for (std::size_t n = 0; n < good.size(); ++n) {
    std::vector<std::uint8_t> prefix(good.begin(), good.begin() + n);
    try {
      imgnorm::parse_npy_header(prefix.data(), prefix.size());
      EXPECT_GE(n, 64u);
    } catch (const imgnorm::Error& e) {
      EXPECT_EQ(e.code(), imgnorm::ErrorCode::format);
    }
  }
}

TEST(npy, file_size_must_match_header) {
  TempDir dir;
  std::string path = dir.file("a.npy");
  float v[6] = {1, 2, 3, 4, 5, 6};
  imgnorm::write_npy(path, DType::float32, {2, 3}, v);
  auto bytes = file_bytes(path);
  auto truncated = bytes;
  truncated.pop_back();
  write_bytes(path, truncated);
  try {
    imgnorm::read_npy(path);
    FAIL();
  } catch (const imgnorm::Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  bytes.push_back(0);
  write_bytes(path, bytes);
  EXPECT_THROW(imgnorm::read_npy(path), imgnorm::Error);
  try {
    imgnorm::read_npy(dir.file("missing.npy"));
    FAIL();
  } catch (const imgnorm::Error& e) {
    EXPECT_EQ(e.code(), imgnorm::ErrorCode::io);
    EXPECT_NE(std::string(e.what()).find("missing.npy: cannot open"), std::string::npos);
  }
}

TEST(npy, reader_reads_row_ranges) {
  TempDir dir;
  std::string path = dir.file("rows.npy");
  std::vector<std::int64_t> v(10 * 3);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int64_t>(i) - 7;
  imgnorm::write_npy(path, DType::int64, {10, 3}, v.data());
  imgnorm::NpyReader r(path);
  EXPECT_EQ(r.rows(), 10u);
  EXPECT_EQ(r.header().row_bytes(), 24u);
  std::int64_t out[6];
  r.read_rows(4, 2, out);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out[i], v[12 + i]);
  EXPECT_THROW(r.read_rows(9, 2, out), imgnorm::Error);
}

TEST(npy, shrinking_rows_rewrites_the_header) {
  TempDir dir;
  std::string path = dir.file("images.npy");
  {
    // 1000 rows planned (4 digits), 7 kept (1 digit): the header shrinks, the data offset stays.
    imgnorm::NpyWriter w(path, DType::float32, {1000, 2, 2});
    std::vector<float> row(4);
    for (int r = 0; r < 7; ++r) {
      for (int k = 0; k < 4; ++k) row[k] = static_cast<float>(r * 4 + k) * 0.5f;
      w.write_rows(r, row.data(), 1);
    }
    w.set_rows(7);
    EXPECT_FALSE(fs::exists(path));
    w.commit();
  }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"images.npy"});
  EXPECT_EQ(fs::file_size(path), 128u + 7 * 16);
  imgnorm::NpyArray a = imgnorm::read_npy(path);
  EXPECT_EQ(a.header.shape, (std::vector<std::uint64_t>{7, 2, 2}));
  std::string code =
      "a = np.load(sys.argv[1])\n"
      "assert a.shape == (7, 2, 2) and a.dtype == np.float32, (a.shape, a.dtype)\n"
      "assert (a.ravel() == np.arange(28, dtype=np.float32) * np.float32(0.5)).all(), a\n";
  EXPECT_EQ(run_python(dir, code, path), 0);
  // Down to zero rows is allowed too (every file skipped is the caller's error, not ours).
  imgnorm::NpyWriter w(dir.file("zero.npy"), DType::uint8, {3, 5});
  w.set_rows(0);
  w.commit();
  EXPECT_EQ(imgnorm::read_npy(dir.file("zero.npy")).header.shape,
            (std::vector<std::uint64_t>{0, 5}));
  imgnorm::NpyWriter g(dir.file("grow.npy"), DType::uint8, {3, 5});
  EXPECT_THROW(g.set_rows(4), imgnorm::Error);
}

TEST(npy, writer_without_commit_leaves_nothing) {
  TempDir dir;
  std::string path = dir.file("out.npy");
  {
    imgnorm::NpyWriter w(path, DType::float32, {4, 3});
    float row[3] = {1, 2, 3};
    w.write_rows(0, row, 1);
    EXPECT_TRUE(fs::exists(w.temp_path()));
    EXPECT_EQ(fs::path(w.temp_path()).parent_path(), fs::path(path).parent_path());
  }
  EXPECT_TRUE(dir.entries().empty());
}

TEST(npy, rows_written_from_several_threads) {
  TempDir dir;
  std::string path = dir.file("mt.npy");
  const int rows = 64, cols = 1000;
  imgnorm::NpyWriter w(path, DType::int32, {rows, cols});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::int32_t> row(cols);
      for (int r = rows - 1 - t; r >= 0; r -= 4) {
        for (int k = 0; k < cols; ++k) row[k] = r * cols + k;
        w.write_rows(r, row.data(), 1);
      }
    });
  }
  for (auto& t : threads) t.join();
  w.commit();
  imgnorm::NpyArray a = imgnorm::read_npy(path);
  const std::int32_t* p = a.as<std::int32_t>();
  for (int i = 0; i < rows * cols; ++i) ASSERT_EQ(p[i], i);
}

TEST(npy, write_errors_name_the_path) {
  TempDir dir;
  std::string path = dir.file("no/such/folder/images.npy");
  try {
    imgnorm::NpyWriter w(path, DType::float32, {2, 2});
    FAIL();
  } catch (const imgnorm::Error& e) {
    EXPECT_EQ(e.code(), imgnorm::ErrorCode::io);
    EXPECT_EQ(std::string(e.what()), path + ": cannot create: No such file or directory");
  }
  // A file size limit makes the space reservation fail (as a full disk would); the temporary is
  // removed. Run in a child so the limit does not leak into other tests.
  std::string big = dir.file("big.npy");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {1 << 20, 1 << 20};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    try {
      imgnorm::NpyWriter w(big, DType::float32, {1000, 1000});
      ::_exit(2);
    } catch (const imgnorm::Error& e) {
      bool ok =
          e.code() == imgnorm::ErrorCode::io && std::string(e.what()).rfind(big + ": ", 0) == 0;
      ::_exit(ok ? 0 : 3);
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(dir.entries().empty());
}

TEST(npy, has_npy_extension_ignores_case_and_needs_the_dot) {
  EXPECT_TRUE(imgnorm::has_npy_extension("x.npy"));
  EXPECT_TRUE(imgnorm::has_npy_extension("dir/X.NPY"));
  EXPECT_TRUE(imgnorm::has_npy_extension(".npy"));
  EXPECT_FALSE(imgnorm::has_npy_extension("npy"));
  EXPECT_FALSE(imgnorm::has_npy_extension("x_npy"));
  EXPECT_FALSE(imgnorm::has_npy_extension("flowers/"));
  EXPECT_FALSE(imgnorm::has_npy_extension("x.npy.txt"));
}
