// Autodiff: every op's gradient rule against central finite differences in f64 (through the
// same gradc::check_gradients that `gradc check` runs) on the cases of its record (OpCases.h),
// and what the backward graph contains.
#include <doctest/doctest.h>

#include "OpCases.h"
#include "TestUtil.h"
#include "gradc/gradc.h"
#include "ir/Printer.h"
#include "passes/Autodiff.h"

using namespace gradc;

namespace {

// Checks every param of `spec` within `tol` (relative).
void check_spec(const std::string& spec, double tol = 1e-6, const GradCheckOptions& options = {}) {
  Graph g = load_spec(spec, "grad.gir");
  std::vector<ParamCheck> results = check_gradients(g, options);
  REQUIRE(!results.empty());
  for (const ParamCheck& r : results) {
    CAPTURE(r.param);
    CHECK(r.probes > 0);
    CHECK(r.max_rel_error < tol);
  }
}

}  // namespace

// Each case of each op's record (OpCases.h): elementwise ops (broadcast gradients reduced back
// to the operand's shape), matmul, layout, reductions, normalizations, the losses in both float
// operands, conv2d and pooling; greater and one_hot pass no gradient to their operands.
TEST_CASE("autodiff: every op with a gradient rule against finite differences, each case of its record") {
  for (const test::OpRecord& r : test::op_records()) {
    if (!r.gradient) continue;
    for (const test::OpCase& c : r.cases) {
      std::string spec = test::spec_of(r, c);
      INFO(r.op, ":\n", spec);
      check_spec(spec, r.tol.gradient);
    }
  }
}

TEST_CASE("autodiff: the adjoint ops have no gradient — differentiating them again is refused") {
  int adjoints = 0;
  for (const test::OpRecord& r : test::op_records()) {
    if (r.gradient) continue;
    ++adjoints;
    for (const test::OpCase& c : r.cases) {
      CAPTURE(c.expr);
      Graph g = load_spec(test::weighted_spec(c), "second.gir");
      CHECK_THROWS_WITH_AS(grad_graph(g), doctest::Contains(fmt::format("{} is itself a gradient", r.op).c_str()),
                           Error);
    }
  }
  CHECK(adjoints > 0);
}

TEST_CASE("autodiff: gradients flow only to params that reach the loss") {
  Graph g = load_spec(R"(
input x : f32[4, 3]
param w : f32[3, 2]
param unused : f32[2]
param side : f32[3, 2]
loss = mean(matmul(x, w))
output other = matmul(x, side)
minimize loss with sgd(lr=0.1)
)", "flow.gir");
  Differentiated d = differentiate(g);
  REQUIRE(d.grads.size() == 1);
  CHECK(d.graph[d.grads[0].param].name == "w");
  CHECK(d.graph[d.grads[0].grad].name == "w.grad");
  CHECK(d.graph[d.grads[0].grad].type == d.graph[d.grads[0].param].type);
  CHECK_FALSE(d.graph.find("x.grad"));
  CHECK_FALSE(d.graph.find("side.grad"));
}

TEST_CASE("autodiff: a value used twice sums its gradients") {
  Graph g = load_spec("param w : f32[3]\nloss = sum(mul(w, w))\nminimize loss with sgd(lr=0.1)\n", "twice.gir");
  Differentiated d = differentiate(g);
  interp::Feeds feeds{{"w", interp::Tensor::of({DType::F32, {3}}, {1, -2, 0.5})}};
  std::vector<interp::Tensor> v = interp::evaluate(d.graph, feeds);
  CHECK(v[static_cast<size_t>(d.grads[0].grad)].data == std::vector<double>{2, -4, 1});  // d/dw w² = 2w
}

TEST_CASE("autodiff: gradc check passes on every sample spec") {
  for (std::string spec : {"samples/specs/seed_mlp.gir", "samples/specs/regression.gir",
                                  "samples/specs/mlp_128.gir"}) {
    CAPTURE(spec);
    test::CommandResult r = test::run_gradc("check " + test::source_path(spec));
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("gradc check: all 4 params within 1e-06") != std::string::npos);
  }
  // The CNN takes seconds per probe in the interpreter: fewer probes, the same check.
  GradCheckOptions few;
  few.coordinates = 2;
  few.directions = 1;
  check_spec(test::read_file(test::source_path("samples/specs/cnn_fmnist.gir")), 1e-6, few);
}

TEST_CASE("autodiff: gradc check reports failures and specs without a loss") {
  std::string path = test::write_temp("noloss.gir", "param w : f32[3]\noutput y = neg(w)\n");
  test::CommandResult r = test::run_gradc("check " + path);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no 'minimize' statement") != std::string::npos);
  // A tolerance no finite difference can meet makes the check fail, with exit code 1.
  test::CommandResult strict = test::run_gradc("check " + test::source_path("samples/specs/regression.gir") + " --tol 0");
  CHECK(strict.exit_code == 1);
  CHECK(strict.out.find("FAIL") != std::string::npos);
}
