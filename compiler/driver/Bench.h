// What `gradc bench` and bench/ measure: a step's GEMMs, the machine's FMA peak, and the timed
// step. Internal: the bench programs, the command and the tests use it; users do not.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "driver/Memory.h"
#include "ir/Graph.h"

namespace gradc {

// One GEMM of a step: C[M, N] = op(A)[M, K] . op(B)[K, N], `batch` times. A transposed operand
// is stored as [K, M] (A) or [N, K] (B), as the step's kernel reads it. A conv (op Conv2d,
// Conv2dInputGrad, Conv2dWeightGrad) is its im2col GEMM, one per image; the weights are one
// matrix for all images: A of conv2d and conv2d_input_grad, C of conv2d_weight_grad (summed).
struct StepGemm {
  std::string what;  // the op and its node: "matmul %12", "conv2d_weight_grad c2.grad"
  OpKind op = OpKind::MatMul;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool a_transposed = false, b_transposed = false;
  double flops() const { return 2.0 * static_cast<double>(batch * m * n * k); }
};

// The GEMMs of one train step (predict's when the spec minimizes nothing): every matmul and conv
// of the training graph after autodiff and simplify, which differentiate towards params only
// (no gradient of the data). For the seed's 784-10-10 MLP at batch B that is
// 2*B*(3*(7840 + 100) - 7840) FLOPs.
std::vector<StepGemm> step_gemms(const KernelProgram& step);  // step_program(model.lowered)
std::vector<StepGemm> step_gemms(const Graph& g);  // lowers g first
double step_gemm_flops(const std::vector<StepGemm>& gemms);
double step_gemm_flops(const Graph& g);  // the FLOPs `gradc bench` counts per step

// The f32 FMA peak of this machine, measured (about 0.2 s): independent FMA chains in the widest
// vector registers the CPU has (AVX-512, else AVX2), on `threads` threads at once.
struct FmaPeak {
  double gflops = 0;
  int threads = 1;
  const char* isa = "";  // "AVX-512", "AVX2+FMA" or "scalar"
};
FmaPeak measure_fma_peak(int threads = 1);
double measure_fma_peak_gflops(int threads = 1);

// Times the compiled step (predict when the spec minimizes nothing) on random inputs: `runs`
// runs of `steps` calls each, after a warm-up; the rate counts the GEMM FLOPs of step_gemms().
struct BenchOptions {
  int64_t steps = 200;  // calls per timed run
  int runs = 5;
  int threads = 0;      // the Session's threads (0: every core); the peak is measured on as many
  bool peak = true;     // measure the FMA peak (for percent_of_peak)
};
struct BenchReport {
  double compile_ms = 0;
  int64_t arena_bytes = 0;  // the Session's arena: memory.working()
  MemoryUse memory;         // the breakdown `gradc dump --stage plan` and train's memory check report
  std::vector<double> us_per_step;  // one per run
  double median_us = 0;
  int threads = 1;           // the threads a step used
  double gemm_flops = 0;     // per step (step_gemm_flops)
  double gflops = 0;         // gemm_flops at the median time
  FmaPeak peak;              // measured in the same run (zero when not asked for)
  double percent_of_peak = 0;
};
class Model;
BenchReport bench(const Model& model, const BenchOptions& options);  // its FLOPs and memory from model.lowered
BenchReport bench(const Graph& spec, const BenchOptions& options);   // compiles spec, then the above
inline BenchReport bench(const Graph& spec, int64_t steps, int runs = 5) {
  return bench(spec, BenchOptions{.steps = steps, .runs = runs});
}

}  // namespace gradc
