// Peer (c), the limit: read and decode every image of a folder tree on all cores and do nothing
// else. Written directly on TurboJPEG and libspng (not on imgnorm), so it measures the decoders,
// not our code: one decoder handle and reusable buffers per thread, one pread per file.
//
//   decode_only DIR [--min-size N] [--threads T]
//   decode_only --list FILE [--min-size N] [--threads T]
//   decode_only --write FILE --bytes B
//
// --list FILE: exactly the files of an `imgnorm --list` file (paths relative to its folder), so
// the limit is measured on the files imgnorm reads.
// --min-size N: decode JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) whose result is still at
// least N×N, the factor imgnorm picks for `--size N` without --exact-decode.
// --write FILE --bytes B: no decoding; writes B bytes from one memory buffer to FILE (8 MiB
// writes, no fsync, as imgnorm normalize writes its output): the disk half of the limit of
// `normalize`.

#include <fcntl.h>
#include <spng.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

// A grow-only buffer that is never value-initialised (std::vector::resize would zero it).
struct Buffer {
  std::unique_ptr<unsigned char[]> data;
  std::size_t capacity = 0;
  unsigned char* get(std::size_t n) {
    if (n > capacity) {
      data.reset(new unsigned char[n]);
      capacity = n;
    }
    return data.get();
  }
};

// The whole file with one pread (a loop only if the kernel returns less).
bool read_all(const std::string& path, Buffer& buf, std::size_t& size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return false;
  }
  const std::size_t want = static_cast<std::size_t>(st.st_size);
  unsigned char* p = buf.get(want);
  std::size_t off = 0;
  while (off < want) {
    const ssize_t n = ::pread(fd, p + off, want - off, static_cast<off_t>(off));
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  size = off;
  return true;
}

int write_only(const char* path, std::uint64_t bytes) {
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror(path);
    return 1;
  }
  constexpr std::size_t kChunk = std::size_t{8} << 20;
  std::vector<unsigned char> chunk(kChunk, 0x3f);
  for (std::uint64_t done = 0; done < bytes;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, bytes - done));
    const ssize_t w = ::pwrite(fd, chunk.data(), n, static_cast<off_t>(done));
    if (w <= 0) {
      std::perror(path);
      return 1;
    }
    done += static_cast<std::uint64_t>(w);
  }
  ::close(fd);
  std::printf("%llu bytes written\n", static_cast<unsigned long long>(bytes));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 5 && !std::strcmp(argv[1], "--write") && !std::strcmp(argv[3], "--bytes"))
    return write_only(argv[2], std::strtoull(argv[4], nullptr, 10));
  const bool from_list = argc >= 3 && !std::strcmp(argv[1], "--list");
  if (argc < 2 || (argv[1][0] == '-' && !from_list)) {
    std::fprintf(stderr,
                 "usage: decode_only DIR|--list FILE [--min-size N] [--threads T]\n"
                 "       decode_only --write FILE --bytes B\n");
    return 2;
  }
  int min_size = 0;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  for (int i = from_list ? 3 : 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--min-size")) min_size = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  threads = std::max(threads, 1);
  std::vector<std::string> files;
  if (from_list) {  // exactly the files of an `imgnorm --list` file (relative to its folder)
    const fs::path base = fs::absolute(argv[2]).parent_path();
    std::FILE* f = std::fopen(argv[2], "r");
    if (!f) {
      std::perror(argv[2]);
      return 2;
    }
    char line[4096];
    while (std::fgets(line, sizeof line, f)) {
      std::string s(line);
      while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
      if (!s.empty() && s[0] != '#') files.push_back((base / s).string());
    }
    std::fclose(f);
  } else {
    for (auto& e : fs::recursive_directory_iterator(argv[1])) {
      if (!e.is_regular_file()) continue;
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (ext == ".jpg" || ext == ".jpeg" || ext == ".png") files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());

  int nsf = 0;
  const tjscalingfactor* sf = tjGetScalingFactors(&nsf);
  auto has_factor = [&](int denom) {
    for (int k = 0; k < nsf; ++k)
      if (sf[k].num == 1 && sf[k].denom == denom) return true;
    return false;
  };

  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> pixels{0}, failed{0};
  std::atomic<std::uint64_t> by_denom[9] = {};
  auto work = [&] {
    tjhandle tj = tjInitDecompress();
    Buffer bytes, out;
    std::uint64_t my_pixels = 0, my_failed = 0;
    std::uint64_t my_denom[9] = {};
    for (std::size_t i; (i = next++) < files.size();) {
      std::size_t size = 0;
      if (!read_all(files[i], bytes, size) || size < 8) {
        ++my_failed;
        continue;
      }
      const unsigned char* b = bytes.data.get();
      if (b[0] == 0xFF && b[1] == 0xD8) {
        int w, h, sub, cs;
        if (tjDecompressHeader3(tj, b, size, &w, &h, &sub, &cs) != 0) {
          ++my_failed;
          continue;
        }
        // ceil(size / d), as libjpeg-turbo scales; the largest d whose result covers min_size.
        int denom = 1;
        if (min_size > 0) {
          for (int d : {8, 4, 2}) {
            if (!has_factor(d)) continue;
            if ((w + d - 1) / d >= min_size && (h + d - 1) / d >= min_size) {
              denom = d;
              break;
            }
          }
        }
        const int sw = (w + denom - 1) / denom, sh = (h + denom - 1) / denom;
        unsigned char* o = out.get(static_cast<std::size_t>(sw) * sh * 3);
        if (tjDecompress2(tj, b, size, o, sw, 0, sh, TJPF_RGB, 0) != 0) {
          ++my_failed;
          continue;
        }
        my_pixels += static_cast<std::uint64_t>(sw) * sh;
        ++my_denom[denom];
      } else {
        spng_ctx* ctx = spng_ctx_new(0);
        spng_set_png_buffer(ctx, b, size);
        std::size_t n = 0;
        if (spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &n) == 0 &&
            spng_decode_image(ctx, out.get(n), n, SPNG_FMT_RGB8, 0) == 0) {
          my_pixels += n / 3;
          ++my_denom[1];
        } else {
          ++my_failed;
        }
        spng_ctx_free(ctx);
      }
    }
    tjDestroy(tj);
    pixels += my_pixels;
    failed += my_failed;
    for (int d = 0; d < 9; ++d) by_denom[d] += my_denom[d];
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  std::printf(
      "%zu files, %llu decoded pixels, %llu failed; scale 1/1: %llu, 1/2: %llu, "
      "1/4: %llu, 1/8: %llu\n",
      files.size(), static_cast<unsigned long long>(pixels.load()),
      static_cast<unsigned long long>(failed.load()),
      static_cast<unsigned long long>(by_denom[1].load()),
      static_cast<unsigned long long>(by_denom[2].load()),
      static_cast<unsigned long long>(by_denom[4].load()),
      static_cast<unsigned long long>(by_denom[8].load()));
  return failed.load() == 0 ? 0 : 1;
}
