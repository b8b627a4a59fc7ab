// The GEMMs of a step, and the FLOPs that `gradc bench` divides by the time of a step.
//
// 1. Take the Kernel program of the train step (of predict when the spec minimizes nothing):
//    the training graph after autodiff, the optimizer and simplify, then fusion. Autodiff only
//    differentiates towards params, so no gradient of the data is counted.
// 2. Every op with a GEMM shape in the op table (ir/Cost.cpp) is that GEMM: a matmul one per
//    batch element, its operands read as the kernel reads them (a transpose that fusion folded
//    into the operand's layout is a transposed operand); conv2d and its two gradients the GEMM
//    of their im2col form, one per image.
// 3. A GEMM of M x N x K does 2*M*N*K FLOPs; everything else (bias, activations, softmax, pooling,
//    the optimizer) is not counted: its FLOPs are few and would flatter the rate.
#include <algorithm>

#include "driver/Bench.h"
#include "driver/Pipeline.h"
#include "gradc/gradc.h"

namespace gradc {

namespace {

std::string label(const Graph& g, ValueId id) {
  const Node& n = g[id];
  return n.name.empty() ? fmt::format("{} %{}", op_info(n.op).name, id) : fmt::format("{} {}", op_info(n.op).name, n.name);
}

}  // namespace

std::vector<StepGemm> step_gemms(const KernelProgram& p) {
  std::vector<StepGemm> gemms;
  for (const Kernel& k : p.kernels)
    for (ValueId id : k.members) {
      const Node& n = p.graph[id];
      std::vector<TensorType> args;
      for (ValueId a : n.args) args.push_back(p.graph[a].type);
      std::optional<GemmShape> s = op_info(n.op).gemm(n.type, args);  // the op table's GEMM shape
      if (!s) continue;
      StepGemm r{label(p.graph, id), n.op, s->batch, s->m, s->n, s->k, s->a_transposed, s->b_transposed};
      if (k.kind == KernelKind::MatMul && k.members[0] == id) {  // as the fused kernel reads its operands
        r.a_transposed = k.a_transposed;
        r.b_transposed = k.b_transposed;
      }
      gemms.push_back(r);
    }
  return gemms;
}

std::vector<StepGemm> step_gemms(const Graph& g) { return step_gemms(step_program(lower(g))); }

double step_gemm_flops(const std::vector<StepGemm>& gemms) {
  double flops = 0;
  for (const StepGemm& s : gemms) flops += s.flops();
  return flops;
}

double step_gemm_flops(const Graph& g) { return step_gemm_flops(step_gemms(g)); }

}  // namespace gradc
