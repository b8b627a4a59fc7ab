// Shape rules: the result type of each op from its operand types and attributes.
//
// A rule checks what the op needs of its operands and names both sides of any mismatch;
// it also canonicalizes attributes (explicit `axes`, `perm`, `stride`; non-negative axes),
// so that later passes never handle defaults.
#include <algorithm>
#include <numeric>

#include "ir/OpTable.h"

namespace gradc {

namespace {

void expect_float(ShapeCtx& c, const TensorType& t) {
  if (!is_float(t.dtype)) c.fail("{} expects a float tensor, got {}", c.op.name, t);
}

// Binary ops and losses: both float, one dtype.
void expect_same_float(ShapeCtx& c, const TensorType& a, const TensorType& b, std::string_view joint) {
  expect_float(c, a);
  expect_float(c, b);
  if (a.dtype != b.dtype) c.fail("{} of {} {} {}: dtypes differ", c.op.name, a, joint, b);
}

void expect_rank(ShapeCtx& c, const TensorType& t, int64_t rank, std::string_view layout) {
  if (t.rank() != rank) c.fail("{} expects a rank-{} tensor {}, got {}", c.op.name, rank, layout, t);
}

// Strides and padding past this are typos; bounding them keeps every size computation exact.
constexpr int64_t kMaxWindow = int64_t{1} << 20;
// Slice bounds past this are clamped before arithmetic (every dimension is below 2^48).
constexpr int64_t kMaxDim = int64_t{1} << 48;

// A non-negative axis for `rank`, counting negative ones from the end.
int64_t normalize_axis(ShapeCtx& c, int64_t axis, int64_t rank, const TensorType& t) {
  if (axis < -rank || axis >= rank) c.fail("{}: axis {} is out of range for {}", c.op.name, axis, t);
  return axis < 0 ? axis + rank : axis;
}

// The `shape` attribute of an op that makes a tensor of its own shape (an adjoint, a mask):
// positive dimensions, at most 2^48 elements; a scalar too unless `rank_needed`.
Shape shape_attr(ShapeCtx& c, bool rank_needed) {
  Shape shape = c.attrs.get("shape").as_ints();
  for (int64_t d : shape)
    if (d <= 0) c.fail("{}: shape={} must have positive dimensions", c.op.name, to_string(shape));
  if (!checked_numel(shape)) c.fail("{}: shape={} has more than 2^48 elements", c.op.name, to_string(shape));
  if (rank_needed && shape.empty()) c.fail("{}: shape=[] is a scalar, which has no axis", c.op.name);
  return shape;
}

}  // namespace

// Elementwise on one operand: the type is unchanged.
TensorType infer_unary(ShapeCtx& c) {
  expect_float(c, c.args[0]);
  return c.args[0];
}

// Elementwise on two operands: numpy broadcasting.
TensorType infer_binary(ShapeCtx& c) {
  const TensorType &a = c.args[0], &b = c.args[1];
  expect_same_float(c, a, b, "and");
  std::optional<Shape> shape = broadcast_shapes(a.shape, b.shape);
  if (!shape) c.fail("{} of {} and {}: shapes do not broadcast", c.op.name, a, b);
  return {a.dtype, *shape};
}

// where(cond, a, b): a and b one float dtype, cond a float tensor (its nonzero elements pick a);
// all three broadcast together, as numpy's where.
TensorType infer_where(ShapeCtx& c) {
  const TensorType &cond = c.args[0], &a = c.args[1], &b = c.args[2];
  expect_same_float(c, a, b, "and");
  if (!is_float(cond.dtype))
    c.fail("where with a condition {}: the condition must be f32 or f64 (0 or not), as greater gives", cond);
  std::optional<Shape> ab = broadcast_shapes(a.shape, b.shape);
  std::optional<Shape> all = ab ? broadcast_shapes(cond.shape, *ab) : std::nullopt;
  if (!all) c.fail("where of {}, {} and {}: shapes do not broadcast", cond, a, b);
  return {a.dtype, *all};
}

// leaky_relu: elementwise, with a finite slope for the negative side.
TensorType infer_leaky_relu(ShapeCtx& c) {
  double slope = c.attrs.get("negative_slope").as_number();
  if (!fits_f32(slope)) c.fail("leaky_relu: negative_slope={} is not a finite f32 number", slope);
  return infer_unary(c);
}

// gelu: elementwise; approximate is none (erf, exact) or tanh, as PyTorch's.
TensorType infer_gelu(ShapeCtx& c) {
  const std::string& form = c.attrs.get("approximate").as_ident();
  if (form != "none" && form != "tanh") c.fail("gelu: approximate={} is not one of none, tanh", form);
  return infer_unary(c);
}

// [M,K] x [K,N] -> [M,N]; batched [B,M,K] x [B,K,N] -> [B,M,N].
TensorType infer_matmul(ShapeCtx& c) {
  const TensorType &a = c.args[0], &b = c.args[1];
  expect_same_float(c, a, b, "by");
  if (a.rank() != b.rank() || (a.rank() != 2 && a.rank() != 3))
    c.fail("matmul of {} by {}: expected [M, K] by [K, N] or [B, M, K] by [B, K, N]", a, b);
  int64_t r = a.rank();
  if (r == 3 && a.shape[0] != b.shape[0])
    c.fail("matmul of {} by {}: batch dimensions differ ({} vs {})", a, b, a.shape[0], b.shape[0]);
  if (a.shape[r - 1] != b.shape[r - 2])
    c.fail("matmul of {} by {}: inner dimensions differ ({} vs {})", a, b, a.shape[r - 1], b.shape[r - 2]);
  Shape out(a.shape.begin(), a.shape.end() - 1);
  out.push_back(b.shape[r - 1]);
  return {a.dtype, out};
}

// Result dimension i is operand dimension perm[i]; no perm reverses the axes (numpy).
TensorType infer_transpose(ShapeCtx& c) {
  const TensorType& x = c.args[0];
  expect_float(c, x);
  std::vector<int64_t> perm(static_cast<size_t>(x.rank()));
  if (const Attr* p = c.attrs.find("perm")) {
    perm = p->as_ints();
  } else {
    std::iota(perm.rbegin(), perm.rend(), 0);
  }
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(static_cast<size_t>(x.rank()));
  std::iota(identity.begin(), identity.end(), 0);
  if (sorted != identity)
    c.fail("transpose of {}: perm={} is not a permutation of the {} axes", x, to_string(Attr(perm)), x.rank());
  Shape out;
  for (int64_t p : perm) out.push_back(x.shape[static_cast<size_t>(p)]);
  c.attrs.set("perm", Attr(perm));
  return {x.dtype, out};
}

// Same elements, new shape; one dimension may be -1 and is then inferred.
TensorType infer_reshape(ShapeCtx& c) {
  const TensorType& x = c.args[0];
  expect_float(c, x);
  Shape shape = c.attrs.get("shape").as_ints();
  int64_t unknown = -1;
  Shape known_dims;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1 && unknown < 0) {
      unknown = static_cast<int64_t>(i);
    } else if (shape[i] <= 0) {
      c.fail("reshape of {} to {}: dimensions must be positive (one may be -1)", x, to_string(shape));
    } else {
      known_dims.push_back(shape[i]);
    }
  }
  std::optional<int64_t> known_count = checked_numel(known_dims);
  if (!known_count) c.fail("reshape to {}: more than 2^48 elements", to_string(shape));
  int64_t known = *known_count;
  if (unknown >= 0) {
    if (x.numel() % known != 0)
      c.fail("reshape of {} to {}: {} elements do not split into rows of {}", x, to_string(shape), x.numel(), known);
    shape[static_cast<size_t>(unknown)] = x.numel() / known;
  }
  TensorType out{x.dtype, shape};
  if (out.numel() != x.numel())
    c.fail("reshape of {} to {}: element counts differ ({} vs {})", x, to_string(shape), x.numel(), out.numel());
  c.attrs.set("shape", Attr(shape));
  return out;
}

// numpy's broadcast_to: the operand must broadcast to exactly `shape`.
TensorType infer_broadcast_to(ShapeCtx& c) {
  const TensorType& x = c.args[0];
  expect_float(c, x);
  const Shape& shape = c.attrs.get("shape").as_ints();
  for (int64_t d : shape)
    if (d <= 0) c.fail("broadcast_to {}: dimensions must be positive", to_string(shape));
  if (!checked_numel(shape)) c.fail("broadcast_to {}: more than 2^48 elements", to_string(shape));
  std::optional<Shape> b = broadcast_shapes(x.shape, shape);
  if (!b || *b != shape) c.fail("broadcast_to of {} to {}: shapes do not broadcast", x, to_string(shape));
  return {x.dtype, shape};
}

namespace {

// table[:axis] + ids + table[axis + 1:]: gather's result, and the shape its adjoint reads.
Shape gathered_shape(const Shape& table, const Shape& ids, int64_t axis) {
  Shape out(table.begin(), table.begin() + axis);
  out.insert(out.end(), ids.begin(), ids.end());
  out.insert(out.end(), table.begin() + axis + 1, table.end());
  return out;
}

void expect_ids(ShapeCtx& c, const TensorType& ids) {
  if (ids.dtype != DType::I32) c.fail("{} expects indices i32[...], got {}", c.op.name, ids);
}

}  // namespace

// gather(table, ids, axis): numpy's take, an embedding lookup along axis 0.
TensorType infer_gather(ShapeCtx& c) {
  const TensorType &table = c.args[0], &ids = c.args[1];
  expect_float(c, table);
  expect_ids(c, ids);
  if (table.rank() == 0) c.fail("gather from a scalar {}: needs an axis to index", table);
  int64_t axis = normalize_axis(c, c.attrs.get("axis").as_int(), table.rank(), table);
  c.attrs.set("axis", Attr(axis));
  return {table.dtype, gathered_shape(table.shape, ids.shape, axis)};
}

// gather_grad(dy, ids, axis, shape): the table's gradient, of the table's shape.
TensorType infer_gather_grad(ShapeCtx& c) {
  const TensorType &dy = c.args[0], &ids = c.args[1];
  expect_float(c, dy);
  expect_ids(c, ids);
  Shape shape = shape_attr(c, true);
  TensorType table{dy.dtype, shape};
  int64_t axis = normalize_axis(c, c.attrs.get("axis").as_int(), table.rank(), table);
  c.attrs.set("axis", Attr(axis));
  if (dy.shape != gathered_shape(shape, ids.shape, axis))
    c.fail("gather_grad of {} by ids {}: expected a gradient of shape {}", dy, ids,
           to_string(gathered_shape(shape, ids.shape, axis)));
  return table;
}

namespace {

// slice's bounds made explicit over every axis of `shape` (Python's: negative bounds count from
// the end, then clamp to [0, dim]), written back to attrs; returns the sliced shape.
Shape sliced_shape(ShapeCtx& c, const Shape& shape, const std::string& what) {
  std::vector<int64_t> begin = c.attrs.get("begin").as_ints(), end = c.attrs.get("end").as_ints();
  size_t rank = shape.size(), named = begin.size();
  std::vector<int64_t> stride(named, 1);
  if (const Attr* s = c.attrs.find("stride")) stride = s->as_ints();
  if (named == 0 || named > rank || end.size() != named || stride.size() != named)
    c.fail("slice of {}: begin, end (and stride) must name the same 1 to {} leading axes, got {}, {} and {}", what,
           rank, to_string(begin), to_string(end), to_string(stride));
  Shape out;
  for (size_t d = 0; d < rank; ++d) {
    int64_t dim = shape[d];
    if (d >= named) {
      begin.push_back(0), end.push_back(dim), stride.push_back(1);
    } else {
      if (stride[d] <= 0) c.fail("slice of {}: stride {} on axis {} must be positive (negative strides are not built)", what, stride[d], d);
      for (int64_t* bound : {&begin[d], &end[d]}) {
        if (*bound < -kMaxDim || *bound > kMaxDim) *bound = *bound < 0 ? -kMaxDim : kMaxDim;  // keeps the sums exact
        *bound = std::clamp(*bound < 0 ? *bound + dim : *bound, int64_t{0}, dim);
      }
    }
    int64_t size = end[d] > begin[d] ? (end[d] - begin[d] + stride[d] - 1) / stride[d] : 0;
    if (size == 0) c.fail("slice of {}: axis {} is empty (begin {}, end {}); tensors have no empty axes", what, d, begin[d], end[d]);
    out.push_back(size);
  }
  c.attrs.set("begin", Attr(begin));
  c.attrs.set("end", Attr(end));
  c.attrs.set("stride", Attr(stride));
  return out;
}

}  // namespace

TensorType infer_slice(ShapeCtx& c) {
  const TensorType& x = c.args[0];
  expect_float(c, x);
  if (x.rank() == 0) c.fail("slice of a scalar {}: there is no axis to slice", x);
  return {x.dtype, sliced_shape(c, x.shape, to_string(x))};
}

// slice_grad(dy, begin, end, stride, shape): zeros of `shape` with dy where slice took it.
TensorType infer_slice_grad(ShapeCtx& c) {
  const TensorType& dy = c.args[0];
  expect_float(c, dy);
  Shape shape = shape_attr(c, true);
  TensorType x{dy.dtype, shape};
  Shape sliced = sliced_shape(c, shape, to_string(x));
  if (sliced != dy.shape) c.fail("slice_grad of {} into {}: the slice gives {}", dy, x, to_string(sliced));
  return x;
}

// concat(a, b, ..., axis): one dtype and rank; every dimension but axis equal.
TensorType infer_concat(ShapeCtx& c) {
  const TensorType& first = c.args[0];
  expect_float(c, first);
  if (first.rank() == 0) c.fail("concat of a scalar {}: there is no axis to join along", first);
  int64_t axis = normalize_axis(c, c.attrs.get("axis").as_int(), first.rank(), first);
  c.attrs.set("axis", Attr(axis));
  Shape out = first.shape;
  for (size_t i = 1; i < c.args.size(); ++i) {
    const TensorType& t = c.args[i];
    if (t.dtype != first.dtype) c.fail("concat of {} and {}: dtypes differ", first, t);
    bool fits = t.rank() == first.rank();
    for (int64_t d = 0; fits && d < t.rank(); ++d) fits = d == axis || t.shape[static_cast<size_t>(d)] == first.shape[static_cast<size_t>(d)];
    if (!fits) c.fail("concat of {} and {} along axis {}: the other dimensions differ", first, t, axis);
    out[static_cast<size_t>(axis)] += t.shape[static_cast<size_t>(axis)];
  }
  if (!checked_numel(out)) c.fail("concat: more than 2^48 elements");
  return {first.dtype, out};
}

// layer_norm(x, gamma, beta): gamma and beta are x.shape[axis:] (axis made non-negative), eps > 0.
TensorType infer_layer_norm(ShapeCtx& c) {
  const TensorType &x = c.args[0], &gamma = c.args[1], &beta = c.args[2];
  expect_float(c, x);
  if (x.rank() == 0) c.fail("layer_norm of a scalar {}: needs an axis to normalize over", x);
  int64_t axis = normalize_axis(c, c.attrs.get("axis").as_int(), x.rank(), x);
  c.attrs.set("axis", Attr(axis));
  TensorType expected{x.dtype, Shape(x.shape.begin() + axis, x.shape.end())};
  for (const TensorType* t : {&gamma, &beta})
    if (*t != expected)
      c.fail("layer_norm of {} over axes {}..{}: gamma and beta must be {}, got {}", x, axis, x.rank() - 1, expected, *t);
  double eps = c.attrs.get("eps").as_number();
  if (!(eps > 0) || !fits_f32(eps)) c.fail("layer_norm: eps={} must be a positive f32 number", eps);
  return x;
}

// cast(x, dtype): any dtype to f32, f64 or i32; the shape is unchanged.
TensorType infer_cast(ShapeCtx& c) {
  std::optional<DType> dtype = parse_dtype(c.attrs.get("dtype").as_ident());
  if (!dtype) c.fail("cast: dtype must be f32, f64 or i32, got {}", c.attrs.get("dtype").as_ident());
  return {*dtype, c.args[0].shape};
}

// tril: a float tensor of rank 2 or more, the type unchanged.
TensorType infer_tril(ShapeCtx& c) {
  const TensorType& x = c.args[0];
  expect_float(c, x);
  if (x.rank() < 2) c.fail("tril of {}: needs the two last axes of a matrix", x);
  int64_t diagonal = c.attrs.get("diagonal").as_int();
  if (diagonal < -kMaxDim || diagonal > kMaxDim) c.fail("tril: diagonal={} is out of range", diagonal);
  return x;
}

namespace {

void expect_rate(ShapeCtx& c) {
  double rate = c.attrs.get("rate").as_number();
  if (!(rate >= 0 && rate < 1)) c.fail("{}: rate={} must be in [0, 1)", c.op.name, rate);
}

}  // namespace

TensorType infer_dropout(ShapeCtx& c) {
  expect_rate(c);
  return infer_unary(c);
}

// dropout_mask(seed, step): float scalars (whole numbers below 2^32) -> the mask of `shape`.
TensorType infer_dropout_mask(ShapeCtx& c) {
  expect_rate(c);
  const TensorType &seed = c.args[0], &step = c.args[1];
  for (const TensorType* t : {&seed, &step})
    if (!is_float(t->dtype) || t->rank() != 0) c.fail("dropout_mask expects a float scalar seed and step, got {}", *t);
  int64_t stream = c.attrs.get("stream").as_int();
  if (stream < 0 || stream > 0xffffffffLL) c.fail("dropout_mask: stream={} is not a 32-bit number", stream);
  Shape shape = shape_attr(c, false);
  return {seed.dtype, shape};
}

// sum/mean/max over `axes` (all when absent); kept axes become 1 with keepdims.
TensorType infer_reduce(ShapeCtx& c) {
  const TensorType& x = c.args[0];
  expect_float(c, x);
  std::vector<int64_t> axes;
  if (const Attr* a = c.attrs.find("axes")) {
    for (int64_t axis : a->as_ints()) axes.push_back(normalize_axis(c, axis, x.rank(), x));
  } else {
    axes.resize(static_cast<size_t>(x.rank()));
    std::iota(axes.begin(), axes.end(), 0);
  }
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    c.fail("{} of {}: an axis is named twice in axes={}", c.op.name, x, to_string(c.attrs.get("axes")));
  bool keepdims = c.attrs.get("keepdims").as_bool();
  Shape out;
  for (int64_t i = 0; i < x.rank(); ++i) {
    bool reduced = std::binary_search(axes.begin(), axes.end(), i);
    if (!reduced) out.push_back(x.shape[static_cast<size_t>(i)]);
    else if (keepdims) out.push_back(1);
  }
  c.attrs.set("axes", Attr(axes));
  return {x.dtype, out};
}

// softmax and log_softmax along `axis`: the type is unchanged.
TensorType infer_softmax(ShapeCtx& c) {
  const TensorType& x = c.args[0];
  expect_float(c, x);
  if (x.rank() == 0) c.fail("{} of a scalar {}: needs an axis to normalize along", c.op.name, x);
  c.attrs.set("axis", Attr(normalize_axis(c, c.attrs.get("axis").as_int(), x.rank(), x)));
  return x;
}

// logits [N, C] with class ids i32[N] or probabilities [N, C]: a scalar.
TensorType infer_softmax_cross_entropy(ShapeCtx& c) {
  const TensorType &logits = c.args[0], &labels = c.args[1];
  expect_float(c, logits);
  if (logits.rank() != 2)
    c.fail("softmax_cross_entropy of {} and {}: logits must be [N, C]", logits, labels);
  if (labels.dtype == DType::I32) {
    if (labels.shape != Shape{logits.shape[0]})
      c.fail("softmax_cross_entropy of {} and {}: class ids must be i32[{}]", logits, labels, logits.shape[0]);
  } else if (labels.dtype != logits.dtype || labels.shape != logits.shape) {
    c.fail("softmax_cross_entropy of {} and {}: labels must be class ids i32[{}] or probabilities {}", logits,
           labels, logits.shape[0], logits);
  }
  return {logits.dtype, {}};
}

// mse and bce_with_logits: prediction and target of one type; a scalar.
TensorType infer_pointwise_loss(ShapeCtx& c) {
  const TensorType &a = c.args[0], &b = c.args[1];
  expect_same_float(c, a, b, "and");
  if (a.shape != b.shape) c.fail("{} of {} and {}: shapes differ", c.op.name, a, b);
  return {a.dtype, {}};
}

// x [N, C, H, W] by w [O, C, KH, KW] -> [N, O, (H + 2p - KH) / s + 1, (W + 2p - KW) / s + 1].
TensorType infer_conv2d(ShapeCtx& c) {
  const TensorType &x = c.args[0], &w = c.args[1];
  expect_same_float(c, x, w, "by");
  if (x.rank() != 4 || w.rank() != 4)
    c.fail("conv2d of {} by {}: expected an input [N, C, H, W] and weights [O, C, KH, KW]", x, w);
  if (x.shape[1] != w.shape[1])
    c.fail("conv2d of {} by {}: input channels differ ({} vs {})", x, w, x.shape[1], w.shape[1]);
  const std::vector<int64_t>& stride = c.attrs.get("stride").as_ints();
  const std::vector<int64_t>& padding = c.attrs.get("padding").as_ints();
  Shape out{x.shape[0], w.shape[0]};
  for (size_t i = 0; i < 2; ++i) {
    if (stride[i] < 1 || stride[i] > kMaxWindow)
      c.fail("conv2d: stride must be in [1, {}], got {}", kMaxWindow, to_string(Attr(stride)));
    if (padding[i] < 0 || padding[i] > kMaxWindow)
      c.fail("conv2d: padding must be in [0, {}], got {}", kMaxWindow, to_string(Attr(padding)));
    int64_t padded = x.shape[2 + i] + 2 * padding[i];
    if (w.shape[2 + i] > padded)
      c.fail("conv2d of {} by {}: the kernel is larger than the padded input", x, w);
    out.push_back((padded - w.shape[2 + i]) / stride[i] + 1);
  }
  return {x.dtype, out};
}

// maxpool2d and avgpool2d: x [N, C, H, W] -> [N, C, (H - KH) / SH + 1, (W - KW) / SW + 1];
// stride defaults to the kernel, as in PyTorch.
TensorType infer_pool2d(ShapeCtx& c) {
  const TensorType& x = c.args[0];
  expect_float(c, x);
  expect_rank(c, x, 4, "[N, C, H, W]");
  std::vector<int64_t> kernel = c.attrs.get("kernel").as_ints();
  std::vector<int64_t> stride = c.attrs.has("stride") ? c.attrs.get("stride").as_ints() : kernel;
  Shape out{x.shape[0], x.shape[1]};
  for (size_t i = 0; i < 2; ++i) {
    if (kernel[i] < 1 || stride[i] < 1 || stride[i] > kMaxWindow)
      c.fail("{}: kernel and stride must be in [1, {}], got kernel={} stride={}", c.op.name, kMaxWindow,
             to_string(Attr(kernel)), to_string(Attr(stride)));
    if (kernel[i] > x.shape[2 + i])
      c.fail("{} of {}: kernel={} is larger than the input", c.op.name, x, to_string(Attr(kernel)));
    out.push_back((x.shape[2 + i] - kernel[i]) / stride[i] + 1);
  }
  c.attrs.set("stride", Attr(stride));
  return {x.dtype, out};
}

}  // namespace gradc

namespace gradc {

// Class ids i32[...] -> one row of `classes` per id, in the float `dtype`.
TensorType infer_one_hot(ShapeCtx& c) {
  const TensorType& ids = c.args[0];
  if (ids.dtype != DType::I32) c.fail("one_hot expects class ids i32[...], got {}", ids);
  int64_t classes = c.attrs.get("classes").as_int();
  if (classes < 1 || classes > kMaxElements) c.fail("one_hot: classes must be positive, got {}", classes);
  std::optional<DType> dtype = parse_dtype(c.attrs.get("dtype").as_ident());
  if (!dtype || !is_float(*dtype)) c.fail("one_hot: dtype must be f32 or f64, got {}", c.attrs.get("dtype").as_ident());
  Shape out = ids.shape;
  out.push_back(classes);
  return {*dtype, out};
}

namespace {

// The type a forward op gives on `args` with this op's attributes: the *_grad ops check
// their operands against the forward op they are the adjoint of.
TensorType forward_type(ShapeCtx& c, ShapeRule rule, std::vector<TensorType> args) {
  ShapeCtx forward{c.op, args, c.attrs, c.loc};
  return rule(forward);
}

void expect_gradient_of(ShapeCtx& c, const TensorType& dy, const TensorType& forward) {
  if (dy != forward) c.fail("{}: the incoming gradient is {} but the forward op gives {}", c.op.name, dy, forward);
}

}  // namespace

// conv2d_input_grad(dy, w, shape = x's shape): dx, the adjoint of conv2d in its input.
TensorType infer_conv2d_input_grad(ShapeCtx& c) {
  const TensorType &dy = c.args[0], &w = c.args[1];
  TensorType x{dy.dtype, shape_attr(c, false)};
  expect_gradient_of(c, dy, forward_type(c, infer_conv2d, {x, w}));
  return x;
}

// conv2d_weight_grad(x, dy, kernel): dw [O, C, KH, KW], the adjoint of conv2d in its weights.
TensorType infer_conv2d_weight_grad(ShapeCtx& c) {
  const TensorType &x = c.args[0], &dy = c.args[1];
  if (x.rank() != 4 || dy.rank() != 4) c.fail("conv2d_weight_grad of {} and {}: expected rank-4 tensors", x, dy);
  const std::vector<int64_t>& k = c.attrs.get("kernel").as_ints();
  if (k[0] < 1 || k[1] < 1 || k[0] > kMaxWindow || k[1] > kMaxWindow)
    c.fail("conv2d_weight_grad: kernel={} is not a valid kernel size", to_string(Attr(k)));
  TensorType w{x.dtype, {dy.shape[1], x.shape[1], k[0], k[1]}};
  expect_gradient_of(c, dy, forward_type(c, infer_conv2d, {x, w}));
  return w;
}

// maxpool2d_grad(x, dy): dy routed to the maximum of each window of x.
TensorType infer_maxpool2d_grad(ShapeCtx& c) {
  const TensorType &x = c.args[0], &dy = c.args[1];
  expect_gradient_of(c, dy, forward_type(c, infer_pool2d, {x}));
  return x;
}

// avgpool2d_grad(dy, shape = x's shape): dy spread evenly over each window.
TensorType infer_avgpool2d_grad(ShapeCtx& c) {
  const TensorType& dy = c.args[0];
  TensorType x{dy.dtype, shape_attr(c, false)};
  expect_gradient_of(c, dy, forward_type(c, infer_pool2d, {x}));
  return x;
}

}  // namespace gradc
