// The threads a step's large kernels share. A step's `pool` argument points at a ParallelFor;
// generated code calls its `run` with a task function and the number of tasks (or runs the
// tasks itself when `pool` is null). A task's work never depends on which thread runs it, so
// results are the same bits for any number of threads.
//
// How `run` shares the tasks (as OpenMP runtimes and PyTorch's pool do):
// 1. It publishes the run as one atomic word, (generation << 32) | tasks not yet claimed, and
//    wakes the workers that sleep.
// 2. Every thread, the caller included, claims tasks one at a time by a compare-and-swap on that
//    word (which fails once the generation moved on), so a worker that is slow to wake claims
//    nothing and holds nothing back: the caller runs whatever is left.
// 3. `run` then waits only for the tasks that were claimed to finish (a count of finished ones).
// Waiting, the caller and the workers spin about 100 µs with `_mm_pause`, yielding the core
// between bursts (long enough to catch the next parallel kernel of a step, or a task about to
// finish), and then block in the kernel (std::atomic::wait, a futex on Linux); nothing spins on
// a core it does not own for longer, and a yield gives way to any other runnable thread there.
//
// One thread calls `run` at a time (a Session steps from one thread). Calling through a
// pointer rather than a symbol keeps the generated code free of imports.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "gradc/StepAbi.h"

namespace gradc {

class ThreadPool {
 public:
  // The most threads a pool (and --threads) takes. A step splits each large GEMM into column
  // panels of 16-64 columns, so a few hundred threads is already more than any layer of a few
  // thousand units has tasks for; beyond the cores, threads only take turns on them; and each
  // one reserves a stack (8 MB by default), so 20,000 would ask for 160 GB of address space.
  static constexpr int kMaxThreads = 256;

  // The caller counts as one: threads - 1 workers (0: every core, at most kMaxThreads). Throws a
  // gradc::Error when threads is out of range or the system cannot start that many threads.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  ParallelFor* entry() { return &entry_; }  // for the step's `pool` argument

  // Runs tasks 0..n-1; returns the error code of the lowest-numbered task that failed, or 0.
  int32_t run(TaskFn task, void* ctx, int64_t n);

  // 0 means every core (at most kMaxThreads); other values are returned as they are.
  static int resolve(int threads);

 private:
  void stop_workers();
  void work(uint32_t seen);
  void drain(uint32_t generation);
  int32_t run_round(int64_t base, uint32_t n);
  void wait_finished(uint32_t n);

  ParallelFor entry_;
  std::vector<std::thread> workers_;
  // The run's tasks as (generation << 32) | tasks not claimed yet; task n - left is claimed next.
  std::atomic<uint64_t> work_{0};
  std::atomic<uint32_t> epoch_{0};     // the generation workers wait on (a futex word)
  std::atomic<uint32_t> finished_{0};  // tasks of this run finished (the caller waits on it)
  std::atomic<uint32_t> sleepers_{0};  // workers blocked (or about to block) on epoch_
  std::atomic<bool> caller_waiting_{false};
  std::atomic<bool> stop_{false};
  uint32_t generation_ = 0;  // the caller's own count of runs
  // The run's arguments: written by the caller before it publishes work_, read by a thread only
  // after its claim of one of the run's tasks succeeded (the run cannot end before that task).
  TaskFn task_ = nullptr;
  void* ctx_ = nullptr;
  int64_t base_ = 0;
  uint32_t n_ = 0;
  std::mutex failure_mutex_;
  int64_t failed_task_ = 0;
  int32_t failure_ = 0;
};

}  // namespace gradc
