// What `gradc bench` and bench/gradc_bench count and report: the GEMMs of a step, their FLOPs,
// the measured FMA peak, and the command's output. No timing is checked (DESIGN.md: performance
// is measured by programs in bench/, never by timed tests).
#include <doctest/doctest.h>

#include <algorithm>

#include <fmt/ranges.h>

#include "TestUtil.h"
#include "driver/Bench.h"
#include "gradc/gradc.h"

using namespace gradc;

namespace {

Graph sample(const std::string& name) { return load_spec_file(test::source_path("samples/specs/" + name)); }

std::string shape(const StepGemm& g) {
  return fmt::format("{}x{}x{}x{} {}{}", g.batch, g.m, g.n, g.k, g.a_transposed ? "T" : "N", g.b_transposed ? "T" : "N");
}

}  // namespace

TEST_CASE("bench: the seed's step does 2*B*(3*MACs - MACs of the first layer) GEMM FLOPs, no gradient of the data") {
  Graph seed = sample("seed_mlp.gir");
  CHECK(step_gemm_flops(seed) == 2.0 * 64 * (3 * (7840 + 100) - 7840));
  std::vector<StepGemm> gemms = step_gemms(seed);
  std::vector<std::string> shapes;
  for (const StepGemm& g : gemms) shapes.push_back(shape(g));
  CAPTURE(fmt::format("{}", fmt::join(shapes, ", ")));
  REQUIRE(gemms.size() == 5);  // two forward, two weight gradients, one gradient of h (none of x)
  auto count = [&](const std::string& s) { return std::count(shapes.begin(), shapes.end(), s); };
  CHECK(count("1x64x10x784 NN") == 1);   // x . w1
  CHECK(count("1x784x10x64 TN") == 1);   // w1.grad = x^T . dh, the transpose folded into the GEMM
  CHECK(count("1x10x10x64 TN") == 1);    // w2.grad = h^T . dlogits
  CHECK(count("1x64x10x10 NT") == 1);    // dh = dlogits . w2^T
}

TEST_CASE("bench: mlp_1024 and the CNN count every layer's GEMMs, convs as their im2col GEMMs") {
  double macs = 784.0 * 1024 + 1024.0 * 1024 + 1024.0 * 10;
  CHECK(step_gemm_flops(sample("mlp_1024.gir")) == 2.0 * 256 * (3 * macs - 784.0 * 1024));

  // conv1 1->16 on 28x28, conv2 16->32 on 14x14 (3x3, padding 1), dense 1568->128->10; batch 64.
  double conv1 = 64.0 * 16 * 28 * 28 * 1 * 9, conv2 = 64.0 * 32 * 14 * 14 * 16 * 9;
  double dense = 64.0 * 1568 * 128 + 64.0 * 128 * 10;
  std::vector<StepGemm> gemms = step_gemms(sample("cnn_fmnist.gir"));
  CHECK(step_gemm_flops(gemms) == 2 * (2 * conv1 + 3 * conv2 + 3 * dense));
  int convs = 0;
  for (const StepGemm& g : gemms) convs += g.op != OpKind::MatMul;
  CHECK(convs == 5);  // no conv2d_input_grad into the images
}

TEST_CASE("bench: a spec that only predicts counts predict's GEMMs") {
  Graph g = load_spec("input x : f32[8, 4]\nparam w : f32[4, 3]\noutput y = matmul(x, w)\n", "predict.gir");
  CHECK(step_gemm_flops(g) == 2.0 * 8 * 4 * 3);
}

TEST_CASE("bench: compile, bench and dump read the same Model, so arena, memory, FLOPs and kernels agree") {
  for (const char* name : {"seed_mlp.gir", "cnn_fmnist.gir"}) {
    CAPTURE(name);
    Graph spec = sample(name);
    Model model = compile(spec);
    REQUIRE(model.lowered);
    BenchReport r = bench(model, BenchOptions{.steps = 1, .runs = 1, .threads = 1, .peak = false});
    CHECK(r.arena_bytes == model.arena_bytes);
    CHECK(r.memory.working() == model.arena_bytes);
    CHECK(r.gemm_flops == step_gemm_flops(spec));  // the same figure lowered afresh
    std::string plan = model.dump(Stage::Plan);
    CHECK(plan == dump(spec, Stage::Plan));
    CHECK(plan.find(describe(r.memory)) != std::string::npos);
    CHECK(model.dump(Stage::Fused) == dump(spec, Stage::Fused));
    CHECK(model.dump(Stage::Simplified) == dump(spec, Stage::Simplified));
  }
}

TEST_CASE("bench: the measured FMA peak is a positive rate") {
  FmaPeak peak = measure_fma_peak(1);
  CHECK(peak.gflops > 0.1);
  CHECK(peak.threads == 1);
  CHECK(std::string(peak.isa).size() > 0);
}

TEST_CASE("bench: gradc bench prints GFLOP/s and the percentage of the peak before us/step") {
  test::CommandResult r = test::run_gradc("bench " + test::source_path("samples/specs/seed_mlp.gir") + " --steps 5 --threads 1");
  REQUIRE(r.exit_code == 0);
  for (const char* line : {"\ncompile: ", "\nthreads: 1\n", "\nGEMM FLOPs/step: 2.045 M", "\nGFLOP/s: ", "% of peak\n"})
    CHECK(r.out.find(line) != std::string::npos);
  std::string last = r.out.substr(r.out.rfind("\n", r.out.size() - 2) + 1);
  CHECK(last.rfind("us/step: ", 0) == 0);
  CHECK(test::run_gradc("bench " + test::source_path("samples/specs/seed_mlp.gir") + " --threads -1").exit_code == 1);
}
