#include "imgnorm/error.hpp"

namespace imgnorm {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::io:
      return "io";
    case ErrorCode::unsupported:
      return "unsupported";
    case ErrorCode::corrupt:
      return "corrupt";
    case ErrorCode::too_large:
      return "too_large";
    case ErrorCode::format:
      return "format";
    case ErrorCode::empty:
      return "empty";
    case ErrorCode::interrupted:
      return "interrupted";
    case ErrorCode::out_of_memory:
      return "out_of_memory";
  }
  return "unknown";
}

Error with_path(const Error& e, const std::string& path) {
  std::string msg = e.what();
  if (msg.rfind(path + ": ", 0) == 0) return e;
  return Error(e.code(), path + ": " + msg);
}

}  // namespace imgnorm
