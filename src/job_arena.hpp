#pragma once
// The TBB arena a job runs its threads in. TBB caps its workers at the hardware threads − 1 and
// prints "TBB Warning: The number of workers is currently limited to ..." when an arena asks for
// more; --threads above the cores (I/O-bound runs, network filesystems) would silently get the
// cores only. While a JobArena of more threads exists, the process-wide limit is raised to its
// thread count (tbb::global_control; with several at once, TBB takes the smallest).

#include <tbb/global_control.h>
#include <tbb/info.h>
#include <tbb/task_arena.h>

#include <optional>

namespace imgnorm::detail {

class JobArena {
 public:
  explicit JobArena(int threads) : limit_(limit_for(threads)), arena_(threads) {}
  template <typename F>
  void execute(F&& f) {
    arena_.execute(std::forward<F>(f));
  }

 private:
  static std::optional<tbb::global_control> limit_for(int threads) {
    if (threads <= tbb::info::default_concurrency()) return std::nullopt;
    return std::optional<tbb::global_control>(std::in_place,
                                              tbb::global_control::max_allowed_parallelism,
                                              static_cast<std::size_t>(threads));
  }
  std::optional<tbb::global_control> limit_;  // before the arena: raised before it starts
  tbb::task_arena arena_;
};

}  // namespace imgnorm::detail
