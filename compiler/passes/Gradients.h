// Gradient rules, one per op of the table: each builds, out of ordinary ops, the gradient of
// the loss with respect to every operand of one node, given the gradient `dy` of its result.
#pragma once

#include <optional>
#include <vector>

#include "passes/GraphWriter.h"

namespace gradc {

struct GradCtx {
  GraphWriter& e;
  ValueId y;                 // the node being differentiated
  ValueId dy;                // d loss / d y, of y's type
  std::vector<bool> wanted;  // which operands need a gradient (those on a path from a param)

  Node node() const { return e.node(y); }  // a copy: emitting invalidates references
  bool wants(size_t i) const { return wanted[i]; }
};

// One entry per operand; nullopt where the operand needs none or the gradient is zero.
using Grads = std::vector<std::optional<ValueId>>;
using GradRule = Grads (*)(GradCtx&);

#define OP(Id, spelling, arity, traits, schema, infer, eval, grad, ...) Grads grad(GradCtx&);
#include "gradc/Ops.def"

GradRule grad_rule(OpKind kind);

// Kink masks, the table's last column, for the gradient checker: where an op's derivative
// jumps (relu at 0, max where two elements tie), nodes of 0s and 1s that flip as an input
// crosses the kink, so that a finite difference straddling one is told apart.
struct KinkCtx {
  GraphWriter& e;
  ValueId y;                    // the node
  std::vector<ValueId>& masks;  // where the rule appends its masks

  Node node() const { return e.node(y); }  // a copy: emitting invalidates references
  void greater(ValueId a, ValueId b) { masks.push_back(e.op(OpKind::Greater, {a, b})); }
};
using KinkRule = void (*)(KinkCtx&);

#define OP(Id, spelling, arity, traits, schema, infer, eval, grad, emit, form, gemm, kinks, ...) void kinks(KinkCtx&);
#include "gradc/Ops.def"

KinkRule kink_rule(OpKind kind);

}  // namespace gradc
