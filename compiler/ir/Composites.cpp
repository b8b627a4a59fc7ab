// Composite ops: an op defined by its expansion into other ops and nothing else (tinygrad's
// table). The interpreter evaluates the expansion, autodiff differentiates it, fusion puts it
// back into one loop: a composite op costs one Ops.def line and one function here.
//
// add_op builds every node that a pass makes, so a composite never outlives its construction;
// passes/ExpandComposites.cpp expands the ones a spec names, before autodiff.
#include "ir/Graph.h"

#include <cmath>
#include <numbers>

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

ValueId ExpandCtx::constant(double value) { return add_constant(g, value, n.type.dtype, n.loc); }

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

// gelu(x) = x Φ(x) = x (1 + erf(x/√2)) / 2; with approximate=tanh, PyTorch's
// x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2.
ValueId expand_gelu(ExpandCtx& c) {
  ValueId x = c.arg(0), inner;
  if (c.n.attrs.get("approximate").as_ident() == "tanh") {
    ValueId cube = c.op(OpKind::Mul, {c.op(OpKind::Mul, {x, x}), x});
    ValueId poly = c.op(OpKind::Add, {x, c.op(OpKind::Mul, {cube, c.constant(0.044715)})});
    inner = c.op(OpKind::Tanh, {c.op(OpKind::Mul, {poly, c.constant(std::sqrt(2.0 / std::numbers::pi))})});
  } else {
    inner = c.op(OpKind::Erf, {c.op(OpKind::Mul, {x, c.constant(std::numbers::sqrt2 / 2)})});
  }
  ValueId half_x = c.op(OpKind::Mul, {x, c.constant(0.5)});
  return c.op(OpKind::Mul, {half_x, c.op(OpKind::Add, {inner, c.constant(1.0)})});
}

// logsumexp(x) = m + log(sum(exp(x - m))), m the max over the same axes (kept, so it broadcasts
// back over x). The max's own gradient cancels in exact arithmetic: the result's is softmax(x).
ValueId expand_logsumexp(ExpandCtx& c) {
  ValueId x = c.arg(0);
  const Attr& axes = c.n.attrs.get("axes");
  ValueId m = c.op(OpKind::Max, {x}, {{"axes", axes}, {"keepdims", true}});
  ValueId sum = c.op(OpKind::Sum, {c.op(OpKind::Exp, {c.op(OpKind::Sub, {x, m})})}, {{"axes", axes}, {"keepdims", true}});
  ValueId kept = c.op(OpKind::Add, {c.op(OpKind::Log, {sum}), m});
  if (c.n.attrs.get("keepdims").as_bool()) return kept;
  return c.op(OpKind::Reshape, {kept}, {{"shape", Attr(c.n.type.shape)}});
}

// layer_norm: d = x - mean(x), y = d rsqrt(mean(d²) + eps) gamma + beta, the means over the axes
// from axis on, kept so that they broadcast back (gamma and beta broadcast as trailing axes).
ValueId expand_layer_norm(ExpandCtx& c) {
  ValueId x = c.arg(0);
  int64_t rank = c.n.type.rank();
  std::vector<int64_t> axes;
  for (int64_t a = c.n.attrs.get("axis").as_int(); a < rank; ++a) axes.push_back(a);
  Attrs over{{"axes", Attr(axes)}, {"keepdims", true}};
  ValueId d = c.op(OpKind::Sub, {x, c.op(OpKind::Mean, {x}, over)});
  ValueId var = c.op(OpKind::Mean, {c.op(OpKind::Mul, {d, d})}, over);
  ValueId inv = c.op(OpKind::Rsqrt, {c.op(OpKind::Add, {var, c.constant(c.n.attrs.get("eps").as_number())})});
  return c.op(OpKind::Add, {c.op(OpKind::Mul, {c.op(OpKind::Mul, {d, inv}), c.arg(1)}), c.arg(2)});
}

}  // namespace gradc
