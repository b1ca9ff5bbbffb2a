#pragma once
// OpenBLAS's thread count for a scope (src/ only): the pipeline's workers run the covariance
// blocks with one BLAS thread each, so OpenBLAS does not start its own threads against them.

namespace imgnorm::detail {

/// Sets OpenBLAS's thread count to `threads` (0: unchanged) and restores it on destruction. The
/// setting is process-wide: scopes must not overlap across threads.
class BlasThreads {
 public:
  explicit BlasThreads(int threads);
  ~BlasThreads();
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int previous_;
};

}  // namespace imgnorm::detail
