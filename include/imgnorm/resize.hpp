#pragma once
/// \file resize.hpp
/// Bringing a decoded image to the recipe's size: stretch, crop (shorter side + center crop) or
/// pad (letterbox), with cv::resize's interpolation (OpenCV imgproc, run on our buffers).

#include "imgnorm/export.hpp"
#include "imgnorm/image.hpp"
#include "imgnorm/recipe.hpp"

namespace imgnorm {

/// Resizes `src` to recipe.size by recipe.resize / recipe.interp / recipe.pad_value into `out`
/// (reset to size.width × size.height × src.channels). With stretch + linear this is exactly
/// cv2.resize(src, (W, H)). crop: as torchvision's Resize + CenterCrop: the side that decides the
/// scale s = max(W/w, H/h) becomes exactly W (or H), the other int(side·s); then the W×H window at
/// offsets round((w' − W)/2), round((h' − H)/2) (half to even, as Python's round).
/// pad (letterbox): s = min(W/w, H/h), same rounding, centered at offsets floor((W − w')/2) on a
/// pad_value canvas. ResizeMode::none copies `src` and
/// requires it to have the recipe's size (Error(invalid_argument) otherwise).
/// `scratch` holds the intermediate image of crop and pad (reused between calls).
IMGNORM_API void resize(const ImageView& src, const Recipe& recipe, Image& out, Image& scratch);

/// Which code runs the bilinear (Interp::linear) resize of 1- to 4-channel images.
enum class ResizeKernel {
  fused,  ///< imgnorm's own kernel: the same bytes as cv::resize(INTER_LINEAR), less work (default)
  opencv,  ///< cv::resize itself: the reference the fused kernel is tested against
};

/// Selects the bilinear resize kernel for the whole process (all threads, later images). The
/// initial value is ResizeKernel::opencv when the environment variable IMGNORM_RESIZE_KERNEL is
/// "opencv" at the first resize, else ResizeKernel::fused. Both give identical bytes.
IMGNORM_API void set_resize_kernel(ResizeKernel kernel) noexcept;

/// The bilinear resize kernel in effect (see set_resize_kernel).
IMGNORM_API ResizeKernel resize_kernel() noexcept;

/// The smallest decoded size (w, h) that resize() needs to avoid upsampling an image whose full
/// size is `full`: stretch needs (W, H); crop and pad need the scaled size before cropping/padding.
IMGNORM_API Size needed_source_size(const Recipe& recipe, Size full);

}  // namespace imgnorm
