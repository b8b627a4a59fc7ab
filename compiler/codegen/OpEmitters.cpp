// Code emitters, one per op of the table: each writes the op's loop nest in LLVM IR, computing
// what its interpreter kernel (interp/Kernels.cpp) computes, in the same order of accumulation,
// but in the node's own dtype. Plain loops, except conv2d, pooling and their gradients: vector
// tiles (codegen/ConvEmitters.cpp) that sum in an order of their own.
#include <cmath>
#include <limits>

#include <llvm/IR/Intrinsics.h>

#include "codegen/ConvEmitters.h"
#include "codegen/Gemm.h"
#include "codegen/KernelBuilder.h"

namespace gradc::codegen {

namespace {

using Args = std::vector<Buffer>;
using Values = std::vector<llvm::Value*>;
using Scalar = std::function<llvm::Value*(KernelBuilder&, const Values&)>;

void require_float(const Node& n, const Args& args, const Buffer& out) {
  bool is_int = out.type.dtype == DType::I32;
  for (const Buffer& a : args) is_int = is_int || a.type.dtype == DType::I32;
  if (is_int)
    fail(n.loc, "codegen: {} on i32 tensors is not supported by the JIT yet (the interpreter runs it)",
         op_info(n.op).name);
}

// Views a shape as [outer, len, inner] around `axis`, for row-wise ops.
struct Rows {
  int64_t outer = 1, len = 1, inner = 1;
  Rows(const Shape& s, int64_t axis) {
    if (axis < 0) axis += static_cast<int64_t>(s.size());
    for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
      int64_t dim = s[static_cast<size_t>(d)];
      (d < axis ? outer : d == axis ? len : inner) *= dim;
    }
  }
};

// For one row of `x` (elements at base + kk * step): its max m and log(sum(exp(x - m))), so that
// log_softmax = x - m - log_sum. The max skips NaN as std::max does in the interpreter.
// The same for a contiguous f32 row, a vector of lanes at a time (the last masked): the max is
// the same number; the sum of exps is added up in another order (lanes, then a fixed tree).
std::pair<llvm::Value*, llvm::Value*> row_stats_vector(KernelBuilder& k, const Buffer& x, int64_t len, llvm::Value* base) {
  auto& b = k.b;
  int64_t lanes = host_vector_lanes();
  k.set_lanes(lanes);
  auto* vt = llvm::FixedVectorType::get(b.getFloatTy(), static_cast<unsigned>(lanes));
  std::vector<int64_t> along(static_cast<size_t>(lanes));
  for (int64_t l = 0; l < lanes; ++l) along[static_cast<size_t>(l)] = l;
  auto chunk = [&](int64_t at, llvm::Value* fill) {  // lanes past the row read as `fill`
    int64_t valid = std::min(lanes, len - at);
    llvm::Value* v = k.load_lanes(x, b.CreateAdd(base, k.index(at)), along, valid);
    return valid == lanes ? v : b.CreateSelect(k.lane_mask(valid), v, fill);
  };
  llvm::Value* minus_inf = llvm::ConstantFP::getInfinity(vt, true);
  llvm::Value* m = minus_inf;
  for (int64_t at = 0; at < len; at += lanes) {
    llvm::Value* v = chunk(at, minus_inf);
    m = b.CreateSelect(b.CreateFCmpOLT(m, v), v, m);
  }
  llvm::Value* max = b.CreateExtractElement(m, uint64_t{0});
  for (int64_t l = 1; l < lanes; ++l) {
    llvm::Value* v = b.CreateExtractElement(m, static_cast<uint64_t>(l));
    max = b.CreateSelect(b.CreateFCmpOLT(max, v), v, max);
  }
  llvm::Value* sum = llvm::Constant::getNullValue(vt);
  for (int64_t at = 0; at < len; at += lanes)
    sum = b.CreateFAdd(sum, k.exp(b.CreateFSub(chunk(at, minus_inf), k.splat(max))));  // exp(-inf) = 0
  k.set_lanes(0);
  llvm::FastMathFlags tree;
  tree.setAllowReassoc();
  auto* total = llvm::cast<llvm::Instruction>(b.CreateFAddReduce(llvm::ConstantFP::get(b.getFloatTy(), -0.0), sum));
  total->setFastMathFlags(tree);
  return {max, k.unary(llvm::Intrinsic::log, total)};
}

std::pair<llvm::Value*, llvm::Value*> row_stats(KernelBuilder& k, const Buffer& x, int64_t len, llvm::Value* base,
                                                int64_t step) {
  DType dt = x.type.dtype;
  if (dt == DType::F32 && step == 1 && len >= 2 && len <= 64 && !x.constant && host_vector_lanes() > 1)
    return row_stats_vector(k, x, len, base);
  auto at = [&](llvm::Value* kk) { return k.b.CreateAdd(base, k.b.CreateMul(kk, k.index(step))); };
  llvm::Value* m = k.local(k.real(dt, -std::numeric_limits<double>::infinity()));
  k.loop(len, [&](llvm::Value* kk) {
    llvm::Value *cur = k.get(m), *v = k.load(x, at(kk));
    k.set(m, k.b.CreateSelect(k.b.CreateFCmpOLT(cur, v), v, cur));
  });
  llvm::Value* max = k.get(m);
  llvm::Value* s = k.local(k.real(dt, 0));
  k.loop(len, [&](llvm::Value* kk) {
    k.set(s, k.b.CreateFAdd(k.get(s), k.exp(k.b.CreateFSub(k.load(x, at(kk)), max))));
  });
  return {max, k.unary(llvm::Intrinsic::log, k.get(s))};
}

void softmax_like(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out, bool exp) {
  require_float(n, a, out);
  Rows r(a[0].type.shape, n.attrs.get("axis").as_int());
  k.loop(r.outer, [&](llvm::Value* o) {
    k.loop(r.inner, [&](llvm::Value* i) {
      llvm::Value* base = k.b.CreateAdd(k.b.CreateMul(o, k.index(r.len * r.inner)), i);
      auto [max, log_sum] = row_stats(k, a[0], r.len, base, r.inner);
      k.loop(r.len, [&](llvm::Value* kk) {
        llvm::Value* at = k.b.CreateAdd(base, k.b.CreateMul(kk, k.index(r.inner)));
        llvm::Value* v = k.b.CreateFSub(k.b.CreateFSub(k.load(a[0], at), max), log_sum);
        k.store(out, at, exp ? k.exp(v) : v);
      });
    });
  });
}

// A class id read from i32 memory, checked against [0, classes): out-of-range ids make the
// function fail with `what` and read class 0 instead, so that no access leaves the buffers.
llvm::Value* class_id(KernelBuilder& k, const Node& n, llvm::Value* id, int64_t classes, const char* what) {
  llvm::Value* bad = k.b.CreateOr(k.b.CreateICmpSLT(id, k.b.getInt32(0)),
                                  k.b.CreateICmpSGE(id, k.b.getInt32(static_cast<uint32_t>(classes))));
  std::string where = to_string(n.loc);
  k.fail_if(bad, fmt::format("{}{} {} out of range [0, {})", where.empty() ? "" : where + ": ", op_info(n.op).name,
                             what, classes));
  return k.b.CreateSExt(k.b.CreateSelect(bad, k.b.getInt32(0), id), k.b.getInt64Ty());
}

}  // namespace

// ---- elementwise: one element from the operands' elements
#define SCALAR(name, expr)                                                                              \
  static llvm::Value* scalar_##name(KernelBuilder& k, const Node& n, const Values& v, const Values& index) { \
    llvm::Value* x = v[0];                                                                               \
    llvm::Value* y = v.size() > 1 ? v[1] : nullptr;                                                      \
    llvm::Value* z = v.size() > 2 ? v[2] : nullptr;                                                      \
    DType dt = n.type.dtype;                                                                             \
    (void)k, (void)x, (void)y, (void)z, (void)dt, (void)index;                                                   \
    return expr;                                                                                         \
  }                                                                                                      \
  const OpCodegen emit_##name{.scalar = scalar_##name};
SCALAR(neg, k.b.CreateFNeg(x))
SCALAR(exp, k.exp(x))
SCALAR(log, k.unary(llvm::Intrinsic::log, x))
SCALAR(log1p, k.call_libm("log1pf", "log1p", x))
SCALAR(sqrt, k.unary(llvm::Intrinsic::sqrt, x))
SCALAR(rsqrt, k.b.CreateFDiv(k.real(dt, 1), k.unary(llvm::Intrinsic::sqrt, x)))
SCALAR(abs, k.unary(llvm::Intrinsic::fabs, x))
SCALAR(tanh, k.tanh(x))
SCALAR(sigmoid, k.b.CreateFDiv(k.real(dt, 1), k.b.CreateFAdd(k.real(dt, 1), k.exp(k.b.CreateFNeg(x)))))
SCALAR(relu, k.max_nan(x, k.real(dt, 0)))
SCALAR(erf, k.erf(x))
SCALAR(leaky_relu, k.b.CreateSelect(k.b.CreateFCmpOGT(x, k.real(dt, 0)), x,
                                    k.b.CreateFMul(x, k.real(dt, n.attrs.get("negative_slope").as_number()))))
SCALAR(broadcast_to, x)
SCALAR(dropout, x)  // predict's: the train path has lowered it to dropout_mask
SCALAR(add, k.b.CreateFAdd(x, y))
SCALAR(sub, k.b.CreateFSub(x, y))
SCALAR(mul, k.b.CreateFMul(x, y))
SCALAR(div, k.b.CreateFDiv(x, y))
SCALAR(maximum, k.max_nan(x, y))
SCALAR(minimum, k.min_nan(x, y))
SCALAR(pow, k.b.CreateBinaryIntrinsic(llvm::Intrinsic::pow, x, y))
SCALAR(where, k.b.CreateSelect(k.b.CreateFCmpUNE(x, llvm::Constant::getNullValue(x->getType())), y, z))
SCALAR(greater, k.b.CreateSelect(k.b.CreateFCmpOGT(x, y), k.real(dt, 1), k.real(dt, 0)))
#undef SCALAR

// one_hot: 1 where the last index of the domain is the id (read at the leading indices).
static llvm::Value* scalar_one_hot(KernelBuilder& k, const Node& n, const Values& v, const Values& index) {
  int64_t classes = n.attrs.get("classes").as_int();
  llvm::Value* id = class_id(k, n, v[0], classes, "class id");
  DType dt = n.type.dtype;
  llvm::Value* hit = k.b.CreateICmpEQ(k.splat(id), index.back());  // (lanes: a vector of last indices)
  return dt == DType::I32 ? k.b.CreateZExt(hit, k.b.getInt32Ty()) : k.b.CreateSelect(hit, k.real(dt, 1), k.real(dt, 0));
}
const OpCodegen emit_one_hot{.scalar = scalar_one_hot};

// ---- linear algebra: fusion makes every matmul a MatMul kernel (codegen/ModuleEmitter.cpp)
const OpCodegen emit_matmul{};

// ---- layout: reshape is a view of its operand; a transpose not folded into a matmul copies
static void loops_transpose(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  const std::vector<int64_t>& perm = n.attrs.get("perm").as_ints();
  std::vector<int64_t> in = strides_of(a[0].type.shape), src(perm.size());
  for (size_t d = 0; d < perm.size(); ++d) src[d] = in[static_cast<size_t>(perm[d])];
  std::vector<int64_t> dst = strides_of(out.type.shape);
  k.loops(out.type.shape, [&](const Values& idx) { k.store(out, k.offset(idx, dst), k.load(a[0], k.offset(idx, src))); });
}
const OpCodegen emit_transpose{.loops = loops_transpose};
const OpCodegen emit_reshape{};

// ---- indexing: gather's loops over (outer, id, inner) of a table [outer, rows, inner]; body(from,
// to) gets the flat offsets of a table element and of the gathered one. Ids are checked.
static void gathered_loops(KernelBuilder& k, const Node& n, const Shape& table, const Buffer& ids,
                           const std::function<void(llvm::Value*, llvm::Value*)>& body) {
  size_t axis = static_cast<size_t>(n.attrs.get("axis").as_int());
  int64_t outer = 1, inner = 1, rows = table[axis], count = ids.type.numel();
  for (size_t d = 0; d < axis; ++d) outer *= table[d];
  for (size_t d = axis + 1; d < table.size(); ++d) inner *= table[d];
  k.loop(outer, [&](llvm::Value* o) {
    k.loop(count, [&](llvm::Value* j) {
      llvm::Value* id = class_id(k, n, k.load(ids, j), rows, "index");
      llvm::Value* from = k.b.CreateMul(k.b.CreateAdd(k.b.CreateMul(o, k.index(rows)), id), k.index(inner));
      llvm::Value* to = k.b.CreateMul(k.b.CreateAdd(k.b.CreateMul(o, k.index(count)), j), k.index(inner));
      k.loop(inner, [&](llvm::Value* i) { body(k.b.CreateAdd(from, i), k.b.CreateAdd(to, i)); });
    });
  });
}
static void loops_gather(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  gathered_loops(k, n, a[0].type.shape, a[1], [&](llvm::Value* from, llvm::Value* to) { k.store(out, to, k.load(a[0], from)); });
}
// Zeros, then each row of dy added at its id's row, in the ids' order: the same bits on any
// thread count (the kernel is one task).
static void loops_gather_grad(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  DType dt = out.type.dtype;
  k.loop(out.type.numel(), [&](llvm::Value* i) { k.store(out, i, k.real(dt, 0)); });
  gathered_loops(k, n, out.type.shape, a[1], [&](llvm::Value* table_at, llvm::Value* dy_at) {
    k.store(out, table_at, k.b.CreateFAdd(k.load(out, table_at), k.load(a[0], dy_at)));
  });
}
const OpCodegen emit_gather{.loops = loops_gather};
const OpCodegen emit_gather_grad{.loops = loops_gather_grad};

// ---- slicing and joining: slice reads x at begin + index * stride; slice_grad writes dy there
// into zeros; concat copies each operand to its offset along axis.
static void sliced_loops(KernelBuilder& k, const Node& n, const Shape& shape, const Shape& sliced,
                         const std::function<void(llvm::Value*, llvm::Value*)>& body) {
  const std::vector<int64_t>& begin = n.attrs.get("begin").as_ints();
  const std::vector<int64_t>& stride = n.attrs.get("stride").as_ints();
  std::vector<int64_t> full = strides_of(shape), step(shape.size());
  int64_t base = 0;
  for (size_t d = 0; d < shape.size(); ++d) base += begin[d] * full[d], step[d] = stride[d] * full[d];
  std::vector<int64_t> dense = strides_of(sliced);
  k.loops(sliced, [&](const Values& idx) {
    body(k.b.CreateAdd(k.index(base), k.offset(idx, step)), k.offset(idx, dense));
  });
}
static void loops_slice(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  sliced_loops(k, n, a[0].type.shape, out.type.shape, [&](llvm::Value* x_at, llvm::Value* at) { k.store(out, at, k.load(a[0], x_at)); });
}
static void loops_slice_grad(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  k.loop(out.type.numel(), [&](llvm::Value* i) { k.store(out, i, k.real(out.type.dtype, 0)); });
  sliced_loops(k, n, out.type.shape, a[0].type.shape, [&](llvm::Value* x_at, llvm::Value* at) { k.store(out, x_at, k.load(a[0], at)); });
}
static void loops_concat(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  size_t axis = static_cast<size_t>(n.attrs.get("axis").as_int());
  std::vector<int64_t> to = strides_of(out.type.shape);
  int64_t offset = 0;
  for (const Buffer& x : a) {
    std::vector<int64_t> from = strides_of(x.type.shape);
    llvm::Value* base = k.index(offset * to[axis]);
    k.loops(x.type.shape, [&](const Values& idx) {
      k.store(out, k.b.CreateAdd(base, k.offset(idx, to)), k.load(x, k.offset(idx, from)));
    });
    offset += x.type.shape[axis];
  }
}
const OpCodegen emit_slice{.loops = loops_slice};
const OpCodegen emit_slice_grad{.loops = loops_slice_grad};
const OpCodegen emit_concat{.loops = loops_concat};

// ---- cast: one loop converting each element (floats to i32 saturating, as the interpreter)
static void loops_cast(KernelBuilder& k, const Node&, const Args& a, const Buffer& out) {
  DType from = a[0].type.dtype, to = out.type.dtype;
  llvm::Type* t = to == DType::I32 ? k.b.getInt32Ty() : to == DType::F32 ? k.b.getFloatTy() : k.b.getDoubleTy();
  k.loop(out.type.numel(), [&](llvm::Value* i) {
    llvm::Value* x = k.load(a[0], i);
    llvm::Value* y = x;
    if (from == DType::I32 && to != DType::I32) y = k.b.CreateSIToFP(x, t);
    else if (from != DType::I32 && to == DType::I32) y = k.b.CreateIntrinsic(llvm::Intrinsic::fptosi_sat, {t, x->getType()}, {x});
    else if (from != to) y = from == DType::F32 ? k.b.CreateFPExt(x, t) : k.b.CreateFPTrunc(x, t);
    k.store(out, i, y);
  });
}
const OpCodegen emit_cast{.loops = loops_cast};

// ---- tril: each element kept where its column is at most its row plus diagonal, else 0
static void loops_tril(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  int64_t diagonal = n.attrs.get("diagonal").as_int();
  std::vector<int64_t> strides = strides_of(out.type.shape);
  k.loops(out.type.shape, [&](const Values& idx) {
    llvm::Value* at = k.offset(idx, strides);
    llvm::Value* above = k.b.CreateICmpSGT(k.b.CreateSub(idx.back(), idx[idx.size() - 2]), k.index(diagonal));
    k.store(out, at, k.b.CreateSelect(above, k.real(out.type.dtype, 0), k.load(a[0], at)));
  });
}
const OpCodegen emit_tril{.loops = loops_tril};

// ---- dropout_mask: Philox-4x32-10 per element, the rounds of ir/Philox.h in LLVM IR
static void loops_dropout_mask(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  llvm::IRBuilder<>& b = k.b;
  llvm::Type* i32 = b.getInt32Ty();
  llvm::Type* i64 = b.getInt64Ty();
  auto word = [&](const Buffer& scalar) {  // as word_of: toward zero, saturating, NaN to 0
    llvm::Value* v = k.load(scalar, k.index(0));
    return b.CreateIntrinsic(llvm::Intrinsic::fptoui_sat, {i32, v->getType()}, {v});
  };
  llvm::Value *seed = word(a[0]), *step = word(a[1]);
  double rate = n.attrs.get("rate").as_number();
  DType dt = out.type.dtype;
  llvm::Value* keep = k.real(dt, dt == DType::F32 ? static_cast<float>(1.0 / (1.0 - rate)) : 1.0 / (1.0 - rate));
  auto stream = static_cast<uint32_t>(n.attrs.get("stream").as_int());
  // unit_interval(word) >= rate, in integers: the top 24 bits against rate * 2^24, rounded up.
  auto threshold = static_cast<uint32_t>(std::ceil(rate * 16777216.0));
  k.loop(out.type.numel(), [&](llvm::Value* i) {
    llvm::Value* c[4] = {b.CreateTrunc(i, i32), b.CreateTrunc(b.CreateLShr(i, 32), i32), step, b.getInt32(0)};
    llvm::Value* key[2] = {seed, b.getInt32(stream)};
    for (int round = 0; round < 10; ++round) {
      llvm::Value* p0 = b.CreateMul(b.getInt64(0xD2511F53), b.CreateZExt(c[0], i64));
      llvm::Value* p1 = b.CreateMul(b.getInt64(0xCD9E8D57), b.CreateZExt(c[2], i64));
      auto hi = [&](llvm::Value* p) { return b.CreateTrunc(b.CreateLShr(p, 32), i32); };
      llvm::Value* next[4] = {b.CreateXor(b.CreateXor(hi(p1), c[1]), key[0]), b.CreateTrunc(p1, i32),
                              b.CreateXor(b.CreateXor(hi(p0), c[3]), key[1]), b.CreateTrunc(p0, i32)};
      std::copy(next, next + 4, c);
      key[0] = b.CreateAdd(key[0], b.getInt32(0x9E3779B9));
      key[1] = b.CreateAdd(key[1], b.getInt32(0xBB67AE85));
    }
    llvm::Value* kept = b.CreateICmpUGE(b.CreateLShr(c[0], 8), b.getInt32(threshold));
    k.store(out, i, b.CreateSelect(kept, keep, k.real(dt, 0)));
  });
}
const OpCodegen emit_dropout_mask{.loops = loops_dropout_mask};

// ---- reductions, folded over each group in the interpreter's order
static llvm::Value* add_to(KernelBuilder& k, llvm::Value* acc, llvm::Value* v) { return k.b.CreateFAdd(acc, v); }
static llvm::Value* max_of(KernelBuilder& k, llvm::Value* acc, llvm::Value* v) { return k.max_nan(acc, v); }
const OpCodegen emit_sum{.combine = add_to, .init = 0.0};
const OpCodegen emit_mean{.combine = add_to, .init = 0.0, .mean = true};
const OpCodegen emit_max{.combine = max_of, .init = -std::numeric_limits<double>::infinity()};

// ---- normalizations
static void loops_softmax(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) { softmax_like(k, n, a, out, true); }
static void loops_log_softmax(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  softmax_like(k, n, a, out, false);
}

// ---- losses: the mean over the batch
static void loops_softmax_cross_entropy(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  require_float(n, {a[0]}, out);
  const Buffer &logits = a[0], &labels = a[1];
  int64_t rows = logits.type.shape[0], classes = logits.type.shape[1];
  DType dt = out.type.dtype;
  llvm::Value* total = k.local(k.real(dt, 0));
  auto& b = k.b;
  k.loop(rows, [&](llvm::Value* r) {
    llvm::Value* base = b.CreateMul(r, k.index(classes));
    auto [max, log_sum] = row_stats(k, logits, classes, base, 1);
    auto log_p = [&](llvm::Value* c) {
      return b.CreateFSub(b.CreateFSub(k.load(logits, b.CreateAdd(base, c)), max), log_sum);
    };
    if (labels.type.dtype == DType::I32) {
      k.set(total, b.CreateFSub(k.get(total), log_p(class_id(k, n, k.load(labels, r), classes, "label"))));
    } else {
      k.loop(classes, [&](llvm::Value* c) {
        llvm::Value* p = k.load(labels, b.CreateAdd(base, c));
        k.set(total, b.CreateFSub(k.get(total), b.CreateFMul(p, log_p(c))));
      });
    }
  });
  k.store(out, k.index(0), b.CreateFDiv(k.get(total), k.real(dt, static_cast<double>(rows))));
}

// A pointwise loss: the mean of term(x, t) over all elements.
static void pointwise_loss(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out,
                           const std::function<llvm::Value*(llvm::Value*, llvm::Value*)>& term) {
  require_float(n, a, out);
  DType dt = out.type.dtype;
  llvm::Value* total = k.local(k.real(dt, 0));
  k.loop(a[0].numel(), [&](llvm::Value* i) {
    k.set(total, k.b.CreateFAdd(k.get(total), term(k.load(a[0], i), k.load(a[1], i))));
  });
  k.store(out, k.index(0), k.b.CreateFDiv(k.get(total), k.real(dt, static_cast<double>(a[0].numel()))));
}

static void loops_mse(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  pointwise_loss(k, n, a, out, [&](llvm::Value* x, llvm::Value* t) {
    llvm::Value* d = k.b.CreateFSub(x, t);
    return k.b.CreateFMul(d, d);
  });
}

// max(x, 0) - x * t + log1p(exp(-|x|)), as PyTorch.
static void loops_bce_with_logits(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) {
  DType dt = out.type.dtype;
  pointwise_loss(k, n, a, out, [&](llvm::Value* x, llvm::Value* t) {
    auto& b = k.b;
    llvm::Value* pos = b.CreateSelect(b.CreateFCmpOGT(x, k.real(dt, 0)), x, k.real(dt, 0));
    llvm::Value* soft = k.call_libm("log1pf", "log1p", k.exp(b.CreateFNeg(k.unary(llvm::Intrinsic::fabs, x))));
    return b.CreateFAdd(b.CreateFSub(pos, b.CreateFMul(x, t)), soft);
  });
}

// ---- images, NCHW: vector loop nests of their own (codegen/ConvEmitters.cpp)
#define IMAGE_OP(name)                                                                           \
  static void loops_##name(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out) { \
    require_float(n, a, out);                                                                    \
    vector_##name(k, n, a, out);                                                                 \
  }
IMAGE_OP(conv2d)
IMAGE_OP(maxpool2d)
IMAGE_OP(avgpool2d)
// ---- building blocks of gradients
IMAGE_OP(conv2d_input_grad)
IMAGE_OP(conv2d_weight_grad)
IMAGE_OP(maxpool2d_grad)
IMAGE_OP(avgpool2d_grad)
#undef IMAGE_OP
static void unit_loops_conv2d_weight_grad(KernelBuilder& k, const Node& n, const Args& a, const Buffer& out,
                                          const UnitRange& units) {
  require_float(n, a, out);
  vector_conv2d_weight_grad(k, n, a, out, units);
}

std::pair<llvm::Value*, llvm::Value*> row_max_and_log_sum(KernelBuilder& k, const Buffer& x, int64_t len,
                                                           llvm::Value* base) {
  return row_stats(k, x, len, base, 1);
}

llvm::Value* checked_class_id(KernelBuilder& k, const Node& n, llvm::Value* id, int64_t classes) {
  return class_id(k, n, id, classes, "label");
}

// ---- ops with loop nests of their own
static llvm::Value* row_log_softmax(KernelBuilder& k, llvm::Value* x, llvm::Value* max, llvm::Value* log_sum) {
  return k.b.CreateFSub(k.b.CreateFSub(x, max), log_sum);
}
static llvm::Value* row_softmax(KernelBuilder& k, llvm::Value* x, llvm::Value* max, llvm::Value* log_sum) {
  return k.exp(row_log_softmax(k, x, max, log_sum));
}
const OpCodegen emit_softmax{.loops = loops_softmax, .row = row_softmax};
const OpCodegen emit_log_softmax{.loops = loops_log_softmax, .row = row_log_softmax};
const OpCodegen emit_softmax_cross_entropy{.loops = loops_softmax_cross_entropy, .row_loss = true};
// A composite op reaches codegen only as its expansion (ir/Composites.cpp): nothing to emit.
const OpCodegen emit_expanded{};
const OpCodegen emit_mse{.loops = loops_mse};
const OpCodegen emit_bce_with_logits{.loops = loops_bce_with_logits};
const OpCodegen emit_conv2d{.loops = loops_conv2d, .images = true, .whole_operand = 1};
const OpCodegen emit_maxpool2d{.loops = loops_maxpool2d, .images = true};
const OpCodegen emit_avgpool2d{.loops = loops_avgpool2d, .images = true};
const OpCodegen emit_conv2d_input_grad{.loops = loops_conv2d_input_grad, .images = true, .whole_operand = 1};
const OpCodegen emit_conv2d_weight_grad{
    .loops = loops_conv2d_weight_grad, .units = conv2d_weight_grad_units, .unit_loops = unit_loops_conv2d_weight_grad};
const OpCodegen emit_maxpool2d_grad{.loops = loops_maxpool2d_grad, .images = true};
const OpCodegen emit_avgpool2d_grad{.loops = loops_avgpool2d_grad, .images = true};

}  // namespace gradc::codegen
