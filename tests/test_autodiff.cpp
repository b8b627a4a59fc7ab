// Autodiff: every op's gradient rule against central finite differences in f64 (through the
// same gradc::check_gradients that `gradc check` runs), and what the backward graph contains.
#include <doctest/doctest.h>

#include "TestUtil.h"
#include "gradc/gradc.h"
#include "ir/Printer.h"
#include "passes/Autodiff.h"

using namespace gradc;

namespace {

// Checks every param of `spec` within 1e-6; `body` defines `loss` from params p, q and input r.
void check_spec(const std::string& spec, const GradCheckOptions& options = {}) {
  Graph g = load_spec(spec, "grad.gir");
  std::vector<ParamCheck> results = check_gradients(g, options);
  REQUIRE(!results.empty());
  for (const ParamCheck& r : results) {
    CAPTURE(r.param);
    CHECK(r.probes > 0);
    CHECK(r.max_rel_error < 1e-6);
  }
}

// loss = sum(EXPR * r), so that every element of EXPR gets its own weight.
std::string weighted(const std::string& decls, const std::string& expr, const std::string& shape) {
  return decls + fmt::format("input r : f32{}\nloss = sum(mul({}, r))\nminimize loss with sgd(lr=0.1)\n", shape, expr);
}

const std::string kP = "param p : f32[3, 4]\n";
const std::string kPQ = "param p : f32[3, 4]\nparam q : f32[4]\n";

}  // namespace

TEST_CASE("autodiff: elementwise ops on one operand") {
  for (std::string expr : {"neg(p)", "exp(p)", "abs(p)", "tanh(p)", "sigmoid(p)", "relu(p)", "square(p)",
                           "log(add(square(p), 0.5))", "sqrt(add(square(p), 0.5))", "rsqrt(add(square(p), 0.5))",
                           "log1p(square(p))", "log1p(mul(sigmoid(p), -0.9))"}) {
    CAPTURE(expr);
    check_spec(weighted(kP, expr, "[3, 4]"));
  }
}

TEST_CASE("autodiff: elementwise ops on two operands, broadcast gradients reduced back") {
  for (std::string expr : {"add(p, q)", "sub(p, q)", "mul(p, q)", "div(p, add(square(q), 0.5))", "maximum(p, q)",
                           "minimum(q, p)", "pow(add(square(p), 0.5), q)", "add(p, 2)", "mul(3, p)"}) {
    CAPTURE(expr);
    check_spec(weighted(kPQ, expr, "[3, 4]"));
  }
}

TEST_CASE("autodiff: matmul, plain and batched — transpose, reshape, broadcast_to") {
  check_spec(weighted("param a : f32[3, 4]\nparam b : f32[4, 5]\n", "matmul(a, b)", "[3, 5]"));
  check_spec(weighted("param a : f32[2, 3, 4]\nparam b : f32[2, 4, 5]\n", "matmul(a, b)", "[2, 3, 5]"));
  check_spec(weighted("param a : f32[2, 3, 4]\n", "transpose(a, perm=[2, 0, 1])", "[4, 2, 3]"));
  check_spec(weighted("param a : f32[2, 3, 4]\n", "reshape(a, shape=[4, 6])", "[4, 6]"));
  check_spec(weighted("param a : f32[3, 1]\n", "broadcast_to(a, shape=[2, 3, 4])", "[2, 3, 4]"));
}

TEST_CASE("autodiff: sum, mean and max over axes, with and without keepdims") {
  for (std::string op : {"sum", "mean", "max"}) {  // sum(, mean(, max(
    CAPTURE(op);
    check_spec(weighted("param a : f32[2, 3, 4]\n", fmt::format("{}(a, axes=[0, 2])", op), "[3]"));
    check_spec(weighted("param a : f32[2, 3, 4]\n", fmt::format("{}(a, axes=[1], keepdims=true)", op), "[2, 1, 4]"));
    check_spec(weighted("param a : f32[2, 3]\n", fmt::format("{}(a)", op), "[]"));
  }
}

TEST_CASE("autodiff: softmax and log_softmax along either axis") {
  for (std::string expr : {"softmax(p, axis=0)", "softmax(p, axis=1)", "log_softmax(p, axis=0)", "log_softmax(p)"}) {
    CAPTURE(expr);
    check_spec(weighted(kP, expr, "[3, 4]"));
  }
}

TEST_CASE("autodiff: the losses, in both operands where they are float") {
  check_spec("param z : f32[5, 4]\ninput y : i32[5]\nloss = softmax_cross_entropy(z, y)\nminimize loss with sgd(lr=1)\n");
  check_spec("param z : f32[5, 4]\nparam q : f32[5, 4]\n"
             "loss = softmax_cross_entropy(z, softmax(q, axis=1))\nminimize loss with sgd(lr=1)\n");
  check_spec("param a : f32[3, 4]\nparam b : f32[3, 4]\nloss = mse(a, b)\nminimize loss with sgd(lr=1)\n");
  check_spec("param a : f32[3, 4]\nparam b : f32[3, 4]\nloss = bce_with_logits(a, b)\nminimize loss with sgd(lr=1)\n");
}

TEST_CASE("autodiff: conv2d in input and weights — maxpool2d and avgpool2d") {
  check_spec(weighted("param x : f32[2, 3, 7, 6]\nparam w : f32[4, 3, 3, 2]\n", "conv2d(x, w, stride=2, padding=1)",
                      "[2, 4, 4, 4]"));
  check_spec(weighted("param x : f32[1, 2, 5, 5]\nparam w : f32[3, 2, 3, 3]\n", "conv2d(x, w)", "[1, 3, 3, 3]"));
  check_spec(weighted("param x : f32[2, 3, 7, 6]\n", "maxpool2d(x, kernel=[3, 2], stride=2)", "[2, 3, 3, 3]"));
  check_spec(weighted("param x : f32[2, 3, 7, 6]\n", "avgpool2d(x, kernel=2)", "[2, 3, 3, 3]"));
}

TEST_CASE("autodiff: greater and one_hot pass no gradient — the adjoint ops have none") {
  check_spec(weighted(kP, "mul(greater(p, 0), p)", "[3, 4]"));  // d/dp = [p > 0]
  check_spec(weighted(kP + "input y : i32[3]\n", "mul(one_hot(y, classes=4), p)", "[3, 4]"));
  // Differentiating a gradient again (second order) is refused with a message, for each adjoint op.
  for (std::string expr : {"conv2d_input_grad(dy, w, stride=2, padding=1, shape=[2, 3, 7, 6])",
                           "conv2d_weight_grad(x, dy, stride=2, padding=1, kernel=[3, 2])",
                           "maxpool2d_grad(x, dp, kernel=2, stride=[2, 1])",
                           "avgpool2d_grad(dy, kernel=2, stride=[2, 1], shape=[2, 4, 9, 5])"}) {
    CAPTURE(expr);
    Graph g = load_spec("param w : f32[4, 3, 3, 2]\nparam x : f32[2, 3, 7, 6]\nparam dy : f32[2, 4, 4, 4]\nparam dp : f32[2, 3, 3, 5]\n"
                        "loss = sum(" + expr + ")\nminimize loss with sgd(lr=1)\n", "second.gir");
    std::string op = expr.substr(0, expr.find('('));
    CHECK_THROWS_WITH_AS(grad_graph(g), doctest::Contains((op + " is itself a gradient").c_str()), Error);
  }
}

TEST_CASE("autodiff: every op of the table has a gradient test in this file") {
  std::string source = test::read_file(test::source_path("tests/test_autodiff.cpp"));
  for (const OpInfo& op : all_ops()) {
    CAPTURE(op.name);
    CHECK(source.find(fmt::format("{}(", op.name)) != std::string::npos);
  }
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
  check_spec(test::read_file(test::source_path("samples/specs/cnn_fmnist.gir")), few);
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
