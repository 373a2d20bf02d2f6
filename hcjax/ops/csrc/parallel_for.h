// Work spread over XLA's intra-op thread pool, shared by hcjax's CPU kernels.
#ifndef HCJAX_OPS_CSRC_PARALLEL_FOR_H_
#define HCJAX_OPS_CSRC_PARALLEL_FOR_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace hcjax {

// How many workers ParallelFor uses for n items: the caller and up to threads - 1 helpers, at
// most max_workers.
inline int64_t Workers(xla::ffi::ThreadPool& pool, int64_t n, int64_t max_workers = INT64_MAX) {
  return std::max<int64_t>(1, std::min<int64_t>({pool.num_threads(), n, max_workers}));
}

// Runs body(worker, i) for i in [0, n) on the caller (worker 0) and the pool (workers 1 ..
// Workers(pool, n, max_workers) - 1); a worker runs its items one after another, so
// per-worker scratch needs no lock. The caller never waits for a task to start, only for items already taken,
// so a busy (or absent) pool cannot deadlock it; tasks that start late find nothing left and
// touch only the shared counters.
template <typename Body>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n, const Body& body,
                 int64_t max_workers = INT64_MAX) {
  const int64_t workers = Workers(pool, n, max_workers);
  if (workers <= 1) {
    for (int64_t i = 0; i < n; ++i) body(int64_t{0}, i);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mutex;
    std::condition_variable finished;
  };
  auto state = std::make_shared<State>();
  const Body* work = &body;
  auto run = [state, n, work](int64_t worker) {
    for (int64_t i = state->next.fetch_add(1); i < n; i = state->next.fetch_add(1)) {
      (*work)(worker, i);
      if (state->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->finished.notify_all();
      }
    }
  };
  for (int64_t worker = 1; worker < workers; ++worker) {
    pool.Schedule([run, worker] { run(worker); });
  }
  run(0);
  std::unique_lock<std::mutex> lock(state->mutex);
  state->finished.wait(lock, [&] { return state->done.load() == n; });
}

}  // namespace hcjax

#endif  // HCJAX_OPS_CSRC_PARALLEL_FOR_H_
