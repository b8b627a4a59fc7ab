// The op table as data: kinds, names, arities, traits, attribute schemas and shape rules.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "gradc/Graph.h"
#include "gradc/Types.h"
#include "ir/Attr.h"

namespace gradc {

enum class OpKind : uint16_t {
#define OP(Id, ...) Id,
#include "gradc/Ops.def"
};

// Properties that passes read instead of switching on the op kind.
enum OpTrait : uint32_t {
  kNoTraits = 0,
  kBroadcast = 1u << 0,  // operands broadcast numpy-style to the result shape
  kLoss = 1u << 1,       // returns the scalar mean loss over the batch: whole only once every row is seen
};

// How fusion places an op and codegen computes it (the table's fusion-form column).
enum class FusionForm : uint8_t {
  Elementwise,  // an element of the result from its operands' elements at that index (numpy
                // broadcasting aside): Loop kernels and epilogues; may write over an operand
  Indexed,      // an element of the result in a Loop kernel, reading an operand at another
                // index (one_hot reads its row's class id): fuses, never writes in place
  Reduction,    // folds groups of its operand (`axes`): a Loop kernel over the operand's shape,
                // whole only after the loop
  Rowwise,      // along a row: a RowWise kernel when the rows are a matrix's last axis (and a
                // second operand holds i32 class ids), else alone
  Gemm,         // heads a MatMul kernel, which reads its operands whole; elementwise epilogue
  Conv,         // heads a Conv kernel, likewise
  View,         // the operand's bytes seen with another shape (reshape): no kernel, no buffer
  Alone,        // its own loop nest over whole buffers: a kernel of its own
};
std::string_view form_name(FusionForm f);

// An op as matrix products: C[m, n] = op(A)[m, k] . op(B)[k, n], `batch` times (a conv as its
// im2col GEMM, one per image). A transposed operand is stored as [k, m] (A) or [n, k] (B).
struct GemmShape {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool a_transposed = false, b_transposed = false;
};
using GemmShapeFn = std::optional<GemmShape> (*)(const TensorType& result, const std::vector<TensorType>& args);

// What a composite op's expansion sees (ir/Composites.cpp): the graph to build in and the op's
// node, whose operands are already in that graph. op() builds a node as every pass does.
struct ExpandCtx {
  Graph& g;
  const Node& n;  // not a node of g (building may move g's nodes)

  ValueId arg(size_t i) const;
  ValueId op(OpKind kind, std::vector<ValueId> args, const Attrs& attrs = {});
  ValueId constant(double value);  // a scalar of the op's dtype
};
using ExpandRule = ValueId (*)(ExpandCtx&);

// An operand that an op reads as class ids in [0, classes) (the table's class-ids column).
struct ClassIds {
  size_t operand = 0;
  int64_t classes = 1;
};
using ClassIdsFn = std::optional<ClassIds> (*)(const Graph& g, const Node& n);

struct OpInfo;

// What a shape rule sees: the operand types and the bound attributes. A rule returns the
// result type, may canonicalize attributes (fill `axes`, make negative axes positive), and
// reports a mismatch with fail(), naming both sides.
struct ShapeCtx {
  const OpInfo& op;
  const std::vector<TensorType>& args;
  Attrs& attrs;
  SourceLoc loc;

  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... a) const {
    gradc::fail(loc, f, std::forward<Args>(a)...);
  }
};

using ShapeRule = TensorType (*)(ShapeCtx&);

// An op's arity in the table: a count of operands, or any number of at least one (concat).
constexpr int kVariadic = -1;

struct OpInfo {
  OpKind kind;
  std::string_view name;
  int arity;  // or kVariadic
  uint32_t traits;
  std::vector<AttrSpec> attrs;
  ShapeRule infer;
  FusionForm form;
  GemmShapeFn gemm;  // nullopt: not a matrix product
  ExpandRule expand;  // a composite op's expansion; `primitive` for the others
  ClassIdsFn class_ids;  // nullopt: it reads no operand as class ids

  bool has(OpTrait t) const { return (traits & t) != 0; }
  bool composite() const;
};

const OpInfo& op_info(OpKind kind);
std::optional<OpKind> find_op(std::string_view name);
// "relu takes 1 operand, got 2" when `got` operands do not fit the op's arity, else empty.
std::string arity_mismatch(const OpInfo& op, size_t got);
const std::vector<OpInfo>& all_ops();

// Runs the op's shape rule: checks arity and returns the result type (attrs canonicalized).
TensorType infer_type(OpKind kind, const std::vector<TensorType>& args, Attrs& attrs,
                      const SourceLoc& loc);

// Shape rules, one per family of ops; ShapeRules.cpp defines them.
#define OP(Id, spelling, arity, traits, schema, infer, ...) TensorType infer(ShapeCtx&);
#include "gradc/Ops.def"

// Expansions of composite ops (Composites.cpp defines them; `primitive` for every other op,
// which asserts if called).
#define OP(Id, spelling, arity, traits, schema, infer, eval, grad, emit, form, gemm, kinks, fold, expand, ...) \
  ValueId expand(ExpandCtx&);
#include "gradc/Ops.def"

// Class-id operands (Graph.cpp defines them).
std::optional<ClassIds> no_class_ids(const Graph& g, const Node& n);
std::optional<ClassIds> class_ids_of_labels(const Graph& g, const Node& n);
std::optional<ClassIds> class_ids_of_one_hot(const Graph& g, const Node& n);
std::optional<ClassIds> class_ids_of_gather(const Graph& g, const Node& n);

// GEMM shapes (Cost.cpp defines them; no_gemm for every other op).
std::optional<GemmShape> no_gemm(const TensorType&, const std::vector<TensorType>&);
std::optional<GemmShape> gemm_matmul(const TensorType& result, const std::vector<TensorType>& args);
std::optional<GemmShape> gemm_conv2d(const TensorType& result, const std::vector<TensorType>& args);
std::optional<GemmShape> gemm_conv2d_input_grad(const TensorType& result, const std::vector<TensorType>& args);
std::optional<GemmShape> gemm_conv2d_weight_grad(const TensorType& result, const std::vector<TensorType>& args);

// The FLOPs of one op: 2 m n k per GEMM of its gemm shape, else one per element of its largest
// operand or result (an elementwise op, or a step of a reduction). Saturates.
int64_t op_flops(OpKind kind, const TensorType& result, const std::vector<TensorType>& args);

// Numpy broadcasting of two shapes; nullopt when they do not broadcast.
std::optional<Shape> broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace gradc
