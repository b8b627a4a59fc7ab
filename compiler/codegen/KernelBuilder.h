// The small toolkit every op's code emitter writes its loop nest with: counted loops, loads and
// stores at flat indices, broadcasting strides, accumulators, and the math intrinsics.
//
// Each op becomes one LLVM function `i32 @op(ptr noalias operands..., ptr noalias out)`; its
// emitter (codegen/OpEmitters.cpp, named in the op table) fills the body through a KernelBuilder.
// A non-zero return is an error the runtime reports (a class id out of range, say).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <llvm/IR/IRBuilder.h>

#include "ir/Graph.h"

namespace gradc::codegen {

// A tensor the generated code reads or writes: its elements in memory, row-major, or a scalar
// constant that every index reads.
struct Buffer {
  TensorType type;
  llvm::Value* ptr = nullptr;
  llvm::Constant* constant = nullptr;

  int64_t numel() const { return type.numel(); }
};

class KernelBuilder {
 public:
  KernelBuilder(llvm::Function* fn, std::function<int32_t(std::string)> error_code);

  llvm::IRBuilder<> b;
  llvm::Function* fn;

  llvm::Type* elem(DType dt);
  llvm::Value* index(int64_t v) { return b.getInt64(static_cast<uint64_t>(v)); }
  llvm::Value* real(DType dt, double v);  // a constant of a float dtype

  // Element `flat` of `buf` (a constant ignores the index).
  llvm::Value* load(const Buffer& buf, llvm::Value* flat);
  void store(const Buffer& buf, llvm::Value* flat, llvm::Value* v);

  // for (i = 0; i < n; ++i) body(i), as an LLVM loop over an i64 counter (nothing when n == 0).
  void loop(int64_t n, const std::function<void(llvm::Value*)>& body);
  // The same, a loop that LLVM leaves rolled: for bodies unrolled already (every register of a
  // tile), which unrolling again would only make slower to compile.
  void rolled_loop(int64_t n, const std::function<void(llvm::Value*)>& body);
  void rolled_loop(llvm::Value* begin, llvm::Value* end, const std::function<void(llvm::Value*)>& body);
  // for (i = begin; i < end; ++i) body(i), bounds known only when the code runs.
  void loop(llvm::Value* begin, llvm::Value* end, const std::function<void(llvm::Value*)>& body);
  // Nested loops over every index of `shape`, row-major (the body once for a scalar).
  void loops(const Shape& shape, const std::function<void(const std::vector<llvm::Value*>&)>& body);
  // if (cond) body()
  void if_then(llvm::Value* cond, const std::function<void()>& body);
  void if_else(llvm::Value* cond, const std::function<void()>& then, const std::function<void()>& otherwise);

  // sum of index[d] * strides[d] (zero strides skipped).
  llvm::Value* offset(const std::vector<llvm::Value*>& index, const std::vector<int64_t>& strides);

  // A mutable local (an accumulator) initialized to `init`; LLVM's mem2reg turns it into registers.
  llvm::Value* local(llvm::Value* init);
  // The same, initialized in the entry block wherever the builder stands (for a local first
  // needed inside a loop).
  llvm::Value* entry_local(llvm::Value* init);
  llvm::Value* get(llvm::Value* local) { return b.CreateLoad(local_types_.at(local), local); }
  llvm::Type* type_of(llvm::Value* local) const { return local_types_.at(local); }
  void set(llvm::Value* local, llvm::Value* v) { b.CreateStore(v, local); }

  // Makes the function return a fresh error code, whose message the runtime shows, when `cond`
  // holds (the emitter clamps its index itself, so that the step never reads out of bounds).
  // Returns the code.
  int32_t fail_if(llvm::Value* cond, std::string message);
  // Takes over a non-zero status from a function this one called, unless it failed already.
  void propagate(llvm::Value* code);
  llvm::Value* status() { return get(status_); }
  bool can_fail() const { return can_fail_; }
  const std::function<int32_t(std::string)>& error_codes() const { return error_code_; }

  // Math on one element, as the interpreter computes it (NaN-propagating max and min).
  llvm::Value* unary(llvm::Intrinsic::ID id, llvm::Value* x) { return b.CreateUnaryIntrinsic(id, x); }
  llvm::Value* max_nan(llvm::Value* a, llvm::Value* c);
  llvm::Value* min_nan(llvm::Value* a, llvm::Value* c);
  llvm::Value* call_libm(const char* f32_name, const char* f64_name, llvm::Value* x);  // tanh and friends
  // e^x. f32 (scalars or vectors): inline, Cephes's expf (a degree-7 polynomial on x - n ln 2,
  // within 2 ulp of libm's expf; 0 below -87.33, +inf above 88.3, NaN kept), so that loops
  // with it vectorize and no call is made per element. f64: llvm.exp (libm).
  llvm::Value* exp(llvm::Value* x);
  llvm::Value* tanh(llvm::Value* x);  // f32 as a rational function (vectorizes), f64 by libm
  llvm::Value* erf(llvm::Value* x);   // likewise

  // Vector mode: while lanes() > 0, real() makes splats and call_libm works lane by lane, so that
  // an op's scalar code computes `lanes` consecutive elements at once (GEMM epilogues do this).
  void set_lanes(int64_t n) { lanes_ = n; }
  int64_t lanes() const { return lanes_; }
  llvm::Value* splat(llvm::Value* v);  // v broadcast to the lanes, unless it is a vector already
  // Elements first + offsets[l] of `buf` for lanes l < valid, the other lanes zero: one vector
  // load when the offsets are 0, 1, 2, ..., one scalar load broadcast when they are all equal,
  // else a gather. Stores alike (equal offsets: lane 0 only, and then only one lane may be valid).
  llvm::Value* load_lanes(const Buffer& buf, llvm::Value* first, const std::vector<int64_t>& offsets, int64_t valid);
  void store_lanes(const Buffer& buf, llvm::Value* first, const std::vector<int64_t>& offsets, int64_t valid, llvm::Value* v);
  llvm::Constant* lane_mask(int64_t valid) { return lane_mask(valid, lanes_); }  // <lanes x i1>: lanes below `valid` set
  llvm::Constant* lane_mask(int64_t valid, int64_t lanes);

 private:
  llvm::Value* lane_pointers(llvm::Type* t, llvm::Value* ptr, const std::vector<int64_t>& offsets);
  llvm::Instruction* range_loop(llvm::Value* begin, llvm::Value* end, const std::function<void(llvm::Value*)>& body);  // its branch back
  void keep_rolled(llvm::Instruction* latch_branch);  // llvm.loop.unroll.disable
  int64_t lanes_ = 0;
  std::function<int32_t(std::string)> error_code_;
  std::map<llvm::Value*, llvm::Type*> local_types_;
  llvm::Value* status_ = nullptr;
  bool can_fail_ = false;
};

// Row-major strides of `operand` read at the indices of a result of shape `to` (numpy
// broadcasting: a missing or size-1 dim has stride 0).
std::vector<int64_t> broadcast_strides(const Shape& operand, const Shape& to);
std::vector<int64_t> strides_of(const Shape& shape);

// How codegen computes an op, from the op table's last column:
//   - scalar: one element of the result from its operands' elements at the same index of the
//     kernel's domain (`index`: the domain's loop counters, empty in a flat loop). Elementwise
//     ops, broadcast_to and one_hot have one; fusion puts them in Loop kernels and epilogues.
//     An op of the table's Indexed form (one_hot) reads its operands at the domain's leading
//     dims (one_hot's ids) rather than numpy's trailing alignment, and needs the index.
//   - reduction: sum, mean and max fold the elements of each group into an accumulator.
//   - row, row_loss: softmax, log_softmax and the cross-entropy loss over rows (RowWise kernels).
//   - loops: the op's own loop nest over whole buffers (conv, pooling, softmax, the losses, ...).
//     Its tasks on the pool (ConvKernel.cpp): images, when every image of an NCHW result is
//     computed from that image of the operands alone (operand `whole_operand`, conv2d's weights,
//     read whole); or `units` of the op's own, `unit_loops` computing a range of them
//     (conv2d_weight_grad's blocks of weights).
// Units [begin, end) of a loop nest's work, known only when the code runs (null: all of them).
struct UnitRange {
  llvm::Value* begin = nullptr;
  llvm::Value* end = nullptr;
};

using ScalarFn = llvm::Value* (*)(KernelBuilder& k, const Node& node, const std::vector<llvm::Value*>& args,
                                  const std::vector<llvm::Value*>& index);
using CombineFn = llvm::Value* (*)(KernelBuilder& k, llvm::Value* acc, llvm::Value* v);
using LoopsFn = void (*)(KernelBuilder& k, const Node& node, const std::vector<Buffer>& args, const Buffer& out);

struct OpCodegen {
  ScalarFn scalar = nullptr;
  CombineFn combine = nullptr;  // a reduction: acc = combine(acc, v) from `init`
  double init = 0;
  bool mean = false;            // then divided by the group's size
  LoopsFn loops = nullptr;
  bool images = false;
  int whole_operand = -1;  // -1: none
  int64_t (*units)(const Shape& result) = nullptr;
  void (*unit_loops)(KernelBuilder& k, const Node& node, const std::vector<Buffer>& args, const Buffer& out,
                     const UnitRange& units) = nullptr;
  // Row-wise (RowWise kernels): an element from x, its row's max and log(sum(exp(x - max)));
  // or, with row_loss, a loss that takes -log_softmax at each row's class id.
  llvm::Value* (*row)(KernelBuilder& k, llvm::Value* x, llvm::Value* max, llvm::Value* log_sum) = nullptr;
  bool row_loss = false;
};

#define OP(Id, spelling, arity, traits, schema, infer, eval, grad, emit, ...) extern const OpCodegen emit;
#include "gradc/Ops.def"

const OpCodegen& op_codegen(OpKind op);

// A row of `len` elements of x from `base`: its max (NaN skipped, as the interpreter) and
// log(sum(exp(x - max))). And a class id checked against [0, classes) (clamped; the kernel fails).
std::pair<llvm::Value*, llvm::Value*> row_max_and_log_sum(KernelBuilder& k, const Buffer& x, int64_t len,
                                                           llvm::Value* base);
llvm::Value* checked_class_id(KernelBuilder& k, const Node& n, llvm::Value* id, int64_t classes);

}  // namespace gradc::codegen
