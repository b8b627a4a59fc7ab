// Composite ops: an op defined by its expansion into other ops and nothing else (tinygrad's
// table). The interpreter evaluates the expansion, autodiff differentiates it, fusion puts it
// back into one loop: a composite op costs one Ops.def line and one function here.
//
// add_op builds every node that a pass makes, so a composite never outlives its construction;
// passes/ExpandComposites.cpp expands the ones a spec names, before autodiff.
#include "ir/Graph.h"

namespace gradc {

bool OpInfo::composite() const { return expand != &primitive; }

ValueId primitive(ExpandCtx& c) {
  GRADC_ASSERT(false, "{} is a primitive op: it has no expansion", op_info(c.n.op).name);
  return -1;
}

ValueId add_op(Graph& g, OpKind kind, std::vector<ValueId> args, const Attrs& attrs, const SourceLoc& loc) {
  const OpInfo& info = op_info(kind);
  Node n;
  n.op = kind;
  n.args = std::move(args);
  n.attrs = bind_attrs(info.attrs, info.name, {}, attrs, loc);
  std::vector<TensorType> types;
  for (ValueId a : n.args) types.push_back(g[a].type);
  n.type = infer_type(kind, types, n.attrs, loc);
  n.loc = loc;
  if (!info.composite()) return g.add(std::move(n));
  ExpandCtx ctx{g, n};
  ValueId r = info.expand(ctx);
  GRADC_ASSERT(g[r].type == n.type, "the expansion of {} gives {}, not {}", info.name, g[r].type, n.type);
  return r;
}

ValueId ExpandCtx::arg(size_t i) const { return n.args[i]; }

ValueId ExpandCtx::op(OpKind kind, std::vector<ValueId> args, const Attrs& attrs) {
  return add_op(g, kind, std::move(args), attrs, n.loc);
}

// ---- the expansions, one per composite op of gradc/Ops.def

// x² = x · x: the same bits as a multiply of its own, and its gradient dy·x + dy·x = 2 x dy.
ValueId expand_square(ExpandCtx& c) { return c.op(OpKind::Mul, {c.arg(0), c.arg(0)}); }

// log(1 + e^x) = log1p(e^-|x|) + max(x, 0): e^-|x| <= 1 never overflows, and log1p keeps the
// digits of the small terms. Its derivative (through the expansion) is σ(x).
ValueId expand_softplus(ExpandCtx& c) {
  ValueId x = c.arg(0);
  ValueId tail = c.op(OpKind::Log1p, {c.op(OpKind::Exp, {c.op(OpKind::Neg, {c.op(OpKind::Abs, {x})})})});
  return c.op(OpKind::Add, {tail, c.op(OpKind::Relu, {x})});
}

}  // namespace gradc
