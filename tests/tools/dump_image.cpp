// imgnorm_dump: decodes one image with imgnorm::Decoder and writes it as a u8 .npy (H, W, C), for
// the Python reference tests.
//
//   imgnorm_dump FILE OUT.npy [--channels rgb|bgr|gray] [--max-pixels N] [--no-orientation]
//                [--allow-truncated] [--alpha drop|white|black|R,G,B]
//
// Exit status: 0 written, 1 imgnorm::Error (message on stderr as "error: ..."), 2 bad usage.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "imgnorm/decode.hpp"
#include "imgnorm/error.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/recipe.hpp"

namespace {

struct Args {
  std::string input;
  std::string output;
  imgnorm::DecodeOptions decode;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "imgnorm_dump: " << why << "\n"
            << "usage: imgnorm_dump FILE OUT.npy [--channels rgb|bgr|gray] [--max-pixels N]\n"
            << "                    [--no-orientation] [--allow-truncated] [--alpha A]\n";
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--channels") {
      a.decode.channels = imgnorm::parse_channel_order(value());
    } else if (arg == "--max-pixels") {
      const std::string v = value();
      char* end = nullptr;
      errno = 0;
      const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || errno != 0 || v[0] == '-') usage("bad --max-pixels " + v);
      a.decode.max_pixels = n;
    } else if (arg == "--no-orientation") {
      a.decode.apply_orientation = false;
    } else if (arg == "--allow-truncated") {
      a.decode.allow_truncated = true;
    } else if (arg == "--alpha") {
      a.decode.alpha = imgnorm::parse_alpha(value());
    } else if (arg.size() > 1 && arg[0] == '-') {
      usage("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) usage("need FILE and OUT.npy");
  a.input = positional[0];
  a.output = positional[1];
  return a;
}

/// Writes an interleaved u8 image as NumPy .npy version 1.0, shape (H, W, C).
void write_npy(const std::string& path, const imgnorm::ImageView& v) {
  std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (" +
                     std::to_string(v.height) + ", " + std::to_string(v.width) + ", " +
                     std::to_string(v.channels) + "), }";
  // magic (6) + version (2) + header length (2) + dict + padding + '\n' = multiple of 64.
  const std::size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  const char magic[] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  f.write(magic, sizeof magic);
  const std::uint16_t len = static_cast<std::uint16_t>(dict.size());
  const char len_le[2] = {static_cast<char>(len & 0xFF), static_cast<char>(len >> 8)};
  f.write(len_le, 2);
  f.write(dict.data(), static_cast<std::streamsize>(dict.size()));
  const std::size_t row = static_cast<std::size_t>(v.width) * v.channels;
  for (int y = 0; y < v.height; ++y) {
    f.write(reinterpret_cast<const char*>(v.row(y)), static_cast<std::streamsize>(row));
  }
  f.close();
  if (!f) throw imgnorm::Error(imgnorm::ErrorCode::io, path + ": cannot write");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse_args(argc, argv);
    imgnorm::DecodeInfo info;
    imgnorm::Image img = imgnorm::decode_file(args.input, args.decode, &info);
    // Later steps (e.g. a resize) go here, turning `img` into the image to write.
    write_npy(args.output, img.view());
  } catch (const imgnorm::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
