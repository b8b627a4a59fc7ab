// The op table as data: kinds, names, arities, traits, attribute schemas and shape rules.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "ir/Attr.h"
#include "gradc/Types.h"

namespace gradc {

enum class OpKind : uint16_t {
#define OP(Id, ...) Id,
#include "ir/Ops.def"
};

// Properties that passes read instead of switching on the op kind.
enum OpTrait : uint32_t {
  kNoTraits = 0,
  kElementwise = 1u << 0,  // result element i depends on operand elements i only
  kBroadcast = 1u << 1,    // operands broadcast numpy-style to the result shape
  kLayout = 1u << 2,       // moves or copies elements without arithmetic
  kReduction = 1u << 3,    // reduces over `axes`
  kRowwise = 1u << 4,      // normalizes along one `axis`
  kLoss = 1u << 5,         // returns the scalar mean loss over the batch
};

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

struct OpInfo {
  OpKind kind;
  std::string_view name;
  int arity;
  uint32_t traits;
  std::vector<AttrSpec> attrs;
  ShapeRule infer;

  bool has(OpTrait t) const { return (traits & t) != 0; }
};

const OpInfo& op_info(OpKind kind);
std::optional<OpKind> find_op(std::string_view name);
const std::vector<OpInfo>& all_ops();

// Runs the op's shape rule: checks arity and returns the result type (attrs canonicalized).
TensorType infer_type(OpKind kind, const std::vector<TensorType>& args, Attrs& attrs,
                      const SourceLoc& loc);

// Shape rules, one per family of ops; ShapeRules.cpp defines them.
#define OP(Id, spelling, arity, traits, schema, infer, ...) TensorType infer(ShapeCtx&);
#include "ir/Ops.def"

// Numpy broadcasting of two shapes; nullopt when they do not broadcast.
std::optional<Shape> broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace gradc
