#include "imgnorm/dtype.hpp"

#include "enum_names.hpp"

namespace imgnorm {

std::size_t dtype_size(DType dtype) noexcept {
  switch (dtype) {
    case DType::bool_:
    case DType::uint8:
      return 1;
    case DType::uint16:
    case DType::float16:
      return 2;
    case DType::int32:
    case DType::float32:
      return 4;
    case DType::int64:
    case DType::float64:
      return 8;
  }
  return 1;
}

const char* to_string(DType dtype) noexcept {
  switch (dtype) {
    case DType::bool_:
      return "bool";
    case DType::uint8:
      return "uint8";
    case DType::uint16:
      return "uint16";
    case DType::int32:
      return "int32";
    case DType::int64:
      return "int64";
    case DType::float16:
      return "float16";
    case DType::float32:
      return "float32";
    case DType::float64:
      return "float64";
  }
  return "?";
}

DType parse_dtype(const std::string& text) {
  static constexpr DType kAll[] = {DType::bool_, DType::uint8,   DType::uint16,  DType::int32,
                                   DType::int64, DType::float16, DType::float32, DType::float64};
  return detail::parse_enum(text, kAll, "dtype");
}

}  // namespace imgnorm
