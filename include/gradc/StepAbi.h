// The step's ABI: what generated code (the JIT's, later an ahead-of-time object's) and the
// runtime both rely on. Codegen emits calls and loads by these declarations and offsets; the
// runtime implements them; the static_asserts hold both to one layout.
//
//   int32_t train_step(void* const* slots, std::byte* arena, ParallelFor* pool);
//   int32_t predict(void* const* slots, std::byte* arena, ParallelFor* pool);
//
// (gradc/Program.h says what slots, arena and the returned code mean.) `pool` is null for one
// thread, else a ParallelFor: kernels call pool->run(pool->pool, task, ctx, n) to run tasks
// 0..n-1 of `task` on any threads, each task's work independent of the thread that runs it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gradc {

using EntryPoint = int32_t (*)(void* const* slots, std::byte* arena, void* pool);

// int32_t task(void* ctx, int64_t begin, int64_t end): tasks [begin, end); 0, or an error code.
using TaskFn = int32_t (*)(void* ctx, int64_t begin, int64_t end);

// What a step's `pool` points at.
struct ParallelFor {
  int32_t (*run)(void* pool, TaskFn task, void* ctx, int64_t n);
  void* pool;
};

// Generated code loads ParallelFor's members as pointer-sized slots at these indices.
inline constexpr unsigned kParallelForRunSlot = 0, kParallelForPoolSlot = 1;
static_assert(offsetof(ParallelFor, run) == kParallelForRunSlot * sizeof(void*));
static_assert(offsetof(ParallelFor, pool) == kParallelForPoolSlot * sizeof(void*));
static_assert(sizeof(void (*)()) == sizeof(void*), "code and data pointers are one size (codegen uses one ptr type)");

}  // namespace gradc
