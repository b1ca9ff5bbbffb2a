// detail::read_file into a worker's reused FileBytes (src/file_bytes.hpp): what the pipeline reads
// every file with. The same checks and messages as imgnorm::read_file, the allocation reused.

#include "file_bytes.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <string>
#include <vector>

#include "imgnorm/decode.hpp"
#include "imgnorm/error.hpp"
#include "test_files.hpp"

namespace {

using imgnorm::Error;
using imgnorm::ErrorCode;
using imgnorm::detail::FileBytes;
using imgnorm::testing::read_bytes;
using imgnorm::testing::TempDir;
using imgnorm::testing::write_bytes;

std::string message_of(const std::string& path, FileBytes& b) {
  try {
    imgnorm::detail::read_file(path, b);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    return e.what();
  }
  return "no error";
}

std::string text_of(const FileBytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

TEST(file_bytes, reads_exact_contents_and_reuses_the_allocation) {
  TempDir dir;
  const std::string big(5000, 'b'), small = "small file", bigger(9000, 'c');
  write_bytes(dir.path / "big", big);
  write_bytes(dir.path / "small", small);
  write_bytes(dir.path / "bigger", bigger);
  write_bytes(dir.path / "empty", "");
  FileBytes b;
  imgnorm::detail::read_file(dir.str("big"), b);
  EXPECT_EQ(text_of(b), big);
  const std::uint8_t* first = b.data();
  imgnorm::detail::read_file(dir.str("small"), b);
  EXPECT_EQ(text_of(b), small);  // the size is the file's, not the allocation's
  EXPECT_EQ(b.data(), first);    // no new allocation for a smaller file
  EXPECT_EQ(b.capacity(), big.size());
  imgnorm::detail::read_file(dir.str("empty"), b);
  EXPECT_EQ(b.size(), 0u);
  imgnorm::detail::read_file(dir.str("bigger"), b);
  EXPECT_EQ(text_of(b), bigger);
  EXPECT_EQ(b.capacity(), bigger.size());
  // The same bytes as the public read_file gives, on a real image.
  const std::string photo = std::string(IMGNORM_TEST_DATA) + "/png_rgb.png";
  imgnorm::detail::read_file(photo, b);
  EXPECT_EQ(text_of(b), read_bytes(photo));
  b.release();
  EXPECT_EQ(b.capacity(), 0u);
  EXPECT_EQ(b.size(), 0u);
}

TEST(file_bytes, errors_are_those_of_read_file) {
  TempDir dir;
  FileBytes b;
  write_bytes(dir.path / "ok", "abc");
  imgnorm::detail::read_file(dir.str("ok"), b);
  const std::string missing = dir.str("missing.jpg");
  EXPECT_EQ(message_of(missing, b), missing + ": no such file");
  EXPECT_EQ(b.size(), 0u);  // a failed read leaves no bytes of the previous file behind
  EXPECT_EQ(message_of(dir.str(""), b), dir.str("") + ": is a directory");
  const std::string fifo = dir.str("fifo.jpg");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(message_of(fifo, b), fifo + ": not a regular file");
  std::vector<std::uint8_t> v;
  try {
    imgnorm::read_file(fifo, v);
    ADD_FAILURE() << "read_file accepted a FIFO";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), fifo + ": not a regular file");
  }
}

}  // namespace
