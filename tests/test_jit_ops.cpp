// Every op through the JIT against the interpreter, in f32 and f64, on the cases of its record
// (OpCases.h), and fusion's GEMM epilogues: the train step (the op's forward and, through
// autodiff, its gradient ops) and predict, from random params and inputs.
#include <doctest/doctest.h>

#include <random>

#include "JitUtil.h"
#include "OpCases.h"
#include "TestUtil.h"

namespace gradc {

namespace {

// The GEMM epilogue variants: fusion's cases, not one op's (OpCases.h holds those), in the
// records' weighted form; `shape` is the f32 result's.
std::vector<std::string> fusion_cases() {
  auto weighted = [](const std::string& decls, const std::string& expr, const std::string& shape) {
    return test::weighted_spec({decls, expr, "f32" + shape, ""});
  };
  std::vector<std::string> s;
  // GEMM epilogues on whole vectors (32 columns: 2 vectors of 16, 4 of 8): a bias, a libm call
  // lane by lane, scalars, a column sum (lanes to lanes) and a row sum (lanes one by one).
  const std::string kAB = "param a : f32[5, 7]\nparam b : f32[7, 32]\nparam c : f32[32]\nparam s : f32[]\n";
  s.push_back(weighted(kAB, "tanh(mul(add(matmul(a, b), c), exp(s)))", "[5, 32]"));
  s.push_back(weighted(kAB, "sum(relu(sub(matmul(a, b), c)), axes=[0])", "[32]"));
  s.push_back(weighted(kAB, "sum(mul(matmul(a, b), sigmoid(matmul(a, b))), axes=[1])", "[5]"));
  s.push_back(weighted(kAB, "div(matmul(transpose(b, perm=[1, 0]), transpose(a, perm=[1, 0])), add(square(s), 1))", "[32, 5]"));
  s.push_back(weighted("param a : f32[2, 3, 7]\nparam b : f32[2, 7, 32]\nparam c : f32[2, 3, 1]\n",
                       "maximum(matmul(a, b), c)", "[2, 3, 32]"));
  // Narrow or ragged tiles (10 columns; 40 = 32 + 8): their results in row-major vectors, bias
  // and row operands gathered, stores scattered where a tile's rows are not contiguous.
  s.push_back(weighted("param a : f32[9, 7]\nparam b : f32[7, 10]\nparam c : f32[10]\n", "tanh(add(matmul(a, b), c))", "[9, 10]"));
  s.push_back(weighted("param a : f32[9, 7]\nparam b : f32[7, 40]\nparam c : f32[9, 1]\nparam d : f32[40]\n",
                       "mul(relu(sub(matmul(a, b), c)), d)", "[9, 40]"));
  s.push_back(weighted("param a : f32[2, 5, 3]\nparam b : f32[2, 3, 6]\n", "sigmoid(matmul(a, b))", "[2, 5, 6]"));
  // Narrow products of a transposed A, computed as their transpose (Cᵀ tiles): the epilogue on
  // vectors, and with column and row sums (then on scalars).
  const std::string kT = "param a : f32[7, 40]\nparam b : f32[7, 5]\nparam c : f32[5]\n";
  s.push_back(weighted(kT, "relu(add(matmul(transpose(a, perm=[1, 0]), b), c))", "[40, 5]"));
  s.push_back(weighted(kT, "sum(mul(matmul(transpose(a, perm=[1, 0]), b), c), axes=[0])", "[5]"));
  s.push_back(weighted(kT, "sum(matmul(transpose(a, perm=[1, 0]), b), axes=[1])", "[40]"));
  // Narrow products over a long k as dot products (k = 70: a masked last vector), B copied
  // transposed or read so.
  const std::string kD = "param a : f32[5, 70]\nparam b : f32[70, 6]\nparam c : f32[6, 70]\nparam d : f32[6]\n";
  s.push_back(weighted(kD, "relu(add(matmul(a, b), d))", "[5, 6]"));
  s.push_back(weighted(kD, "sum(matmul(a, transpose(c, perm=[1, 0])), axes=[0])", "[6]"));
  // Epilogues with divisions and square roots (as Adam's) over several tiles: Cᵀ tiles over two
  // full panels and a ragged one; tile rows over a full row block and a ragged one (13 rows), a
  // full panel and a ragged one (48 columns).
  s.push_back(weighted("param a : f32[7, 90]\nparam b : f32[7, 5]\nparam c : f32[90, 5]\n",
                       "div(matmul(transpose(a, perm=[1, 0]), b), add(sqrt(square(c)), 1))", "[90, 5]"));
  s.push_back(weighted("param a : f32[13, 7]\nparam b : f32[7, 48]\nparam c : f32[13, 48]\n",
                       "div(matmul(a, b), add(square(c), 1))", "[13, 48]"));
  // B read transposed and packed through 16 x 16 (or 8 x 8) register transposes, with edges.
  s.push_back(weighted("param a : f32[5, 37]\nparam b : f32[40, 37]\n", "matmul(a, transpose(b, perm=[1, 0]))", "[5, 40]"));
  return s;
}

double check_spec(const std::string& text, double tol) { return test::check_against_interpreter(text, tol, "op.gir"); }

}  // namespace

TEST_CASE("jit: every op in f32 equals the interpreter (predict, 3 steps, params), each case of its record") {
  double worst = 0;
  for (const test::OpRecord& r : test::op_records())
    for (const test::OpCase& c : r.cases) {
      std::string spec = test::spec_of(r, c);
      INFO(r.op, ":\n", spec);
      worst = std::max(worst, check_spec(spec, r.tol.f32));
    }
  MESSAGE("f32: worst relative error ", worst);
}

TEST_CASE("jit: every op in f64 equals the interpreter to 1e-12, each case of its record") {
  double worst = 0;
  for (const test::OpRecord& r : test::op_records())
    for (const test::OpCase& c : r.cases) {
      std::string spec = test::in_f64(test::spec_of(r, c));
      INFO(r.op, ":\n", spec);
      worst = std::max(worst, check_spec(spec, r.tol.f64));
    }
  MESSAGE("f64: worst relative error ", worst);
}

TEST_CASE("jit: the GEMM epilogue fusion cases in f32 equal the interpreter (predict, 3 steps, params)") {
  double worst = 0;
  for (const std::string& spec : fusion_cases()) {
    CAPTURE(spec);
    worst = std::max(worst, check_spec(spec, 1e-5));
  }
  MESSAGE("f32: worst relative error ", worst);
}

TEST_CASE("jit: the GEMM epilogue fusion cases in f64 equal the interpreter to 1e-12") {
  double worst = 0;
  for (const std::string& spec : fusion_cases()) {
    std::string f64 = test::in_f64(spec);
    CAPTURE(f64);
    worst = std::max(worst, check_spec(f64, 1e-12));
  }
  MESSAGE("f64: worst relative error ", worst);
}

}  // namespace gradc

namespace gradc {

// The JIT's inline expf (KernelBuilder::exp) against libm's over its whole range, element by
// element: within 2 ulp where the result is a normal float, and libm's special values.
TEST_CASE("jit: exp in f32 is within 2 ulp of libm's expf, with its special values") {
  std::vector<float> xs;
  for (double x = -87.3; x <= 88.2; x += 0.0173) xs.push_back(static_cast<float>(x));
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 0.5f, -0.5f, 1.0f, 10.0f, -10.0f, 88.0f, -87.0f}) xs.push_back(x);
  const std::vector<std::pair<float, float>> special = {
      {-INFINITY, 0.0f}, {-1000.0f, 0.0f}, {-88.0f, 0.0f}, {INFINITY, INFINITY}, {1000.0f, INFINITY}, {NAN, NAN}};
  for (auto [x, y] : special) xs.push_back(x);
  int64_t n = static_cast<int64_t>(xs.size());
  Model m = compile_string(fmt::format("input x : f32[{}]\noutput y = exp(x)\n", n), "exp.gir");
  Session s(m);
  const Tensor& y = s.predict({{"x", TensorView(xs.data(), Shape{n})}}).at("y");
  int checked = 0;
  for (int64_t i = 0; i < n - static_cast<int64_t>(special.size()); ++i) {
    float want = std::exp(xs[static_cast<size_t>(i)]), got = y.as<float>()[i];
    INFO("x = ", xs[static_cast<size_t>(i)], ": got ", got, ", libm ", want);
    CHECK(std::fabs(got - want) <= 2 * (std::nextafter(want, INFINITY) - want));
    ++checked;
  }
  CHECK(checked > 10000);
  for (size_t j = 0; j < special.size(); ++j) {
    float got = y.as<float>()[n - static_cast<int64_t>(special.size()) + static_cast<int64_t>(j)];
    INFO("x = ", special[j].first, ": got ", got);
    if (std::isnan(special[j].second)) CHECK(std::isnan(got));
    else CHECK(got == special[j].second);
  }
}

}  // namespace gradc
