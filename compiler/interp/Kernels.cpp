// Interpreter kernels, one per op of the table: plain loops over doubles, written to be
// obviously right rather than fast. The driver rounds each result to the node's dtype.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "interp/Interpreter.h"
#include "ir/Philox.h"

namespace gradc::interp {

namespace {

using Args = std::vector<const Tensor*>;

// max and min that propagate NaN, as PyTorch's maximum, minimum, relu, max and max_pool2d do
// (std::max would drop a NaN in its second operand and hide a bug upstream).
double max_nan(double a, double b) { return a > b || std::isnan(a) ? a : b; }
double min_nan(double a, double b) { return a < b || std::isnan(a) ? a : b; }

// Calls f(index) for every multi-index of `shape` in row-major order.
template <typename F>
void for_each_index(const Shape& shape, F f) {
  std::vector<int64_t> index(shape.size(), 0);
  int64_t count = TensorType{DType::F64, shape}.numel();
  for (int64_t flat = 0; flat < count; ++flat) {
    f(index);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
}

// The element of `t` that broadcasts to `index` of a result of higher or equal rank.
double broadcast_at(const Tensor& t, const std::vector<int64_t>& index) {
  size_t lead = index.size() - static_cast<size_t>(t.type.rank());
  size_t flat = 0;
  for (size_t d = 0; d < static_cast<size_t>(t.type.rank()); ++d) {
    int64_t dim = t.type.shape[d];
    flat = flat * static_cast<size_t>(dim) + static_cast<size_t>(dim == 1 ? 0 : index[lead + d]);
  }
  return t.data[flat];
}

Tensor unary(const Node& n, const Args& a, double (*f)(double)) {
  Tensor out = Tensor::zeros(n.type);
  for (size_t i = 0; i < out.data.size(); ++i) out.data[i] = f(a[0]->data[i]);
  return out;
}

Tensor binary(const Node& n, const Args& a, double (*f)(double, double)) {
  Tensor out = Tensor::zeros(n.type);
  const Tensor &x = *a[0], &y = *a[1];
  // The common cases without index arithmetic: equal shapes, or a scalar on either side.
  bool x_full = x.numel() == out.numel(), y_full = y.numel() == out.numel();
  if ((x_full || x.numel() == 1) && (y_full || y.numel() == 1)) {
    for (size_t i = 0; i < out.data.size(); ++i) out.data[i] = f(x.data[x_full ? i : 0], y.data[y_full ? i : 0]);
    return out;
  }
  size_t i = 0;
  for_each_index(n.type.shape, [&](const std::vector<int64_t>& index) {
    out.data[i++] = f(broadcast_at(x, index), broadcast_at(y, index));
  });
  return out;
}

// Folds the elements of each reduced group with `combine`, starting from `init`;
// `finish` turns the fold and the group's size into the result.
Tensor reduce(const Node& n, const Tensor& x, double init, double (*combine)(double, double),
              double (*finish)(double, int64_t)) {
  const std::vector<int64_t>& axes = n.attrs.get("axes").as_ints();
  Shape kept = x.type.shape;  // the result's shape with keepdims
  int64_t group = 1;
  for (int64_t axis : axes) {
    group *= kept[static_cast<size_t>(axis)];
    kept[static_cast<size_t>(axis)] = 1;
  }
  Tensor folded = Tensor::zeros(TensorType{x.type.dtype, kept});
  std::fill(folded.data.begin(), folded.data.end(), init);
  size_t i = 0;
  for_each_index(x.type.shape, [&](std::vector<int64_t> index) {
    double v = x.data[i++];
    for (int64_t axis : axes) index[static_cast<size_t>(axis)] = 0;
    double& acc = folded.at(index);
    acc = combine(acc, v);
  });
  Tensor out = Tensor::zeros(n.type);  // same elements as `folded`, maybe without the 1s
  for (size_t j = 0; j < out.data.size(); ++j) out.data[j] = finish(folded.data[j], group);
  return out;
}

// Views a tensor as [outer, len, inner] around `axis`, for row-wise ops.
struct Rows {
  int64_t outer = 1, len = 1, inner = 1;
  Rows(const Shape& s, int64_t axis) {
    for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
      if (d < axis) outer *= s[static_cast<size_t>(d)];
      else if (d == axis) len = s[static_cast<size_t>(d)];
      else inner *= s[static_cast<size_t>(d)];
    }
  }
  size_t at(int64_t o, int64_t k, int64_t i) const { return static_cast<size_t>((o * len + k) * inner + i); }
};

// log_softmax along `axis`, stable: x - max - log(sum(exp(x - max))).
Tensor log_softmax_of(const Tensor& x, int64_t axis) {
  Rows r(x.type.shape, axis);
  Tensor out = Tensor::zeros(x.type);
  for (int64_t o = 0; o < r.outer; ++o)
    for (int64_t i = 0; i < r.inner; ++i) {
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t k = 0; k < r.len; ++k) m = std::max(m, x.data[r.at(o, k, i)]);
      double s = 0;
      for (int64_t k = 0; k < r.len; ++k) s += std::exp(x.data[r.at(o, k, i)] - m);
      for (int64_t k = 0; k < r.len; ++k) out.data[r.at(o, k, i)] = x.data[r.at(o, k, i)] - m - std::log(s);
    }
  return out;
}

Tensor scalar_of(const Node& n, double v) { return Tensor::of(n.type, {v}); }

}  // namespace

// ---- elementwise, one operand
Tensor eval_neg(const Node& n, const Args& a) { return unary(n, a, [](double x) { return -x; }); }
Tensor eval_exp(const Node& n, const Args& a) { return unary(n, a, [](double x) { return std::exp(x); }); }
Tensor eval_log(const Node& n, const Args& a) { return unary(n, a, [](double x) { return std::log(x); }); }
Tensor eval_log1p(const Node& n, const Args& a) { return unary(n, a, [](double x) { return std::log1p(x); }); }
Tensor eval_sqrt(const Node& n, const Args& a) { return unary(n, a, [](double x) { return std::sqrt(x); }); }
Tensor eval_rsqrt(const Node& n, const Args& a) { return unary(n, a, [](double x) { return 1.0 / std::sqrt(x); }); }
Tensor eval_abs(const Node& n, const Args& a) { return unary(n, a, [](double x) { return std::fabs(x); }); }
Tensor eval_tanh(const Node& n, const Args& a) { return unary(n, a, [](double x) { return std::tanh(x); }); }
Tensor eval_sigmoid(const Node& n, const Args& a) {
  return unary(n, a, [](double x) { return 1.0 / (1.0 + std::exp(-x)); });
}
Tensor eval_erf(const Node& n, const Args& a) { return unary(n, a, [](double x) { return std::erf(x); }); }
Tensor eval_leaky_relu(const Node& n, const Args& a) {
  double slope = n.attrs.get("negative_slope").as_number();
  Tensor out = Tensor::zeros(n.type);
  for (size_t i = 0; i < out.data.size(); ++i) {
    double x = a[0]->data[i];
    out.data[i] = x > 0 ? x : x * slope;
  }
  return out;
}
Tensor eval_relu(const Node& n, const Args& a) { return unary(n, a, [](double x) { return max_nan(x, 0.0); }); }

// ---- elementwise, two operands with broadcasting
Tensor eval_add(const Node& n, const Args& a) { return binary(n, a, [](double x, double y) { return x + y; }); }
Tensor eval_sub(const Node& n, const Args& a) { return binary(n, a, [](double x, double y) { return x - y; }); }
Tensor eval_mul(const Node& n, const Args& a) { return binary(n, a, [](double x, double y) { return x * y; }); }
Tensor eval_div(const Node& n, const Args& a) { return binary(n, a, [](double x, double y) { return x / y; }); }
Tensor eval_maximum(const Node& n, const Args& a) {
  return binary(n, a, [](double x, double y) { return max_nan(x, y); });
}
Tensor eval_minimum(const Node& n, const Args& a) {
  return binary(n, a, [](double x, double y) { return min_nan(x, y); });
}
Tensor eval_pow(const Node& n, const Args& a) { return binary(n, a, [](double x, double y) { return std::pow(x, y); }); }

// ---- linear algebra and layout
Tensor eval_matmul(const Node& n, const Args& a) {
  const Tensor &x = *a[0], &w = *a[1];
  bool batched = x.type.rank() == 3;
  int64_t batches = batched ? x.type.shape[0] : 1;
  int64_t m = x.type.shape[batched ? 1 : 0], k = x.type.shape[batched ? 2 : 1], cols = w.type.shape[batched ? 2 : 1];
  Tensor out = Tensor::zeros(n.type);
  for (int64_t b = 0; b < batches; ++b)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p)
          acc += x.data[static_cast<size_t>((b * m + i) * k + p)] * w.data[static_cast<size_t>((b * k + p) * cols + j)];
        out.data[static_cast<size_t>((b * m + i) * cols + j)] = acc;
      }
  return out;
}

Tensor eval_transpose(const Node& n, const Args& a) {
  const std::vector<int64_t>& perm = n.attrs.get("perm").as_ints();
  Tensor out = Tensor::zeros(n.type);
  size_t i = 0;
  std::vector<int64_t> src(perm.size());
  for_each_index(n.type.shape, [&](const std::vector<int64_t>& index) {
    for (size_t d = 0; d < perm.size(); ++d) src[static_cast<size_t>(perm[d])] = index[d];
    out.data[i++] = a[0]->at(src);
  });
  return out;
}

Tensor eval_reshape(const Node& n, const Args& a) { return Tensor{n.type, a[0]->data}; }

Tensor eval_broadcast_to(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  size_t i = 0;
  for_each_index(n.type.shape, [&](const std::vector<int64_t>& index) { out.data[i++] = broadcast_at(*a[0], index); });
  return out;
}

// ---- reductions
Tensor eval_sum(const Node& n, const Args& a) {
  return reduce(n, *a[0], 0.0, [](double acc, double v) { return acc + v; }, [](double acc, int64_t) { return acc; });
}
Tensor eval_mean(const Node& n, const Args& a) {
  return reduce(n, *a[0], 0.0, [](double acc, double v) { return acc + v; },
                [](double acc, int64_t count) { return acc / static_cast<double>(count); });
}
Tensor eval_max(const Node& n, const Args& a) {
  return reduce(n, *a[0], -std::numeric_limits<double>::infinity(),
                [](double acc, double v) { return max_nan(acc, v); }, [](double acc, int64_t) { return acc; });
}

// ---- normalizations
Tensor eval_log_softmax(const Node& n, const Args& a) { return log_softmax_of(*a[0], n.attrs.get("axis").as_int()); }
Tensor eval_softmax(const Node& n, const Args& a) {
  Tensor out = log_softmax_of(*a[0], n.attrs.get("axis").as_int());
  for (double& v : out.data) v = std::exp(v);
  return out;
}

// ---- losses: the mean over the batch (PyTorch's reduction='mean')
// -log_softmax(logits)[row, label], or -sum(p * log_softmax(logits)) for probabilities.
Tensor eval_softmax_cross_entropy(const Node& n, const Args& a) {
  const Tensor &logits = *a[0], &labels = *a[1];
  Tensor logp = log_softmax_of(logits, 1);
  int64_t rows = logits.type.shape[0], classes = logits.type.shape[1];
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (labels.type.dtype == DType::I32) {
      double label = labels.data[static_cast<size_t>(r)];
      if (label < 0 || label >= static_cast<double>(classes))
        fail(n.loc, "softmax_cross_entropy: label {} at row {} is out of range [0, {})", label, r, classes);
      total -= logp.at({r, static_cast<int64_t>(label)});
    } else {
      for (int64_t c = 0; c < classes; ++c) total -= labels.at({r, c}) * logp.at({r, c});
    }
  }
  return scalar_of(n, total / static_cast<double>(rows));
}

Tensor eval_mse(const Node& n, const Args& a) {
  double total = 0;
  for (size_t i = 0; i < a[0]->data.size(); ++i) {
    double d = a[0]->data[i] - a[1]->data[i];
    total += d * d;
  }
  return scalar_of(n, total / static_cast<double>(a[0]->data.size()));
}

// max(x, 0) - x * t + log(1 + exp(-|x|)): never overflows, as in PyTorch.
Tensor eval_bce_with_logits(const Node& n, const Args& a) {
  double total = 0;
  for (size_t i = 0; i < a[0]->data.size(); ++i) {
    double x = a[0]->data[i], t = a[1]->data[i];
    total += std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::fabs(x)));
  }
  return scalar_of(n, total / static_cast<double>(a[0]->data.size()));
}


}  // namespace gradc::interp

namespace gradc::interp {

// ---- building blocks of gradients
Tensor eval_greater(const Node& n, const Args& a) {
  return binary(n, a, [](double x, double y) { return x > y ? 1.0 : 0.0; });
}

Tensor eval_where(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  size_t i = 0;
  for_each_index(n.type.shape, [&](const std::vector<int64_t>& index) {
    out.data[i++] = broadcast_at(*a[0], index) != 0 ? broadcast_at(*a[1], index) : broadcast_at(*a[2], index);
  });
  return out;
}

Tensor eval_one_hot(const Node& n, const Args& a) {
  int64_t classes = n.attrs.get("classes").as_int();
  Tensor out = Tensor::zeros(n.type);
  for (size_t i = 0; i < a[0]->data.size(); ++i) {
    double id = a[0]->data[i];
    if (id < 0 || id >= static_cast<double>(classes))
      fail(n.loc, "one_hot: class id {} at position {} is out of range [0, {})", id, i, classes);
    out.data[i * static_cast<size_t>(classes) + static_cast<size_t>(id)] = 1.0;
  }
  return out;
}

namespace {

// gather's loops as (outer, id, inner) over a table [outer, rows, inner]: f(table offset, result
// offset, inner) per id, in order; an id outside [0, rows) fails, naming its position.
template <class F>
void for_each_gathered(const Node& n, const Shape& table, const Tensor& ids, F f) {
  size_t axis = static_cast<size_t>(n.attrs.get("axis").as_int());
  int64_t outer = 1, inner = 1, rows = table[axis];
  for (size_t d = 0; d < axis; ++d) outer *= table[d];
  for (size_t d = axis + 1; d < table.size(); ++d) inner *= table[d];
  size_t count = ids.data.size();
  for (size_t j = 0; j < count; ++j) {
    double id = ids.data[j];
    if (id < 0 || id >= static_cast<double>(rows))
      fail(n.loc, "{}: index {} at position {} is out of range [0, {})", op_info(n.op).name, id, j, rows);
  }
  for (int64_t o = 0; o < outer; ++o)
    for (size_t j = 0; j < count; ++j) {
      size_t from = static_cast<size_t>((o * rows + static_cast<int64_t>(ids.data[j])) * inner);
      size_t to = (static_cast<size_t>(o) * count + j) * static_cast<size_t>(inner);
      f(from, to, static_cast<size_t>(inner));
    }
}

}  // namespace

namespace {

// The row-major strides of `shape`: how far apart consecutive indices of each axis lie.
std::vector<int64_t> row_major_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

}  // namespace

// The flat offset in a tensor of `shape` that slice reads for each element of its result.
template <class F>
void for_each_sliced(const Node& n, const Shape& shape, const Shape& sliced, F f) {
  const std::vector<int64_t>& begin = n.attrs.get("begin").as_ints();
  const std::vector<int64_t>& stride = n.attrs.get("stride").as_ints();
  std::vector<int64_t> strides = row_major_strides(shape);
  size_t i = 0;
  for_each_index(sliced, [&](const std::vector<int64_t>& index) {
    int64_t at = 0;
    for (size_t d = 0; d < index.size(); ++d) at += (begin[d] + index[d] * stride[d]) * strides[d];
    f(static_cast<size_t>(at), i++);
  });
}
Tensor eval_slice(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  for_each_sliced(n, a[0]->type.shape, n.type.shape, [&](size_t from, size_t to) { out.data[to] = a[0]->data[from]; });
  return out;
}
Tensor eval_slice_grad(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  for_each_sliced(n, n.type.shape, a[0]->type.shape, [&](size_t to, size_t from) { out.data[to] = a[0]->data[from]; });
  return out;
}
// Each operand's elements at its offset along axis, in operand order.
Tensor eval_concat(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  size_t axis = static_cast<size_t>(n.attrs.get("axis").as_int());
  std::vector<int64_t> strides = row_major_strides(n.type.shape);
  int64_t offset = 0;
  for (const Tensor* t : a) {
    size_t i = 0;
    for_each_index(t->type.shape, [&](const std::vector<int64_t>& index) {
      int64_t at = offset * strides[axis];
      for (size_t d = 0; d < index.size(); ++d) at += index[d] * strides[d];
      out.data[static_cast<size_t>(at)] = t->data[i++];
    });
    offset += t->type.shape[axis];
  }
  return out;
}

// Floats to i32 as LLVM's fptosi.sat: toward zero, clamped to i32's range, NaN to 0; to f32
// rounded to nearest (the interpreter holds every value in a double).
Tensor eval_cast(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  for (size_t i = 0; i < out.data.size(); ++i) {
    double x = a[0]->data[i];
    if (n.type.dtype == DType::I32)
      out.data[i] = std::isnan(x) ? 0.0 : std::trunc(std::clamp(x, -2147483648.0, 2147483647.0));
    else if (n.type.dtype == DType::F32)
      out.data[i] = static_cast<double>(static_cast<float>(x));
    else
      out.data[i] = x;
  }
  return out;
}

Tensor eval_tril(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  int64_t diagonal = n.attrs.get("diagonal").as_int();
  size_t i = 0;
  for_each_index(n.type.shape, [&](const std::vector<int64_t>& index) {
    int64_t row = index[index.size() - 2], col = index.back();
    out.data[i] = col - row <= diagonal ? a[0]->data[i] : 0.0;
    ++i;
  });
  return out;
}

// dropout is the identity but in the train step, where passes/Dropout.cpp has replaced it.
Tensor eval_dropout(const Node&, const Args& a) { return *a[0]; }

namespace {

// A float seed or step as the 32-bit word Philox takes (toward zero, saturating, NaN to 0).
uint32_t word_of(double v) { return std::isnan(v) ? 0u : static_cast<uint32_t>(std::clamp(v, 0.0, 4294967295.0)); }

}  // namespace

// Element i keeps (1/(1 - rate), rounded to the dtype) where the top 24 bits of Philox's first
// word for counter {i, i >> 32, step, 0} and key {seed, stream} are at least rate, else 0.
Tensor eval_dropout_mask(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  double rate = n.attrs.get("rate").as_number();
  double keep = 1.0 / (1.0 - rate);
  if (n.type.dtype == DType::F32) keep = static_cast<float>(keep);
  uint32_t seed = word_of(a[0]->data[0]), step = word_of(a[1]->data[0]);
  auto stream = static_cast<uint32_t>(n.attrs.get("stream").as_int());
  for (size_t i = 0; i < out.data.size(); ++i) {
    uint64_t at = i;
    auto bits = philox4x32_10({static_cast<uint32_t>(at), static_cast<uint32_t>(at >> 32), step, 0}, {seed, stream});
    out.data[i] = unit_interval(bits[0]) >= rate ? keep : 0.0;
  }
  return out;
}

Tensor eval_gather(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  for_each_gathered(n, a[0]->type.shape, *a[1], [&](size_t from, size_t to, size_t inner) {
    for (size_t i = 0; i < inner; ++i) out.data[to + i] = a[0]->data[from + i];
  });
  return out;
}

// Repeated ids add their rows of dy in the ids' order (deterministic, as codegen's).
Tensor eval_gather_grad(const Node& n, const Args& a) {
  Tensor out = Tensor::zeros(n.type);
  for_each_gathered(n, n.type.shape, *a[1], [&](size_t table_at, size_t dy_at, size_t inner) {
    for (size_t i = 0; i < inner; ++i) out.data[table_at + i] += a[0]->data[dy_at + i];
  });
  return out;
}

namespace {

// The loops of conv2d, shared by its two adjoints: calls f(x_offset, w_offset, y_offset)
// for every product x[n, c, iy, ix] * w[o, c, i, j] that contributes to y[n, o, oy, ox].
// Input positions in the zero padding contribute nothing, so they are skipped.
template <typename F>
void conv_loops(const Shape& xs, const Shape& ws, const Shape& ys, const Attrs& attrs, F f) {
  const std::vector<int64_t>& s = attrs.get("stride").as_ints();
  const std::vector<int64_t>& p = attrs.get("padding").as_ints();
  for (int64_t b = 0; b < ys[0]; ++b)
    for (int64_t o = 0; o < ys[1]; ++o)
      for (int64_t c = 0; c < ws[1]; ++c)
        for (int64_t i = 0; i < ws[2]; ++i)
          for (int64_t j = 0; j < ws[3]; ++j) {
            size_t w_off = static_cast<size_t>(((o * ws[1] + c) * ws[2] + i) * ws[3] + j);
            for (int64_t oy = 0; oy < ys[2]; ++oy) {
              int64_t iy = oy * s[0] + i - p[0];
              if (iy < 0 || iy >= xs[2]) continue;
              for (int64_t ox = 0; ox < ys[3]; ++ox) {
                int64_t ix = ox * s[1] + j - p[1];
                if (ix < 0 || ix >= xs[3]) continue;
                f(static_cast<size_t>(((b * xs[1] + c) * xs[2] + iy) * xs[3] + ix), w_off,
                  static_cast<size_t>(((b * ys[1] + o) * ys[2] + oy) * ys[3] + ox));
              }
            }
          }
}

// Calls f(x_offset, y_offset) for every element of every pooling window.
template <typename F>
void pool_loops(const Shape& xs, const Shape& ys, const Attrs& attrs, F f) {
  const std::vector<int64_t>& k = attrs.get("kernel").as_ints();
  const std::vector<int64_t>& s = attrs.get("stride").as_ints();
  for (int64_t b = 0; b < ys[0] * ys[1]; ++b)
    for (int64_t oy = 0; oy < ys[2]; ++oy)
      for (int64_t ox = 0; ox < ys[3]; ++ox) {
        size_t y_off = static_cast<size_t>((b * ys[2] + oy) * ys[3] + ox);
        for (int64_t i = 0; i < k[0]; ++i)
          for (int64_t j = 0; j < k[1]; ++j)
            f(static_cast<size_t>((b * xs[2] + oy * s[0] + i) * xs[3] + ox * s[1] + j), y_off);
      }
}

}  // namespace

// dx[n, c, iy, ix] = sum of dy[n, o, oy, ox] * w[o, c, i, j] over the products conv2d made.
Tensor eval_conv2d_input_grad(const Node& n, const Args& a) {
  const Tensor &dy = *a[0], &w = *a[1];
  Tensor dx = Tensor::zeros(n.type);
  conv_loops(n.type.shape, w.type.shape, dy.type.shape, n.attrs,
             [&](size_t x, size_t wi, size_t y) { dx.data[x] += dy.data[y] * w.data[wi]; });
  return dx;
}

// dw[o, c, i, j] = sum of dy[n, o, oy, ox] * x[n, c, iy, ix].
Tensor eval_conv2d_weight_grad(const Node& n, const Args& a) {
  const Tensor &x = *a[0], &dy = *a[1];
  Tensor dw = Tensor::zeros(n.type);
  conv_loops(x.type.shape, n.type.shape, dy.type.shape, n.attrs,
             [&](size_t xi, size_t w, size_t y) { dw.data[w] += dy.data[y] * x.data[xi]; });
  return dw;
}

// Each window's gradient goes to its first maximum, in row-major order, as in PyTorch
// (or to its first NaN, which maxpool2d propagated).
Tensor eval_maxpool2d_grad(const Node& n, const Args& a) {
  const Tensor &x = *a[0], &dy = *a[1];
  Tensor dx = Tensor::zeros(n.type);
  std::vector<size_t> best(dy.data.size(), 0);
  std::vector<bool> seen(dy.data.size(), false);
  pool_loops(x.type.shape, dy.type.shape, n.attrs, [&](size_t xi, size_t y) {
    double v = x.data[xi], m = x.data[best[y]];
    if (!seen[y] || v > m || (std::isnan(v) && !std::isnan(m))) best[y] = xi, seen[y] = true;
  });
  for (size_t y = 0; y < dy.data.size(); ++y) dx.data[best[y]] += dy.data[y];
  return dx;
}

// ---- images, NCHW: forward ops over the same loops as their adjoints
// Cross-correlation with zero padding, as PyTorch's conv2d.
Tensor eval_conv2d(const Node& n, const Args& a) {
  const Tensor &x = *a[0], &w = *a[1];
  Tensor y = Tensor::zeros(n.type);
  conv_loops(x.type.shape, w.type.shape, n.type.shape, n.attrs,
             [&](size_t xi, size_t wi, size_t yi) { y.data[yi] += x.data[xi] * w.data[wi]; });
  return y;
}

Tensor eval_maxpool2d(const Node& n, const Args& a) {
  Tensor y = Tensor::zeros(n.type);
  std::fill(y.data.begin(), y.data.end(), -std::numeric_limits<double>::infinity());
  pool_loops(a[0]->type.shape, n.type.shape, n.attrs,
             [&](size_t xi, size_t yi) { y.data[yi] = max_nan(y.data[yi], a[0]->data[xi]); });
  return y;
}

Tensor eval_avgpool2d(const Node& n, const Args& a) {
  const std::vector<int64_t>& k = n.attrs.get("kernel").as_ints();
  double share = 1.0 / static_cast<double>(k[0] * k[1]);
  Tensor y = Tensor::zeros(n.type);
  pool_loops(a[0]->type.shape, n.type.shape, n.attrs, [&](size_t xi, size_t yi) { y.data[yi] += a[0]->data[xi] * share; });
  return y;
}

Tensor eval_avgpool2d_grad(const Node& n, const Args& a) {
  const Tensor& dy = *a[0];
  const std::vector<int64_t>& k = n.attrs.get("kernel").as_ints();
  double share = 1.0 / static_cast<double>(k[0] * k[1]);
  Tensor dx = Tensor::zeros(n.type);
  pool_loops(n.type.shape, dy.type.shape, n.attrs, [&](size_t xi, size_t y) { dx.data[xi] += dy.data[y] * share; });
  return dx;
}

}  // namespace gradc::interp
