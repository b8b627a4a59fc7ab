// The gradient table. Each rule states its math first; `x`, `a`, `b` are the operands,
// `y` the result and `dy` the incoming gradient. Broadcasting is undone by GraphWriter::unbroadcast.
// Every rule has a finite-difference test (tests/test_autodiff.cpp).
#include "passes/Gradients.h"

#include <cmath>
#include <numbers>

namespace gradc {

namespace {

ValueId arg(const GradCtx& c, size_t i) { return c.node().args[i]; }
Shape shape_of(const GradCtx& c, ValueId v) { return c.e.type(v).shape; }
DType dtype(const GradCtx& c) { return c.e.type(c.y).dtype; }
ValueId zero(GradCtx& c) { return c.e.constant(0.0, dtype(c)); }
ValueId one(GradCtx& c) { return c.e.constant(1.0, dtype(c)); }

// For a binary elementwise op: d/da and d/db as full-shape values, then unbroadcast.
Grads binary(GradCtx& c, ValueId da_full_or_none, ValueId db_full_or_none) {
  Grads g(2);
  if (c.wants(0)) g[0] = c.e.unbroadcast(da_full_or_none, shape_of(c, arg(c, 0)));
  if (c.wants(1)) g[1] = c.e.unbroadcast(db_full_or_none, shape_of(c, arg(c, 1)));
  return g;
}

// 1 where a > b, 0.5 on a tie, 0 where a < b: how maximum and minimum share their gradient.
ValueId winner_mask(GradCtx& c, ValueId a, ValueId b) {
  ValueId diff = c.e.sub(c.e.op(OpKind::Greater, {a, b}), c.e.op(OpKind::Greater, {b, a}));
  return c.e.add(c.e.constant(0.5, dtype(c)), c.e.scale(diff, 0.5));
}

Grads maximum_like(GradCtx& c, ValueId a_wins) {
  ValueId da = c.e.mul(c.dy, a_wins);
  return binary(c, da, c.e.sub(c.dy, da));
}

Attrs pick(const Attrs& from, std::initializer_list<const char*> names) {
  Attrs out;
  for (const char* name : names)
    if (const Attr* a = from.find(name)) out.set(name, *a);
  return out;
}

}  // namespace

// ∂/∂x -x = -1
Grads grad_neg(GradCtx& c) { return {c.e.neg(c.dy)}; }
// ∂/∂x eˣ = eˣ = y
Grads grad_exp(GradCtx& c) { return {c.e.mul(c.dy, c.y)}; }
// ∂/∂x log x = 1/x
Grads grad_log(GradCtx& c) { return {c.e.div(c.dy, arg(c, 0))}; }
// ∂/∂x log(1 + x) = 1/(1 + x)
Grads grad_log1p(GradCtx& c) { return {c.e.div(c.dy, c.e.add(one(c), arg(c, 0)))}; }
// ∂/∂x erf x = 2/√π e^(-x²)
Grads grad_erf(GradCtx& c) {
  ValueId x = arg(c, 0);
  return {c.e.mul(c.dy, c.e.scale(c.e.op(OpKind::Exp, {c.e.neg(c.e.mul(x, x))}), 2.0 / std::sqrt(std::numbers::pi)))};
}
// ∂/∂x √x = 1/(2√x) = 1/(2y)
Grads grad_sqrt(GradCtx& c) { return {c.e.div(c.dy, c.e.scale(c.y, 2.0))}; }
// ∂/∂x x^(-1/2) = -x^(-3/2)/2 = -y/(2x)
Grads grad_rsqrt(GradCtx& c) { return {c.e.mul(c.dy, c.e.scale(c.e.div(c.y, arg(c, 0)), -0.5))}; }
// ∂/∂x |x| = sign(x), 0 at 0 (as PyTorch)
Grads grad_abs(GradCtx& c) {
  ValueId x = arg(c, 0), z = zero(c);
  ValueId sign = c.e.sub(c.e.op(OpKind::Greater, {x, z}), c.e.op(OpKind::Greater, {z, x}));
  return {c.e.mul(c.dy, sign)};
}
// ∂/∂x tanh x = 1 - tanh² x = 1 - y²
Grads grad_tanh(GradCtx& c) { return {c.e.mul(c.dy, c.e.sub(one(c), c.e.op(OpKind::Square, {c.y})))}; }
// ∂/∂x σ(x) = σ(x)(1 - σ(x)) = y(1 - y)
Grads grad_sigmoid(GradCtx& c) { return {c.e.mul(c.dy, c.e.mul(c.y, c.e.sub(one(c), c.y)))}; }
// ∂/∂x max(x, 0) = [x > 0], 0 at 0 (as PyTorch)
Grads grad_relu(GradCtx& c) { return {c.e.mul(c.dy, c.e.op(OpKind::Greater, {arg(c, 0), zero(c)}))}; }
// ∂/∂x leaky_relu x = 1 where x > 0, else the slope (PyTorch's; at 0 the slope)
Grads grad_leaky_relu(GradCtx& c) {
  ValueId x = arg(c, 0);
  ValueId slope = c.e.constant(c.node().attrs.get("negative_slope").as_number(), dtype(c));
  return {c.e.op(OpKind::Where, {c.e.op(OpKind::Greater, {x, zero(c)}), c.dy, c.e.mul(c.dy, slope)})};
}
// ∂/∂x x² = 2x

// ∂(a + b) = (1, 1)
Grads grad_add(GradCtx& c) { return binary(c, c.dy, c.dy); }
// ∂ where(c, a, b) = (none, [c], [not c]): dy goes to the operand each element was taken from.
Grads grad_where(GradCtx& c) {
  ValueId cond = arg(c, 0), z = c.e.constant(0.0, dtype(c));
  Grads g(3);
  if (c.wants(1)) g[1] = c.e.unbroadcast(c.e.op(OpKind::Where, {cond, c.dy, z}), shape_of(c, arg(c, 1)));
  if (c.wants(2)) g[2] = c.e.unbroadcast(c.e.op(OpKind::Where, {cond, z, c.dy}), shape_of(c, arg(c, 2)));
  return g;
}
// ∂(a - b) = (1, -1)
Grads grad_sub(GradCtx& c) { return binary(c, c.dy, c.wants(1) ? c.e.neg(c.dy) : c.dy); }
// ∂(a b) = (b, a)
Grads grad_mul(GradCtx& c) {
  ValueId a = arg(c, 0), b = arg(c, 1);
  return binary(c, c.wants(0) ? c.e.mul(c.dy, b) : c.dy, c.wants(1) ? c.e.mul(c.dy, a) : c.dy);
}
// ∂(a / b) = (1/b, -a/b² = -y/b)
Grads grad_div(GradCtx& c) {
  ValueId b = arg(c, 1);
  return binary(c, c.wants(0) ? c.e.div(c.dy, b) : c.dy, c.wants(1) ? c.e.neg(c.e.div(c.e.mul(c.dy, c.y), b)) : c.dy);
}
// ∂ max(a, b) = ([a > b], [b > a]), split evenly on ties (as PyTorch)
Grads grad_maximum(GradCtx& c) { return maximum_like(c, winner_mask(c, arg(c, 0), arg(c, 1))); }
// ∂ min(a, b) = ([a < b], [b < a]), split evenly on ties (as PyTorch)
Grads grad_minimum(GradCtx& c) { return maximum_like(c, winner_mask(c, arg(c, 1), arg(c, 0))); }
// ∂ aᵇ = (b a^(b-1), aᵇ log a = y log a)
Grads grad_pow(GradCtx& c) {
  ValueId a = arg(c, 0), b = arg(c, 1);
  ValueId da = c.dy, db = c.dy;
  if (c.wants(0)) da = c.e.mul(c.dy, c.e.mul(b, c.e.op(OpKind::Pow, {a, c.e.sub(b, one(c))})));
  if (c.wants(1)) db = c.e.mul(c.dy, c.e.mul(c.y, c.e.op(OpKind::Log, {a})));
  return binary(c, da, db);
}

// Y = A B: dA = dY Bᵀ, dB = Aᵀ dY (the last two axes, batched or not)
Grads grad_matmul(GradCtx& c) {
  ValueId a = arg(c, 0), b = arg(c, 1);
  Attrs swap = c.e.type(a).rank() == 3 ? Attrs{{"perm", Attr(std::vector<int64_t>{0, 2, 1})}} : Attrs{{"perm", Attr(std::vector<int64_t>{1, 0})}};
  Grads g(2);
  if (c.wants(0)) g[0] = c.e.op(OpKind::MatMul, {c.dy, c.e.op(OpKind::Transpose, {b}, swap)});
  if (c.wants(1)) g[1] = c.e.op(OpKind::MatMul, {c.e.op(OpKind::Transpose, {a}, swap), c.dy});
  return g;
}
// transpose by perm: dx = transpose(dy) by the inverse permutation
Grads grad_transpose(GradCtx& c) {
  Node n = c.node();
  const std::vector<int64_t>& perm = n.attrs.get("perm").as_ints();
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  return {c.e.op(OpKind::Transpose, {c.dy}, {{"perm", Attr(inverse)}})};
}
// reshape: dx = dy in x's shape
Grads grad_reshape(GradCtx& c) { return {c.e.op(OpKind::Reshape, {c.dy}, {{"shape", Attr(shape_of(c, arg(c, 0)))}})}; }
// broadcast_to: dx = dy summed over the broadcast axes
Grads grad_broadcast_to(GradCtx& c) { return {c.e.unbroadcast(c.dy, shape_of(c, arg(c, 0)))}; }

// sum over axes: every x element gets dy of its group
Grads grad_sum(GradCtx& c) {
  Node n = c.node();
  return {c.e.expand(c.dy, n.attrs.get("axes").as_ints(), shape_of(c, n.args[0]))};
}
// mean over axes: dy / (group size)
Grads grad_mean(GradCtx& c) {
  Node n = c.node();
  Shape x = shape_of(c, n.args[0]);
  int64_t group = 1;
  for (int64_t a : n.attrs.get("axes").as_ints()) group *= x[static_cast<size_t>(a)];
  return {c.e.scale(c.e.expand(c.dy, n.attrs.get("axes").as_ints(), x), 1.0 / static_cast<double>(group))};
}
// max over axes: dy to the elements equal to the max (the arg-max mask), split evenly on ties
Grads grad_max(GradCtx& c) {
  Node n = c.node();
  ValueId x = n.args[0];
  const std::vector<int64_t>& axes = n.attrs.get("axes").as_ints();
  Shape shape = shape_of(c, x);
  ValueId is_max = c.e.sub(one(c), c.e.op(OpKind::Greater, {c.e.expand(c.y, axes, shape), x}));
  ValueId ties = c.e.op(OpKind::Sum, {is_max}, {{"axes", Attr(axes)}, {"keepdims", true}});
  return {c.e.div(c.e.mul(is_max, c.e.expand(c.dy, axes, shape)), ties)};
}

// softmax: dx = y (dy - Σ dy y), the sum along the axis
Grads grad_softmax(GradCtx& c) {
  Attrs along{{"axes", Attr(std::vector<int64_t>{c.node().attrs.get("axis").as_int()})}, {"keepdims", true}};
  ValueId dot = c.e.op(OpKind::Sum, {c.e.mul(c.dy, c.y)}, along);
  return {c.e.mul(c.y, c.e.sub(c.dy, dot))};
}
// log_softmax: dx = dy - exp(y) Σ dy, the sum along the axis
Grads grad_log_softmax(GradCtx& c) {
  Attrs along{{"axes", Attr(std::vector<int64_t>{c.node().attrs.get("axis").as_int()})}, {"keepdims", true}};
  return {c.e.sub(c.dy, c.e.mul(c.e.op(OpKind::Exp, {c.y}), c.e.op(OpKind::Sum, {c.dy}, along)))};
}

// L = -(1/N) Σ_rows Σ_c p log softmax(z): dz = (softmax(z) Σ_c p - p) dy/N, dp = -log softmax(z) dy/N;
// class ids are one-hot rows p (Σ_c p = 1) and get no gradient.
Grads grad_softmax_cross_entropy(GradCtx& c) {
  ValueId z = arg(c, 0), labels = arg(c, 1);
  TensorType zt = c.e.type(z);
  ValueId per_row = c.e.scale(c.dy, 1.0 / static_cast<double>(zt.shape[0]));
  Attrs rows{{"axis", Attr(int64_t{1})}};
  Grads g(2);
  if (c.e.type(labels).dtype == DType::I32) {
    if (c.wants(0)) {
      ValueId p = c.e.op(OpKind::OneHot, {labels},
                         {{"classes", Attr(zt.shape[1])}, {"dtype", Attr(Ident{std::string(dtype_name(zt.dtype))})}});
      g[0] = c.e.mul(c.e.sub(c.e.op(OpKind::Softmax, {z}, rows), p), per_row);
    }
    return g;
  }
  if (c.wants(0)) {
    ValueId mass = c.e.op(OpKind::Sum, {labels}, {{"axes", Attr(std::vector<int64_t>{1})}, {"keepdims", true}});
    g[0] = c.e.mul(c.e.sub(c.e.mul(c.e.op(OpKind::Softmax, {z}, rows), mass), labels), per_row);
  }
  if (c.wants(1)) g[1] = c.e.mul(c.e.neg(c.e.op(OpKind::LogSoftmax, {z}, rows)), per_row);
  return g;
}
// L = mean (a - b)²: da = 2(a - b) dy/n, db = -da
Grads grad_mse(GradCtx& c) {
  ValueId a = arg(c, 0), b = arg(c, 1);
  double n = static_cast<double>(c.e.type(a).numel());
  ValueId da = c.e.mul(c.e.sub(a, b), c.e.scale(c.dy, 2.0 / n));
  Grads g(2);
  if (c.wants(0)) g[0] = da;
  if (c.wants(1)) g[1] = c.e.neg(da);
  return g;
}
// L = mean max(x, 0) - x t + log(1 + e^-|x|): dx = (σ(x) - t) dy/n, dt = -x dy/n
Grads grad_bce_with_logits(GradCtx& c) {
  ValueId x = arg(c, 0), t = arg(c, 1);
  ValueId per = c.e.scale(c.dy, 1.0 / static_cast<double>(c.e.type(x).numel()));
  Grads g(2);
  if (c.wants(0)) g[0] = c.e.mul(c.e.sub(c.e.op(OpKind::Sigmoid, {x}), t), per);
  if (c.wants(1)) g[1] = c.e.mul(c.e.neg(x), per);
  return g;
}

// conv2d: the adjoints in the input and in the weights, with the same stride and padding
Grads grad_conv2d(GradCtx& c) {
  Node n = c.node();
  ValueId x = n.args[0], w = n.args[1];
  Shape ws = shape_of(c, w);
  Attrs attrs = pick(n.attrs, {"stride", "padding"});
  Grads g(2);
  if (c.wants(0)) {
    Attrs a = attrs;
    a.set("shape", Attr(shape_of(c, x)));
    g[0] = c.e.op(OpKind::Conv2dInputGrad, {c.dy, w}, a);
  }
  if (c.wants(1)) {
    Attrs a = attrs;
    a.set("kernel", Attr(std::vector<int64_t>{ws[2], ws[3]}));
    g[1] = c.e.op(OpKind::Conv2dWeightGrad, {x, c.dy}, a);
  }
  return g;
}
// maxpool2d: dy to each window's maximum
Grads grad_maxpool2d(GradCtx& c) {
  Node n = c.node();
  return {c.e.op(OpKind::MaxPool2dGrad, {n.args[0], c.dy}, pick(n.attrs, {"kernel", "stride"}))};
}
// avgpool2d: dy spread evenly over each window
Grads grad_avgpool2d(GradCtx& c) {
  Node n = c.node();
  Attrs a = pick(n.attrs, {"kernel", "stride"});
  a.set("shape", Attr(shape_of(c, n.args[0])));
  return {c.e.op(OpKind::AvgPool2dGrad, {c.dy}, a)};
}

// greater and one_hot are piecewise constant: their gradient is zero almost everywhere.
// gather: d table = gather_grad(dy, ids), the rows of dy added at the rows they were taken from
Grads grad_gather(GradCtx& c) {
  Node n = c.node();
  Attrs attrs{{"axis", n.attrs.get("axis")}, {"shape", Attr(shape_of(c, n.args[0]))}};
  return {c.e.op(OpKind::GatherGrad, {c.dy, n.args[1]}, attrs), std::nullopt};
}
// slice: dx = slice_grad(dy), zeros where the slice did not read
Grads grad_slice(GradCtx& c) {
  Node n = c.node();
  Attrs attrs = pick(n.attrs, {"begin", "end", "stride"});
  attrs.set("shape", Attr(shape_of(c, n.args[0])));
  return {c.e.op(OpKind::SliceGrad, {c.dy}, attrs)};
}
// concat: each operand's gradient is its slice of dy along axis
Grads grad_concat(GradCtx& c) {
  Node n = c.node();
  size_t axis = static_cast<size_t>(n.attrs.get("axis").as_int());
  Shape out = c.e.type(c.y).shape;
  Grads g(n.args.size());
  int64_t offset = 0;
  for (size_t i = 0; i < n.args.size(); ++i) {
    Shape shape = shape_of(c, n.args[i]);
    if (c.wants(i)) {
      std::vector<int64_t> begin(out.size(), 0), end = out;
      begin[axis] = offset, end[axis] = offset + shape[axis];
      g[i] = c.e.op(OpKind::Slice, {c.dy}, {{"begin", Attr(begin)}, {"end", Attr(end)}});
    }
    offset += shape[axis];
  }
  return g;
}
// cast between floats: dx = dy cast back to x's dtype; to or from i32 there is no gradient
Grads grad_cast(GradCtx& c) {
  TensorType from = c.e.type(arg(c, 0));
  if (!is_float(from.dtype) || !is_float(dtype(c))) return {std::nullopt};
  return {c.e.op(OpKind::Cast, {c.dy}, {{"dtype", Attr(Ident{std::string(dtype_name(from.dtype))})}})};
}
// tril keeps or zeroes each element: dx = tril(dy)
Grads grad_tril(GradCtx& c) { return {c.e.op(OpKind::Tril, {c.dy}, pick(c.node().attrs, {"diagonal"}))}; }
// dropout never reaches autodiff: the train path lowers it to x * dropout_mask first
Grads grad_dropout(GradCtx& c) {
  GRADC_ASSERT(false, "autodiff met dropout: lower_dropout runs before it");
  return {c.dy};
}
// the mask is constant in x: no gradient to the seed or the step
Grads grad_dropout_mask(GradCtx&) { return {std::nullopt, std::nullopt}; }
Grads grad_greater(GradCtx&) { return {std::nullopt, std::nullopt}; }
Grads grad_one_hot(GradCtx&) { return {std::nullopt}; }

// A composite op never reaches autodiff: the pipeline expands it first (passes/ExpandComposites.cpp).
Grads grad_expanded(GradCtx& c) {
  GRADC_ASSERT(false, "autodiff met {}, a composite op: expand_composites runs before it", op_info(c.node().op).name);
  return {};
}

// The adjoint ops appear only in backward graphs; differentiating them again is not built.
Grads grad_second_order(GradCtx& c) {
  Node n = c.node();
  fail(n.loc, "autodiff: {} is itself a gradient, and second derivatives are not supported",
       op_info(n.op).name);
}

// ---- Kink masks (see KinkCtx): the ops whose derivative jumps, each mask one side of a kink.

void no_kinks(KinkCtx&) {}

// relu and abs bend at x = 0: x > 0, and 0 > x.
void kinks_at_zero(KinkCtx& c) {
  Node n = c.node();
  ValueId zero = c.e.constant(0.0, n.type.dtype);
  c.greater(n.args[0], zero);
  c.greater(zero, n.args[0]);
}

// maximum and minimum switch operand where a = b: a > b, and b > a.
void kinks_where_equal(KinkCtx& c) {
  Node n = c.node();
  c.greater(n.args[0], n.args[1]);
  c.greater(n.args[1], n.args[0]);
}

// max over axes switches element where two tie: which elements fall below their group's max.
void kinks_max(KinkCtx& c) {
  Node n = c.node();
  c.greater(c.e.expand(c.y, n.attrs.get("axes").as_ints(), c.e.type(n.args[0]).shape), n.args[0]);
}

// maxpool2d switches element where two in a window tie: where each window's max is taken from.
void kinks_maxpool2d(KinkCtx& c) {
  Node n = c.node();
  ValueId ones = c.e.op(OpKind::BroadcastTo, {c.e.constant(1.0, n.type.dtype)}, {{"shape", Attr(n.type.shape)}});
  Attrs a{{"kernel", n.attrs.get("kernel")}, {"stride", n.attrs.get("stride")}};
  c.masks.push_back(c.e.op(OpKind::MaxPool2dGrad, {n.args[0], ones}, a));
}

// greater is itself a step: its result is the mask.
void kinks_greater(KinkCtx& c) { c.masks.push_back(c.y); }

KinkRule kink_rule(OpKind kind) {
  static const KinkRule rules[] = {
#define OP(Id, spelling, arity, traits, schema, infer, eval, grad, emit, form, gemm, kinks, ...) kinks,
#include "gradc/Ops.def"
  };
  return rules[static_cast<size_t>(kind)];
}

GradRule grad_rule(OpKind kind) {
  static const GradRule rules[] = {
#define OP(Id, spelling, arity, traits, schema, infer, eval, grad, ...) grad,
#include "gradc/Ops.def"
  };
  return rules[static_cast<size_t>(kind)];
}

}  // namespace gradc
