// The threads a step's large kernels share. A step's `pool` argument points at a ParallelFor;
// generated code calls its `run` with a task function and the number of tasks (or runs the
// tasks itself when `pool` is null). The pool hands task indices out one at a time to its
// workers and the calling thread, and returns when all are done. A task's work never depends on
// which thread runs it, so results are the same for any number of threads. Calling through a
// pointer rather than a symbol keeps the generated code free of imports.
//
// Workers spin briefly between kernels (steps run back to back) and then sleep on a futex.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace gradc {

// int32_t task(void* ctx, int64_t begin, int64_t end): tasks [begin, end); 0, or an error code.
using TaskFn = int32_t (*)(void* ctx, int64_t begin, int64_t end);

// What a step's `pool` points at (the layout generated code relies on).
struct ParallelFor {
  int32_t (*run)(void* pool, TaskFn task, void* ctx, int64_t n);
  void* pool;
};

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // the caller counts as one: threads - 1 workers
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  ParallelFor* entry() { return &entry_; }  // for the step's `pool` argument

  // Runs tasks 0..n-1; returns the error code of the lowest-numbered task that failed, or 0.
  int32_t run(TaskFn task, void* ctx, int64_t n);

  // 0 means every core.
  static int resolve(int threads);

 private:
  void work(uint32_t seen);
  void drain();

  ParallelFor entry_;
  std::vector<std::thread> workers_;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> busy_{0};
  std::atomic<int64_t> next_{0};
  std::atomic<bool> stop_{false};
  TaskFn task_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0;
  std::mutex failure_mutex_;
  int64_t failed_task_ = 0;
  int32_t failure_ = 0;
};

}  // namespace gradc
