// The GEMMs of a step, and the FLOPs that `gradc bench` divides by the time of a step.
//
// 1. Take the Kernel program of the train step (of predict when the spec minimizes nothing):
//    the training graph after autodiff, the optimizer and simplify, then fusion. Autodiff only
//    differentiates towards params, so no gradient of the data is counted.
// 2. Each matmul is one GEMM per batch element, its operands read as the kernel reads them
//    (a transpose that fusion folded into the operand's layout is a transposed operand).
// 3. Each conv2d, conv2d_input_grad and conv2d_weight_grad is the GEMM of its im2col form, one per
//    image (as Caffe and PyTorch's slow path lower it); all three do N*O*OH*OW*C*KH*KW
//    multiply-adds.
// 4. A GEMM of M x N x K does 2*M*N*K FLOPs; everything else (bias, activations, softmax, pooling,
//    the optimizer) is not counted: its FLOPs are few and would flatter the rate.
#include <algorithm>

#include "gradc/gradc.h"

namespace gradc {

namespace {

bool is_op(const Graph& g, ValueId id, OpKind op) { return g[id].kind == NodeKind::Op && g[id].op == op; }

// A transpose of the last two dims, which a GEMM reads as a transposed operand.
bool swaps_last_two(const Graph& g, ValueId id) {
  if (!is_op(g, id, OpKind::Transpose)) return false;
  const std::vector<int64_t>& perm = g[id].attrs.get("perm").as_ints();
  return perm == std::vector<int64_t>{1, 0} || perm == std::vector<int64_t>{0, 2, 1};
}

std::string label(const Graph& g, ValueId id) {
  const Node& n = g[id];
  return n.name.empty() ? fmt::format("{} %{}", op_info(n.op).name, id) : fmt::format("{} {}", op_info(n.op).name, n.name);
}

StepGemm matmul_gemm(const Graph& g, ValueId id, const Kernel* k) {
  const Node& n = g[id];
  const Shape &a = g[n.args[0]].type.shape, &c = n.type.shape;
  StepGemm r;
  r.what = label(g, id);
  r.m = c[c.size() - 2];
  r.n = c[c.size() - 1];
  r.k = a[a.size() - 1];
  for (size_t i = 0; i + 2 < c.size(); ++i) r.batch *= c[i];
  if (k) {  // as the fused kernel reads its operands
    r.a_transposed = k->a_transposed;
    r.b_transposed = k->b_transposed;
  } else {
    r.a_transposed = swaps_last_two(g, n.args[0]);
    r.b_transposed = swaps_last_two(g, n.args[1]);
  }
  return r;
}

// x [N, C, H, W], w [O, C, KH, KW], y [N, O, OH, OW]; per image:
//   conv2d:             y[O, OH*OW]        = w[O, C*KH*KW]    . cols[C*KH*KW, OH*OW]
//   conv2d_input_grad:  dcols[C*KH*KW, OH*OW] = w^T[C*KH*KW, O] . dy[O, OH*OW]      (then col2im)
//   conv2d_weight_grad: dw[O, C*KH*KW]     += dy[O, OH*OW]    . cols^T[OH*OW, C*KH*KW]
StepGemm conv_gemm(const Graph& g, ValueId id) {
  const Node& n = g[id];
  Shape x, w, y;
  if (n.op == OpKind::Conv2d) {
    x = g[n.args[0]].type.shape, w = g[n.args[1]].type.shape, y = n.type.shape;
  } else if (n.op == OpKind::Conv2dInputGrad) {
    y = g[n.args[0]].type.shape, w = g[n.args[1]].type.shape, x = n.type.shape;
  } else {
    x = g[n.args[0]].type.shape, y = g[n.args[1]].type.shape, w = n.type.shape;
  }
  int64_t ckk = w[1] * w[2] * w[3], spatial = y[2] * y[3];
  StepGemm r;
  r.what = label(g, id);
  r.op = n.op;
  r.batch = x[0];
  if (n.op == OpKind::Conv2d) {
    r.m = w[0], r.n = spatial, r.k = ckk;
  } else if (n.op == OpKind::Conv2dInputGrad) {
    r.m = ckk, r.n = spatial, r.k = w[0], r.a_transposed = true;
  } else {
    r.m = w[0], r.n = ckk, r.k = spatial, r.b_transposed = true;
  }
  return r;
}

}  // namespace

std::vector<StepGemm> step_gemms(const Graph& g) {
  KernelProgram p = g.trains() ? train_kernels(g) : predict_kernels(g);
  std::vector<StepGemm> gemms;
  for (const Kernel& k : p.kernels)
    for (ValueId id : k.members) {
      const Node& n = p.graph[id];
      if (n.kind != NodeKind::Op) continue;
      if (n.op == OpKind::MatMul)
        gemms.push_back(matmul_gemm(p.graph, id, k.kind == KernelKind::MatMul && k.members[0] == id ? &k : nullptr));
      else if (n.op == OpKind::Conv2d || n.op == OpKind::Conv2dInputGrad || n.op == OpKind::Conv2dWeightGrad)
        gemms.push_back(conv_gemm(p.graph, id));
    }
  return gemms;
}

double step_gemm_flops(const std::vector<StepGemm>& gemms) {
  double flops = 0;
  for (const StepGemm& s : gemms) flops += s.flops();
  return flops;
}

double step_gemm_flops(const Graph& g) { return step_gemm_flops(step_gemms(g)); }

}  // namespace gradc
