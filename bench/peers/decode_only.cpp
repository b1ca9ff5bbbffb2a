// Peer (c), the limit: read and decode every image of a folder tree on all cores and do nothing
// else. Written directly on TurboJPEG and libspng (not on imgnorm), so it measures the decoders.
//
//   decode_only DIR [--min-size N] [--threads T]
//
// --min-size N: decode JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) whose result is still at
// least N×N, as imgnorm does for --size N without --exact-decode.

#include <fcntl.h>
#include <spng.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

static bool read_all(const std::string& path, std::vector<unsigned char>& buf) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return false;
  }
  buf.resize(static_cast<std::size_t>(st.st_size));
  std::size_t off = 0;
  while (off < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + off, buf.size() - off, static_cast<off_t>(off));
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  buf.resize(off);
  return true;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: decode_only DIR [--min-size N] [--threads T]\n");
    return 2;
  }
  int min_size = 0;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--min-size")) min_size = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  std::vector<std::string> files;
  for (auto& e : fs::recursive_directory_iterator(argv[1])) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (ext == ".jpg" || ext == ".jpeg" || ext == ".png") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> pixels{0}, failed{0};
  auto work = [&] {
    tjhandle tj = tjInitDecompress();
    std::vector<unsigned char> bytes, out;
    int nsf = 0;
    tjscalingfactor* sf = tjGetScalingFactors(&nsf);
    for (std::size_t i; (i = next++) < files.size();) {
      if (!read_all(files[i], bytes) || bytes.size() < 8) {
        ++failed;
        continue;
      }
      if (bytes[0] == 0xFF && bytes[1] == 0xD8) {
        int w, h, sub, cs;
        if (tjDecompressHeader3(tj, bytes.data(), bytes.size(), &w, &h, &sub, &cs) != 0) {
          ++failed;
          continue;
        }
        int sw = w, sh = h;
        if (min_size > 0) {
          for (int d : {8, 4, 2}) {
            for (int k = 0; k < nsf; ++k) {
              if (sf[k].num != 1 || sf[k].denom != d) continue;
              int tw = TJSCALED(w, sf[k]), th = TJSCALED(h, sf[k]);
              if (tw >= min_size && th >= min_size && sw == w) sw = tw, sh = th;
            }
          }
        }
        out.resize(static_cast<std::size_t>(sw) * sh * 3);
        if (tjDecompress2(tj, bytes.data(), bytes.size(), out.data(), sw, 0, sh, TJPF_RGB, 0) != 0)
          ++failed;
        pixels += static_cast<std::uint64_t>(sw) * sh;
      } else {
        spng_ctx* ctx = spng_ctx_new(0);
        spng_set_png_buffer(ctx, bytes.data(), bytes.size());
        std::size_t n = 0;
        if (spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &n) == 0) {
          out.resize(n);
          if (spng_decode_image(ctx, out.data(), n, SPNG_FMT_RGB8, 0) != 0) ++failed;
          pixels += n / 3;
        } else {
          ++failed;
        }
        spng_ctx_free(ctx);
      }
    }
    tjDestroy(tj);
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  std::printf("%zu files, %llu decoded pixels, %llu failed\n", files.size(),
              static_cast<unsigned long long>(pixels.load()),
              static_cast<unsigned long long>(failed.load()));
  return 0;
}
