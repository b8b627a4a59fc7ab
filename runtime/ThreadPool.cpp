#include "gradc/ThreadPool.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <system_error>

#include "runtime/Format.h"

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

// How long a waiting thread spins before it blocks. A step's parallel kernels are often tens of
// µs apart (the small kernels between them run on the caller alone), and waking a blocked worker
// took 50-200 µs on the 2-core VMs here: with 20 µs, mlp_1024 on 2 threads was 1.4-1.6x one
// thread, with 100 µs 1.8-1.95x, with 200 µs no better (threads_bench, quiet host). The spin
// yields the core every 16 pauses, so beside another runnable process it gives way at once.
constexpr std::chrono::microseconds kSpin{100};

// Spins while still() holds, for at most kSpin; true if it stopped holding.
template <typename Still>
bool spin_while(Still still) {
  auto until = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 16; ++i) {
      if (!still()) return true;
      relax();
    }
    if (std::chrono::steady_clock::now() >= until) return !still();
    std::this_thread::yield();
  }
}

constexpr uint64_t kLeftMask = 0xffffffffu;
// Tasks per round: the count of unclaimed tasks must fit the low half of work_.
constexpr int64_t kMaxRound = std::numeric_limits<int32_t>::max();

}  // namespace

int ThreadPool::resolve(int threads) {
  if (threads != 0) return threads;
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, static_cast<unsigned>(kMaxThreads)));
}

ThreadPool::ThreadPool(int threads)
    : entry_{[](void* pool, TaskFn task, void* ctx, int64_t n) { return static_cast<ThreadPool*>(pool)->run(task, ctx, n); },
             this} {
  int total = resolve(threads);
  if (total < 1 || total > kMaxThreads)
    fail({}, "a thread pool takes 1 to {} threads (0: every core), not {}", kMaxThreads, threads);
  // Each worker starts from the generation of now: one read later could miss the first run.
  uint32_t start = epoch_.load();
  workers_.reserve(static_cast<size_t>(total - 1));
  for (int i = 1; i < total; ++i) {
    try {
      workers_.emplace_back([this, start] { work(start); });
    } catch (const std::system_error& e) {
      int started = static_cast<int>(workers_.size()) + 1;
      stop_workers();  // the destructor does not run for a constructor that throws
      fail({}, "cannot start {} threads for the step (the system refused thread {}: {}); try a smaller --threads",
           total, started + 1, e.what());
    }
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  stop_.store(true);
  epoch_.fetch_add(1);
  epoch_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

// Claims and runs tasks of `generation` until none is left unclaimed (or the run has moved on).
void ThreadPool::drain(uint32_t generation) {
  uint64_t w = work_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(w >> 32) != generation || (w & kLeftMask) == 0) return;
    if (!work_.compare_exchange_weak(w, w - 1, std::memory_order_acquire, std::memory_order_acquire)) continue;
    // Claimed: the run cannot end (nor its arguments change) before this task is counted.
    uint32_t n = n_;
    int64_t t = base_ + (n - static_cast<uint32_t>(w & kLeftMask));
    if (int32_t status = task_(ctx_, t, t + 1); status != 0) {
      std::lock_guard lock(failure_mutex_);
      if (failure_ == 0 || t < failed_task_) failure_ = status, failed_task_ = t;
    }
    // The last finished task wakes the caller if it blocked. (Both sides use sequentially
    // consistent operations: either the caller sees the count or this sees caller_waiting_.)
    if (finished_.fetch_add(1) + 1 == n && caller_waiting_.load()) finished_.notify_one();
    w = work_.load(std::memory_order_acquire);
  }
}

void ThreadPool::work(uint32_t seen) {
  for (;;) {
    if (!spin_while([&] { return epoch_.load(std::memory_order_acquire) == seen; })) {
      // Announce the sleep before the last look at epoch_: a run that publishes after this
      // sees sleepers_ and notifies; one that published before is seen by wait().
      sleepers_.fetch_add(1);
      while (epoch_.load() == seen) epoch_.wait(seen);
      sleepers_.fetch_sub(1);
    }
    seen = epoch_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    drain(seen);
  }
}

void ThreadPool::wait_finished(uint32_t n) {
  if (spin_while([&] { return finished_.load(std::memory_order_acquire) != n; })) return;
  caller_waiting_.store(true);
  for (uint32_t f = finished_.load(); f != n; f = finished_.load()) finished_.wait(f);
  caller_waiting_.store(false);
}

int32_t ThreadPool::run_round(int64_t base, uint32_t n) {
  base_ = base, n_ = n;
  failure_ = 0, failed_task_ = 0;
  finished_.store(0, std::memory_order_relaxed);
  uint32_t g = ++generation_;
  work_.store((static_cast<uint64_t>(g) << 32) | n, std::memory_order_release);
  epoch_.store(g);
  if (sleepers_.load() > 0) epoch_.notify_all();
  drain(g);
  wait_finished(n);
  return failure_;
}

int32_t ThreadPool::run(TaskFn task, void* ctx, int64_t n) {
  if (workers_.empty() || n <= 1) return n > 0 ? task(ctx, 0, n) : 0;
  task_ = task, ctx_ = ctx;
  int32_t first_failure = 0;
  for (int64_t base = 0; base < n; base += kMaxRound) {
    int32_t status = run_round(base, static_cast<uint32_t>(std::min(kMaxRound, n - base)));
    if (first_failure == 0) first_failure = status;
  }
  return first_failure;
}

}  // namespace gradc
