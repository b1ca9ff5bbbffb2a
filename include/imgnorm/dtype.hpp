#pragma once
/// \file dtype.hpp
/// The element types imgnorm reads and writes, named as numpy names them. One enum for .npy files
/// and for the output of a normalization (which is float32 or float16).

#include <cstddef>
#include <string>

#include "imgnorm/export.hpp"

namespace imgnorm {

/// An element type. Names follow numpy's (`bool_` is numpy's `bool`).
enum class DType { bool_, uint8, uint16, int32, int64, float16, float32, float64 };

/// Bytes per element (1 to 8).
IMGNORM_API std::size_t dtype_size(DType dtype) noexcept;
/// numpy's name: "uint8", "float32", "bool", ...
IMGNORM_API const char* to_string(DType dtype) noexcept;
/// Parses numpy's name ("float32", "uint8", "bool"). Throws Error(invalid_argument) naming the
/// text and the accepted names.
IMGNORM_API DType parse_dtype(const std::string& text);

}  // namespace imgnorm
