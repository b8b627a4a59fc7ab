#include "runtime/ThreadPool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace gradc {

namespace {

void relax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// About 100 µs of pauses: long enough to catch the next kernel of a step, short enough not to
// hold a core when the program has stopped stepping.
constexpr int kSpins = 4000;

}  // namespace

int ThreadPool::resolve(int threads) {
  if (threads > 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int threads)
    : entry_{[](void* pool, TaskFn task, void* ctx, int64_t n) { return static_cast<ThreadPool*>(pool)->run(task, ctx, n); },
             this} {
  // Each worker starts from the generation of now: one read later could miss the first bump.
  uint32_t start = generation_.load();
  for (int i = 1; i < resolve(threads); ++i) workers_.emplace_back([this, start] { work(start); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::drain() {
  for (;;) {
    int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
    if (t >= n_) return;
    if (int32_t status = task_(ctx_, t, t + 1); status != 0) {
      std::lock_guard lock(failure_mutex_);
      if (failure_ == 0 || t < failed_task_) failure_ = status, failed_task_ = t;
    }
  }
}

void ThreadPool::work(uint32_t seen) {
  for (;;) {
    for (int i = 0; i < kSpins && generation_.load(std::memory_order_acquire) == seen; ++i) relax();
    generation_.wait(seen, std::memory_order_acquire);
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    drain();
    busy_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

int32_t ThreadPool::run(TaskFn task, void* ctx, int64_t n) {
  if (workers_.empty() || n <= 1) return task(ctx, 0, n);
  task_ = task, ctx_ = ctx, n_ = n;
  failure_ = 0, failed_task_ = 0;
  next_.store(0, std::memory_order_relaxed);
  busy_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  drain();
  while (busy_.load(std::memory_order_acquire) != 0) relax();
  return failure_;
}

}  // namespace gradc

