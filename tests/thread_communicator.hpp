#pragma once
// K "ranks" as K threads sharing an in-process Communicator (include/imgnorm/distributed.hpp):
// the distributed jobs tested without MPI (distributed_test, output_shards_test).

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "imgnorm/distributed.hpp"

namespace imgnorm::thread_ranks {

// What the K ranks share: one slot each, and a reusable barrier.
struct Hub {
  explicit Hub(int n) : ranks(n), slots(n), values(n) {}
  int ranks;
  std::vector<std::vector<std::uint8_t>> slots;
  std::vector<std::uint64_t> values;
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  std::uint64_t generation = 0;
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    const std::uint64_t g = generation;
    if (++arrived == ranks) {
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != g; });
    }
  }
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(Hub& hub, int rank) : hub_(hub), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return hub_.ranks; }
  void broadcast(std::vector<std::uint8_t>& bytes, int root) override {
    if (rank_ == root) hub_.slots[root] = bytes;
    hub_.wait();
    if (rank_ != root) bytes = hub_.slots[root];
    hub_.wait();
  }
  std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& bytes,
                                                int root) override {
    hub_.slots[rank_] = bytes;
    hub_.wait();
    std::vector<std::vector<std::uint8_t>> all;
    if (rank_ == root) all = hub_.slots;
    hub_.wait();
    return all;
  }
  std::uint64_t exclusive_scan(std::uint64_t value) override {
    hub_.values[rank_] = value;
    hub_.wait();
    std::uint64_t s = 0;
    for (int r = 0; r < rank_; ++r) s += hub_.values[r];
    hub_.wait();
    return s;
  }
  std::uint64_t sum(std::uint64_t value) override {
    hub_.values[rank_] = value;
    hub_.wait();
    std::uint64_t s = 0;
    for (std::uint64_t v : hub_.values) s += v;
    hub_.wait();
    return s;
  }
  void barrier() override { hub_.wait(); }
  std::unique_ptr<SharedFile> open_shared(const std::string& path) override {
    return open_shared_posix(path);
  }
  [[noreturn]] void abort(int) override { std::abort(); }

 private:
  Hub& hub_;
  int rank_;
};

// Runs body(comm) on `ranks` threads; rethrows the first exception (by rank).
inline void run_ranks(int ranks, const std::function<void(Communicator&)>& body) {
  Hub hub(ranks);
  std::vector<std::exception_ptr> errors(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(hub, r);
      try {
        body(comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace imgnorm::thread_ranks
