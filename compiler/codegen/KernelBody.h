// The code of one kernel's body, whatever its kind: its members' code over the buffers the memory
// plan gave it (FunctionEmitter in ModuleEmitter.cpp makes the kernel's function and calls emit).
// One class, its methods in one file per kernel kind: LoopKernel.cpp, RowWiseKernel.cpp,
// MatMulKernel.cpp, ConvKernel.cpp (Conv and Alone kernels); what they share is in KernelBody.cpp.
// Kernels split their work over the pool with codegen/ParallelTasks.h (split_tasks).
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "codegen/ConvEmitters.h"
#include "codegen/Gemm.h"
#include "codegen/KernelBuilder.h"
#include "ir/Kernel.h"

namespace gradc::codegen {

using Values = std::vector<llvm::Value*>;

inline bool contains(const std::vector<ValueId>& v, ValueId id) { return std::find(v.begin(), v.end(), id) != v.end(); }

// The Constant node behind `id` (through reshapes), or -1.
ValueId constant_root(const Graph& g, ValueId id);
llvm::Constant* constant_of(llvm::LLVMContext& ctx, const Node& n);

// The body of one kernel: its members' code over the buffers it was given.
class KernelBody {
 public:
  // k's function takes the kernel's places (arg_of numbers them), then the scratch pointer,
  // then the pool (a kernel) or the range of tasks (a kernel's tasks).
  // `checked`: the values this step assigns to params (with the param's name), which the
  // kernel checks for NaN and infinities as it stores them.
  KernelBody(KernelBuilder& k, const Graph& g, const Kernel& kernel, const std::map<ValueId, unsigned>& arg_of, unsigned places,
             const std::map<ValueId, std::string>& checked)
      : k_(k), g_(g), kernel_(kernel), arg_of_(arg_of), places_(places), checked_(checked) {
    for (auto [v, i] : arg_of) buf_[v] = Buffer{g_[v].type, k.fn->getArg(i), nullptr};
  }

  int64_t scratch_bytes() const { return scratch_bytes_; }
  // The error codes of non-finite params: the step stops after changing params.
  const std::vector<int32_t>& nonfinite_codes() const { return nonfinite_codes_; }
  void emit();

 private:

  // ---- KernelBody.cpp: what every kind shares (members at an element, reductions, checks)
  const OpCodegen& cg(ValueId m) const { return op_codegen(g_[m].op); }
  bool is_reduction(ValueId m) const { return cg(m).combine != nullptr; }
  // An op of the table's Indexed form (one_hot): reads its operands at the domain's leading dims.
  bool indexed(ValueId m) const { return op_info(g_[m].op).form == FusionForm::Indexed; }
  const Buffer& buffer(ValueId v) const { return buf_.at(v); }
  llvm::Value* operand(ValueId m, ValueId a, const Values& idx, llvm::Value* flat);
  std::vector<int64_t> lane_offsets(const std::vector<int64_t>& s) const;
  void put(ValueId v, const Values& idx, llvm::Value* flat, llvm::Value* value);
  bool no_reductions() const;
  bool vector_epilogue() const;
  llvm::Value* at(ValueId v, const Values& idx, llvm::Value* flat);
  Shape kept_shape(ValueId r) const;
  void note_finite(ValueId v, llvm::Value* value);
  llvm::Value* any_nonfinite(ValueId v);
  void check_finite(bool scan_unnoted = true);
  void start_reductions();
  void finish_reductions();
  void hoist_scalars();
  void members_at(const Values& idx, llvm::Value* flat, size_t first);
  void reduce(ValueId m, const Values& idx, llvm::Value* v);

  // ---- LoopKernel.cpp
  void loop();
  int64_t loop_split_axis(bool flat) const;
  void loop_range(bool flat, size_t axis, llvm::Value* first, llvm::Value* last);

  // ---- MatMulKernel.cpp
  struct MatMulShape {
    int64_t batches, m, n, k;
  };
  MatMulShape matmul_shape() const;

  // ---- KernelBody.cpp: the epilogue of a MatMul or Conv kernel's result
  void epilogue_at(Values idx, llvm::Value* value, const std::vector<std::pair<int64_t, int64_t>>& lane_at = {}, int64_t valid = 0);

  // ---- MatMulKernel.cpp
  void tile_epilogue(const GemmPlan& plan, bool vector, bool flat_vectors, llvm::Value* batch, llvm::Value* row0, int64_t rows,
                     llvm::Value* col0, int64_t cols, llvm::Value* tile);
  void matmul();
  bool parallel_safe(const GemmPlan& plan) const;
  void matmul_scalar();

  // ---- RowWiseKernel.cpp
  void rowwise();

  // ---- ConvKernel.cpp: Conv kernels and Alone kernels (pooling and the others' own loop nests)
  std::vector<Buffer> op_args(const Node& n) const;
  void alone();
  bool worth_tasks() const { return kernel_.flops >= kParallelFlops || kernel_.bytes >= kParallelBytes; }
  void each_image(llvm::Value* first, llvm::Value* last,
                  const std::function<void(const std::vector<Buffer>& args, const Buffer& out, llvm::Value* image)>& body);
  void conv();
  ConvEpilogue conv_epilogue(llvm::Value* image);

  // ---- KernelBody.cpp: tasks on the pool (codegen/ParallelTasks.h)
  using TaskBody = std::function<void(KernelBody& task, llvm::Value* begin, llvm::Value* end)>;
  void split_tasks(const char* suffix, int64_t n, bool parallel, bool scan_unnoted, const TaskBody& body);

  // Tasks of `per_task` units each over `units` units: the units [begin·per_task, min(end·per_task, units))
  // of tasks [begin, end).
  static int64_t tasks_of(int64_t units, int64_t per_task) { return (units + per_task - 1) / per_task; }
  std::pair<llvm::Value*, llvm::Value*> task_units(llvm::Value* begin, llvm::Value* end, int64_t units, int64_t per_task);

  // A kernel this large is worth the threads' wake-up (a few µs): worth_tasks.
  static constexpr int64_t kParallelFlops = 1 << 21;
  // Or one that moves this many bytes (pooling, elementwise kernels: memory-bound, but a second
  // core brings bandwidth of its own).
  static constexpr int64_t kParallelBytes = 1 << 20;
  // A Loop kernel this large splits, into tasks of about this many elements.
  static constexpr int64_t kParallelElements = 1 << 16, kTaskElements = 1 << 14;

  KernelBuilder& k_;
  const Graph& g_;
  const Kernel& kernel_;
  const std::map<ValueId, unsigned>& arg_of_;
  unsigned places_;
  int64_t scratch_bytes_ = 0;
  int64_t valid_ = 0;  // vector mode: the lanes that are elements of the domain
  std::vector<std::pair<int64_t, int64_t>> lane_at_;
  std::map<ValueId, Buffer> buf_;
  std::map<ValueId, llvm::Value*> vals_;
  std::map<ValueId, llvm::Value*> loaded_;
  std::map<ValueId, llvm::Value*> hoisted_;  // see hoist_scalars
  const std::map<ValueId, std::string>& checked_;
  std::map<ValueId, std::vector<llvm::Value*>> finite_flags_;  // see note_finite
  std::set<ValueId> noted_elsewhere_;             // checked in the function of a GEMM's tasks
  std::vector<int32_t> nonfinite_codes_;
};

}  // namespace gradc::codegen
