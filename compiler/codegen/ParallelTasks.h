// The one way a kernel splits its work over the step's thread pool: tasks [0, n) of a function
// of their own, run on the pool (the calling thread runs tasks too) or all on the caller.
//
// A kernel's function is `i32 @k(ptr noalias places..., ptr scratch, ptr pool)` (see
// FunctionEmitter::emit_kernel). Its tasks are `i32 @k<suffix>(places..., scratch, i64 begin,
// i64 end)`, written by the emitter's body with a builder of their own; for the pool a task entry
// `i32 @k<suffix minus its last letter>(ptr ctx, i64 begin, i64 end)` unpacks the pointers from
// ctx (gradc/StepAbi.h's TaskFn) and runs in the threads' floating-point mode. Each task must
// compute what it computes whichever thread runs it and in whatever order: the step's results
// are then the same bits on any number of threads.
#pragma once

#include <functional>
#include <utility>

#include "codegen/KernelBuilder.h"

namespace gradc::codegen {

// Generated code runs with subnormals flushed to zero (x86: MXCSR's FTZ and DAZ); `enter_fp_mode`
// sets the mode and returns the caller's (null off x86), `leave_fp_mode` puts it back.
llvm::Value* enter_fp_mode(llvm::IRBuilder<>& b);
void leave_fp_mode(llvm::IRBuilder<>& b, llvm::Value* saved);

class ParallelTasks {
 public:
  // `kernel`: the kernel's builder; its function takes `places` pointers, scratch, then the pool.
  ParallelTasks(KernelBuilder& kernel, unsigned places) : k_(kernel), places_(places) {}

  using Body = std::function<void(KernelBuilder& task, llvm::Value* begin, llvm::Value* end)>;

  // A function `<kernel><suffix>(places..., scratch, begin, end)` that runs tasks [begin, end),
  // its body written by `body`; returns it and whether it can fail. The suffix ends in "s".
  std::pair<llvm::Function*, bool> task_function(const char* suffix, const Body& body);

  // Runs tasks [0, n) of a task_function: split over the step's pool when `parallel` and the
  // step was given one, else all here. Returns their status (the first failure's code, or 0).
  llvm::Value* run(llvm::Function* tasks, int64_t n, bool parallel);

  // task_function, run, then the kernel fails as the tasks did.
  void split(const char* suffix, int64_t n, bool parallel, const Body& body);

 private:
  // pool ? pool->run(pool->pool, task, ctx, n) : serial(), the step's `pool` being a ParallelFor.
  llvm::Value* parallel_for(llvm::Function* task, llvm::Value* ctx, int64_t n, const std::function<llvm::Value*()>& serial);

  KernelBuilder& k_;
  unsigned places_;
};

}  // namespace gradc::codegen
