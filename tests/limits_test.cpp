// Memory and work are bounded (issue 10, items 4, 9, 10, 19): the JPEG scan limit, what
// --allow-truncated forgives, threads and slots capped at the work, --max-memory throttling, huge
// buffers given back, sizes refused up front, free disk space checked before writing.

#include <gtest/gtest.h>
#include <stdio.h>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "imgnorm/decode.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/output.hpp"
#include "imgnorm/pipeline.hpp"
#include "imgnorm/stats_job.hpp"
#include "test_files.hpp"

using namespace imgnorm;
using imgnorm::testing::TempDir;
using imgnorm::testing::write_bytes;

namespace {

const std::string kFlowers = std::string(IMGNORM_SOURCE_DIR) + "/examples/flowers";
const std::string kData = IMGNORM_TEST_DATA;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

/// A legal progressive gray JPEG of `size`×`size` pixels written by libjpeg with the longest
/// progression its encoder accepts: every coefficient in its own scan, then refined bit by bit
/// (11 scans per coefficient, 704 in all). Nothing in it is corrupt; it is only a lot of work.
std::string scan_bomb_jpeg(int size) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long len = 0;
  jpeg_mem_dest(&c, &buf, &len);
  c.image_width = static_cast<JDIMENSION>(size);
  c.image_height = static_cast<JDIMENSION>(size);
  c.input_components = 1;
  c.in_color_space = JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  constexpr int kAl = 10;  // the encoder's largest successive-approximation shift for 8 bits
  std::vector<jpeg_scan_info> scans;
  for (int k = 0; k < DCTSIZE2; ++k) {
    scans.push_back({1, {0, 0, 0, 0}, k, k, 0, kAl});
    for (int ah = kAl; ah >= 1; --ah) scans.push_back({1, {0, 0, 0, 0}, k, k, ah, ah - 1});
  }
  c.scan_info = scans.data();
  c.num_scans = static_cast<int>(scans.size());
  jpeg_start_compress(&c, TRUE);
  std::vector<JSAMPLE> row(static_cast<std::size_t>(size));
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) row[x] = static_cast<JSAMPLE>((x * 7 + y * 13) & 255);
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::string out(reinterpret_cast<const char*>(buf), len);
  std::free(buf);
  return out;
}

/// Number of SOS markers (scans) in a JPEG.
int count_scans(const std::string& jpeg) {
  int n = 0;
  for (std::size_t i = 0; i + 1 < jpeg.size(); ++i)
    if (static_cast<unsigned char>(jpeg[i]) == 0xFF &&
        static_cast<unsigned char>(jpeg[i + 1]) == 0xDA)
      ++n;
  return n;
}

template <typename F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no imgnorm::Error thrown";
  return Error(ErrorCode::io, "");
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// Resident memory of this process in bytes (/proc/self/statm).
std::uint64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

TEST(limits, jpeg_scan_bomb_is_refused_quickly_naming_the_file) {
  TempDir dir;
  const std::string path = dir.str("bomb.jpg");
  const std::string bytes = scan_bomb_jpeg(64);
  ASSERT_EQ(count_scans(bytes), 704);
  write_bytes(path, bytes);
  for (bool allow_truncated : {false, true}) {
    SCOPED_TRACE(allow_truncated);
    DecodeOptions o;
    o.allow_truncated = allow_truncated;
    const auto start = std::chrono::steady_clock::now();
    const Error e = error_of([&] { decode_file(path, o); });
    EXPECT_LT(seconds_since(start), 2.0);
    EXPECT_EQ(e.code(), ErrorCode::too_large);
    EXPECT_EQ(std::string(e.what()),
              path +
                  ": JPEG: more than 500 scans (the limit: a progressive JPEG's work grows "
                  "with its scans)");
  }
  // The limit is an option: the same file decodes when allowed its 704 scans.
  DecodeOptions lenient;
  lenient.max_scans = 704;
  Image img = decode_file(path, lenient);
  EXPECT_EQ(img.width(), 64);
  lenient.max_scans = 703;
  EXPECT_EQ(error_of([&] { decode_file(path, lenient); }).code(), ErrorCode::too_large);

  // In a run it is a skipped file, with the reason.
  Dataset ds;
  ds.root = dir.path.string();
  ds.entries.push_back({path, 0});
  ds.classes = {"x"};
  StatsJob job;
  job.recipe.size = {16, 16};
  const StatsFile st = compute_stats(ds, job, {}, "test");
  ASSERT_EQ(st.skipped.size(), 1u);
  EXPECT_EQ(st.skipped[0].path, path);
  EXPECT_EQ(st.skipped[0].code, ErrorCode::too_large);
  EXPECT_NE(st.skipped[0].reason.find("more than 500 scans"), std::string::npos);
}

TEST(limits, ordinary_progressive_jpegs_are_under_the_scan_limit) {
  const std::string path = kData + "/jpeg_progressive.jpg";
  const std::string bytes = imgnorm::testing::read_bytes(path);
  const int scans = count_scans(bytes);
  ASSERT_GT(scans, 2);
  DecodeOptions o;
  o.max_scans = scans;
  EXPECT_NO_THROW(decode_file(path, o));
  o.max_scans = scans - 1;
  EXPECT_EQ(error_of([&] { decode_file(path, o); }).code(), ErrorCode::too_large);
}

TEST(limits, allow_truncated_forgives_truncation_only) {
  // The file: a progressive JPEG followed by thousands of repeated (empty) scans. libjpeg
  // warns "Inconsistent progression sequence"; --allow-truncated used to silence every warning
  // and accept it (grey, after minutes).
  const std::string good = imgnorm::testing::read_bytes(kData + "/jpeg_progressive.jpg");
  const std::size_t last_sos = good.rfind("\xFF\xDA");
  const std::size_t eoi = good.rfind("\xFF\xD9");
  ASSERT_NE(last_sos, std::string::npos);
  ASSERT_GT(eoi, last_sos);
  std::string repeated = good.substr(0, eoi);
  for (int i = 0; i < 200; ++i) repeated += good.substr(last_sos, eoi - last_sos);
  repeated += "\xFF\xD9";
  TempDir dir;
  const std::string path = dir.str("repeated.jpg");
  write_bytes(path, repeated);
  DecodeOptions o;
  o.allow_truncated = true;
  const Error e = error_of([&] { decode_file(path, o); });
  EXPECT_EQ(e.code(), ErrorCode::corrupt);
  EXPECT_EQ(std::string(e.what()).rfind(path + ": JPEG: ", 0), 0u) << e.what();

  // Junk between two scans ("extraneous bytes before marker 0xda") is corruption too, whether
  // or not the file is also cut short.
  std::string junk = good;
  junk.insert(good.find("\xFF\xDA", good.find("\xFF\xDA") + 2), "\x12\x34\x56");
  const std::string junk_path = dir.str("junk.jpg");
  write_bytes(junk_path, junk);
  const Error j = error_of([&] { decode_file(junk_path, o); });
  EXPECT_EQ(j.code(), ErrorCode::corrupt);
  EXPECT_NE(std::string(j.what()).find("extraneous bytes before marker 0xda"), std::string::npos)
      << j.what();
  write_bytes(junk_path, junk.substr(0, junk.size() * 2 / 3));
  EXPECT_EQ(error_of([&] { decode_file(junk_path, o); }).code(), ErrorCode::corrupt);

  // Files that are only cut short still decode (grey fill), as cv2.imread gives them.
  for (const char* f : {"jpeg_truncated.jpg", "jpeg_truncated_progressive.jpg"}) {
    SCOPED_TRACE(f);
    Image img = decode_file(kData + "/" + f, o);
    EXPECT_EQ(img.width(), 203);
  }
}

TEST(limits, threads_and_slots_are_capped_at_the_images) {
  Dataset ds = scan_folder(kFlowers);
  ds.entries.resize(3);
  PipelineOptions o;
  o.threads = 1024;
  EXPECT_EQ(pipeline_slots(o, 3), 3);
  EXPECT_EQ(pipeline_slots(o, 40), 40);
  EXPECT_EQ(pipeline_slots(o), 4096);
  // Slots whose bytes do not fit in half of the limit are not used.
  o.max_memory = 100 << 20;
  o.slot_bytes = 10 << 20;
  EXPECT_EQ(pipeline_slots(o, 40), 5);
  o.slot_bytes = 90 << 20;
  EXPECT_EQ(pipeline_slots(o, 40), 1);

  PipelineOptions run;
  run.threads = 1024;
  std::mutex m;
  std::set<std::thread::id> ids;
  int max_slot = 0;
  Recipe recipe;
  recipe.size = {16, 16};
  run_pipeline(
      ds.entries, recipe, run,
      [&](const LoadedImage& li) {
        std::lock_guard<std::mutex> lock(m);
        ids.insert(std::this_thread::get_id());
        max_slot = std::max(max_slot, li.slot);
      },
      [](std::size_t, int, const Error* e) { EXPECT_EQ(e, nullptr); });
  EXPECT_LE(ids.size(), 3u);
  EXPECT_LT(max_slot, 3);
}

TEST(limits, max_memory_throttles_images_in_flight) {
  Dataset ds = scan_folder(kFlowers);
  ds.entries.resize(12);
  Recipe recipe;
  recipe.size = {16, 16};
  recipe.exact_decode = true;  // every image needs its full decode (hundreds of KiB)
  // Each image stays in process() until another one joins it (once), or `wait` runs out.
  auto max_in_flight = [&](std::uint64_t max_memory, std::chrono::milliseconds wait) {
    PipelineOptions o;
    o.threads = 4;
    o.max_memory = max_memory;
    std::atomic<int> now{0}, most{0};
    run_pipeline(
        ds.entries, recipe, o,
        [&](const LoadedImage&) {
          const int n = ++now;
          int m = most.load();
          while (n > m && !most.compare_exchange_weak(m, n)) {
          }
          const auto until = std::chrono::steady_clock::now() + wait;
          while (most.load() < 2 && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          --now;
        },
        [](std::size_t, int, const Error* e) { EXPECT_EQ(e, nullptr); });
    return most.load();
  };
  // 64 KiB is less than any of these images needs: each is loaded alone, none fails.
  EXPECT_EQ(max_in_flight(64 << 10, std::chrono::milliseconds(40)), 1);
  if (std::thread::hardware_concurrency() > 1) {  // oneTBB runs at most one thread per core
    EXPECT_EQ(max_in_flight(std::uint64_t{1} << 30, std::chrono::seconds(2)), 2);
  }
}

TEST(limits, a_huge_image_gives_its_buffers_back) {
  if (kAsan) GTEST_SKIP() << "ASan keeps freed memory in its quarantine";
  TempDir dir;
  // 2800x2800 RGBA, 16 bits: 60 MiB decoded by libspng as RGBA16, 22 MiB as RGB.
  const int side = 2800;
  {
    std::vector<std::uint8_t> px(static_cast<std::size_t>(side) * side * 8, 0x40);
    spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    spng_set_option(ctx, SPNG_IMG_COMPRESSION_LEVEL, 1);
    spng_ihdr ihdr{};
    ihdr.width = side;
    ihdr.height = side;
    ihdr.bit_depth = 16;
    ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR_ALPHA;
    ASSERT_EQ(spng_set_ihdr(ctx, &ihdr), 0);
    ASSERT_EQ(spng_encode_image(ctx, px.data(), px.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
    std::size_t len = 0;
    int err = 0;
    void* buf = spng_get_png_buffer(ctx, &len, &err);
    ASSERT_EQ(err, 0);
    write_bytes(dir.str("big.png"), std::string(static_cast<const char*>(buf), len));
    std::free(buf);
    spng_ctx_free(ctx);
  }
  Dataset ds = scan_folder(kFlowers);
  std::vector<Entry> entries = {{dir.str("big.png"), 0}, ds.entries[0], ds.entries[1]};
  PipelineOptions o;
  o.threads = 1;
  Recipe recipe;
  recipe.size = {32, 32};
  std::vector<std::uint64_t> rss(entries.size());
  run_pipeline(
      entries, recipe, o, [&](const LoadedImage& li) { rss[li.index] = resident_bytes(); },
      [](std::size_t, int, const Error* e) { EXPECT_EQ(e, nullptr); });
  // While the big image is loaded its buffers are resident; afterwards they are gone.
  const std::uint64_t big = std::uint64_t{side} * side * (8 + 3);
  EXPECT_GT(rss[0], rss[2] + big / 2) << rss[0] << " then " << rss[2];
}

TEST(limits, a_size_that_cannot_fit_is_refused_up_front) {
  Dataset ds = scan_folder(kFlowers);
  StatsJob job;
  job.recipe.size = {65535, 65535};
  PipelineOptions o;
  o.max_memory = std::uint64_t{8} << 30;
  const auto start = std::chrono::steady_clock::now();
  const Error e = error_of([&] { compute_stats(ds, job, o, "test"); });
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  EXPECT_EQ(std::string(e.what()),
            "--size 65535x65535: one image in flight needs 12 GiB (12 GiB for the resized "
            "65535x65535 image), more than the memory limit of 8.0 GiB (--max-memory); give a "
            "smaller --size or a larger --max-memory");
  // With an output row per image (normalize): both parts are named.
  o.slot_bytes = std::uint64_t{20000} * 20000 * 3 * 4;
  o.max_memory = std::uint64_t{2} << 30;
  Recipe r;
  r.size = {20000, 20000};
  const Error n = error_of([&] { check_memory(r, o); });
  EXPECT_EQ(std::string(n.what()),
            "--size 20000x20000: one image in flight needs 5.6 GiB (1.1 GiB for the resized "
            "20000x20000 image + 4.5 GiB for its output row), more than the memory limit of "
            "2.0 GiB (--max-memory); give a smaller --size or a larger --max-memory");
}

TEST(limits, memory_sizes_parse_with_binary_units) {
  EXPECT_EQ(parse_memory_size("2G"), std::uint64_t{2} << 30);
  EXPECT_EQ(parse_memory_size("512M"), std::uint64_t{512} << 20);
  EXPECT_EQ(parse_memory_size("512m"), std::uint64_t{512} << 20);
  EXPECT_EQ(parse_memory_size("1.5G"), std::uint64_t{3} << 29);
  EXPECT_EQ(parse_memory_size("2GiB"), std::uint64_t{2} << 30);
  EXPECT_EQ(parse_memory_size("2gb"), std::uint64_t{2} << 30);
  EXPECT_EQ(parse_memory_size("64K"), std::uint64_t{64} << 10);
  EXPECT_EQ(parse_memory_size("1T"), std::uint64_t{1} << 40);
  EXPECT_EQ(parse_memory_size("1000000"), 1000000u);
  for (const char* bad : {"", "G", "12X", "-1", "1..5G", "2 G", "0", "0.1", "9000000000G"}) {
    SCOPED_TRACE(bad);
    const Error e = error_of([&] { parse_memory_size(bad); });
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_EQ(std::string(e.what()).rfind("--max-memory: '" + std::string(bad) + "' ", 0), 0u)
        << e.what();
  }
  EXPECT_EQ(memory_size_text(100), "100 bytes");
  EXPECT_EQ(memory_size_text(std::uint64_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(memory_size_text(std::uint64_t{12} << 30), "12 GiB");
  // The default is half of the memory (or of a container's limit): more than nothing, less
  // than everything.
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  EXPECT_LE(default_max_memory(), static_cast<std::uint64_t>(pages) * page / 2);
  EXPECT_GE(default_max_memory(), std::uint64_t{64} << 20);
}

TEST(limits, free_space_is_checked_before_writing) {
  TempDir dir;
  EXPECT_NO_THROW(check_free_space(dir.path.string(), 1000, "images.npy"));
  const std::uint64_t huge = std::uint64_t{1} << 62;
  const Error e = error_of([&] { check_free_space(dir.path.string(), huge, "images.npy"); });
  EXPECT_EQ(e.code(), ErrorCode::io);
  const std::string msg = e.what();
  EXPECT_EQ(msg.rfind(dir.path.string() + ": images.npy needs 4611686018427387904 bytes (4.0 EiB), "
                                          "but its filesystem has only ",
                      0),
            0u)
      << msg;
}
