// A plug-in with imgnorm inside: one extern "C" entry point, everything else hidden.
#include <cstddef>
#include <exception>

#include "imgnorm/image.hpp"
#include "imgnorm/stats.hpp"

/// Per-channel means (0–255) of a tightly packed RGB image into means[0..2]. Returns 0, or -1
/// when imgnorm rejects the input (an empty image): no exception crosses the C boundary.
extern "C" __attribute__((visibility("default"))) int demo_channel_means(const unsigned char* rgb,
                                                                         int width, int height,
                                                                         double* means) noexcept {
  try {
    imgnorm::Accumulator acc(3);
    acc.add(imgnorm::ImageView{rgb, width, height, 3, static_cast<std::size_t>(width) * 3});
    const imgnorm::Summary s = imgnorm::summarize(acc);
    for (int c = 0; c < 3; ++c) means[c] = s.channel[c].mean;
    return 0;
  } catch (const std::exception&) {
    return -1;
  }
}
