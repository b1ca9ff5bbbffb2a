#include "imgnorm/resize.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <opencv2/imgproc.hpp>

#include "imgnorm/error.hpp"
#include "linear_resize.hpp"

namespace imgnorm {
namespace {

int cv_interp(Interp interp) {
  switch (interp) {
    case Interp::linear:
      return cv::INTER_LINEAR;
    case Interp::area:
      return cv::INTER_AREA;
    case Interp::nearest:
      return cv::INTER_NEAREST;
    case Interp::cubic:
      return cv::INTER_CUBIC;
    case Interp::lanczos:
      return cv::INTER_LANCZOS4;
  }
  return cv::INTER_LINEAR;
}

cv::Mat as_mat(const ImageView& v) {
  // cv::Mat has no const view; resize only reads from src.
  return cv::Mat(v.height, v.width, CV_8UC(v.channels), const_cast<std::uint8_t*>(v.data),
                 v.stride);
}

// Python's round() of d / 2 (half to even), which torchvision's CenterCrop uses for its offsets.
int center_offset(int d) {
  int off = d / 2;
  if (d % 2 == 1 && off % 2 == 1) ++off;
  return off;
}

// Scaled size that covers (crop) or fits in (pad) the target. The side that decides the scale is
// set exactly to the target; the other is truncated, as torchvision's Resize(int) computes it.
Size scaled_size(Size target, Size full, bool cover) {
  double sx = static_cast<double>(target.width) / full.width;
  double sy = static_cast<double>(target.height) / full.height;
  bool by_width = cover ? sx >= sy : sx <= sy;
  if (by_width) {
    int h = static_cast<int>(static_cast<double>(full.height) * target.width / full.width);
    h = cover ? std::max(h, target.height) : std::clamp(h, 1, target.height);
    return {target.width, h};
  }
  int w = static_cast<int>(static_cast<double>(full.width) * target.height / full.height);
  w = cover ? std::max(w, target.width) : std::clamp(w, 1, target.width);
  return {w, target.height};
}

ResizeKernel kernel_from_environment() {
  const char* v = std::getenv("IMGNORM_RESIZE_KERNEL");
  return v && std::strcmp(v, "opencv") == 0 ? ResizeKernel::opencv : ResizeKernel::fused;
}

std::atomic<ResizeKernel>& kernel_setting() {
  static std::atomic<ResizeKernel> k{kernel_from_environment()};
  return k;
}

void resize_into(const ImageView& src, cv::Mat dst, Interp interp) {
  if (interp == Interp::linear && detail::linear_resize_supported(src.channels) &&
      kernel_setting().load(std::memory_order_relaxed) == ResizeKernel::fused) {
    thread_local detail::LinearResizeBuffers buffers;
    detail::linear_resize_u8(src.data, src.stride, src.width, src.height, src.channels, dst.data,
                             dst.step, dst.cols, dst.rows, buffers);
    return;
  }
  if (src.width == dst.cols && src.height == dst.rows) {
    // cv::resize to the same size is a copy; do it directly.
    for (int y = 0; y < src.height; ++y)
      std::memcpy(dst.ptr(y), src.row(y), static_cast<std::size_t>(src.width) * src.channels);
    return;
  }
  cv::resize(as_mat(src), dst, dst.size(), 0, 0, cv_interp(interp));
}

}  // namespace

void set_resize_kernel(ResizeKernel kernel) noexcept {
  kernel_setting().store(kernel, std::memory_order_relaxed);
}

ResizeKernel resize_kernel() noexcept { return kernel_setting().load(std::memory_order_relaxed); }

Size needed_source_size(const Recipe& recipe, Size full) {
  switch (recipe.resize) {
    case ResizeMode::stretch:
      return recipe.size;
    case ResizeMode::crop:
      return scaled_size(recipe.size, full, true);
    case ResizeMode::pad:
      return scaled_size(recipe.size, full, false);
    case ResizeMode::none:
      return full;
  }
  return full;
}

void resize(const ImageView& src, const Recipe& recipe, Image& out, Image& scratch) {
  const Size target = recipe.size;
  const int c = src.channels;
  const Size full{src.width, src.height};
  switch (recipe.resize) {
    case ResizeMode::none: {
      if (!(full == target))
        throw Error(ErrorCode::invalid_argument,
                    "image is " + std::to_string(full.width) + "x" + std::to_string(full.height) +
                        ", not " + std::to_string(target.width) + "x" +
                        std::to_string(target.height) + " (--resize none needs equal sizes)");
      out.reset(target.width, target.height, c);
      resize_into(src, cv::Mat(target.height, target.width, CV_8UC(c), out.data()), recipe.interp);
      return;
    }
    case ResizeMode::stretch:
      out.reset(target.width, target.height, c);
      resize_into(src, cv::Mat(target.height, target.width, CV_8UC(c), out.data()), recipe.interp);
      return;
    case ResizeMode::crop: {
      const Size s = scaled_size(target, full, true);
      scratch.reset(s.width, s.height, c);
      resize_into(src, cv::Mat(s.height, s.width, CV_8UC(c), scratch.data()), recipe.interp);
      const int x0 = center_offset(s.width - target.width);
      const int y0 = center_offset(s.height - target.height);
      out.reset(target.width, target.height, c);
      for (int y = 0; y < target.height; ++y)
        std::memcpy(out.row(y), scratch.row(y0 + y) + static_cast<std::size_t>(x0) * c,
                    out.stride());
      return;
    }
    case ResizeMode::pad: {
      const Size s = scaled_size(target, full, false);
      out.reset(target.width, target.height, c);
      std::memset(out.data(), recipe.pad_value, out.size_bytes());
      const int x0 = (target.width - s.width) / 2;
      const int y0 = (target.height - s.height) / 2;
      cv::Mat whole(target.height, target.width, CV_8UC(c), out.data());
      resize_into(src, whole(cv::Rect(x0, y0, s.width, s.height)), recipe.interp);
      return;
    }
  }
}

}  // namespace imgnorm
