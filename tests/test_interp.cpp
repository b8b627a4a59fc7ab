// The reference interpreter: every op against values computed by hand, conv and pooling
// against direct loops written here, and the errors of a bad feed.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "TestUtil.h"
#include "gradc/gradc.h"
#include "interp/Interpreter.h"

using namespace gradc;
using ITensor = interp::Tensor;  // gradc::Tensor is the runtime's

namespace {

TensorType f32(Shape s) { return {DType::F32, std::move(s)}; }
TensorType f64(Shape s) { return {DType::F64, std::move(s)}; }

// Evaluates `op(a, b, ...)` on the given tensors through a one-op spec, as users would.
ITensor run(const std::string& call, const std::vector<std::pair<std::string, ITensor>>& operands) {
  std::string spec;
  interp::Feeds feeds;
  for (const auto& [name, t] : operands) {
    spec += fmt::format("input {} : {}\n", name, t.type);
    feeds[name] = t;
  }
  spec += "r = " + call + "\noutput r\n";
  Graph g = load_spec(spec, "op.gir");
  return interp::evaluate(g, feeds)[static_cast<size_t>(g.outputs[0].value)];
}

// Checks every element within `tol` (relative to max(1, |expected|)) and prints the worst.
void check_close(const ITensor& got, const std::vector<double>& expected, double tol = 1e-6) {
  REQUIRE(got.data.size() == expected.size());
  double worst = 0;
  size_t where = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    double err = std::fabs(got.data[i] - expected[i]) / std::max(1.0, std::fabs(expected[i]));
    if (err > worst) worst = err, where = i;
  }
  INFO("worst element ", where, ": got ", got.data[where], ", expected ", expected[where]);
  CHECK(worst <= tol);
}

ITensor random_tensor(TensorType t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (double& x : v) x = u(rng);
  return ITensor::of(std::move(t), v);
}

const ITensor kX = ITensor::of(f64({2, 3}), {1, -2, 3, -4, 5, 0.5});

}  // namespace

TEST_CASE("interp: elementwise ops on one operand") {
  check_close(run("neg(x)", {{"x", kX}}), {-1, 2, -3, 4, -5, -0.5});
  check_close(run("abs(x)", {{"x", kX}}), {1, 2, 3, 4, 5, 0.5});
  check_close(run("relu(x)", {{"x", kX}}), {1, 0, 3, 0, 5, 0.5});
  check_close(run("square(x)", {{"x", kX}}), {1, 4, 9, 16, 25, 0.25});
  check_close(run("exp(x)", {{"x", kX}}), {2.718281828459045, 0.1353352832366127, 20.085536923187668,
                                           0.018315638888734, 148.4131591025766, 1.6487212707001282});
  check_close(run("tanh(x)", {{"x", kX}}), {0.7615941559557649, -0.9640275800758169, 0.9950547536867305,
                                            -0.999329299739067, 0.9999092042625951, 0.46211715726000974});
  check_close(run("sigmoid(x)", {{"x", kX}}), {0.7310585786300049, 0.11920292202211755, 0.9525741268224334,
                                               0.01798620996209156, 0.9933071490757153, 0.6224593312018546});
  ITensor pos = ITensor::of(f64({4}), {1, 4, 0.25, 2});
  check_close(run("log(p)", {{"p", pos}}), {0, 1.3862943611198906, -1.3862943611198906, 0.6931471805599453});
  check_close(run("sqrt(p)", {{"p", pos}}), {1, 2, 0.5, 1.4142135623730951});
  check_close(run("rsqrt(p)", {{"p", pos}}), {1, 0.5, 2, 0.7071067811865476});
  check_close(run("log1p(p)", {{"p", pos}}), {0.6931471805599453, 1.6094379124341003, 0.22314355131420976, 1.0986122886681098});
  // Where log(1 + x) rounds 1 + x away: log1p keeps x's digits.
  check_close(run("log1p(p)", {{"p", ITensor::of(f64({4}), {1e-10, -1e-12, 0, 3e-17})}}),
              {9.9999999995e-11, -1.0000000000005e-12, 0, 3e-17}, 1e-20);
}

TEST_CASE("interp: elementwise ops on two operands, with broadcasting") {
  ITensor row = ITensor::of(f64({3}), {10, 20, 30});
  check_close(run("add(x, r3)", {{"x", kX}, {"r3", row}}), {11, 18, 33, 6, 25, 30.5});
  check_close(run("sub(x, r3)", {{"x", kX}, {"r3", row}}), {-9, -22, -27, -14, -15, -29.5});
  check_close(run("mul(x, r3)", {{"x", kX}, {"r3", row}}), {10, -40, 90, -40, 100, 15});
  check_close(run("div(x, r3)", {{"x", kX}, {"r3", row}}), {0.1, -0.1, 0.1, -0.4, 0.25, 0.5 / 30});
  ITensor col = ITensor::of(f64({2, 1}), {0, 2});
  check_close(run("maximum(x, c)", {{"x", kX}, {"c", col}}), {1, 0, 3, 2, 5, 2});
  check_close(run("minimum(x, c)", {{"x", kX}, {"c", col}}), {0, -2, 0, -4, 2, 0.5});
  ITensor base = ITensor::of(f64({2, 1}), {2, 3});
  ITensor exps = ITensor::of(f64({1, 3}), {0, 1, 2});
  check_close(run("pow(b, e)", {{"b", base}, {"e", exps}}), {1, 2, 4, 1, 3, 9});
  check_close(run("mul(b, e)", {{"b", base}, {"e", exps}}), {0, 2, 4, 0, 3, 6});
  // A literal scalar broadcasts and takes the operand's dtype.
  check_close(run("mul(x, 0.5)", {{"x", kX}}), {0.5, -1, 1.5, -2, 2.5, 0.25});
  check_close(run("add(2, x)", {{"x", kX}}), {3, 0, 5, -2, 7, 2.5});
}

TEST_CASE("interp: matmul, plain and batched") {
  ITensor a = ITensor::of(f64({2, 3}), {1, 2, 3, 4, 5, 6});
  ITensor b = ITensor::of(f64({3, 2}), {7, 8, 9, 10, 11, 12});
  check_close(run("matmul(a, b)", {{"a", a}, {"b", b}}), {58, 64, 139, 154});
  ITensor ba = ITensor::of(f64({2, 1, 2}), {1, 2, 3, 4});
  ITensor bb = ITensor::of(f64({2, 2, 2}), {1, 0, 0, 1, 2, 1, 1, 2});
  check_close(run("matmul(a, b)", {{"a", ba}, {"b", bb}}), {1, 2, 10, 11});
}

TEST_CASE("interp: transpose, reshape, broadcast_to") {
  check_close(run("transpose(x)", {{"x", kX}}), {1, -4, -2, 5, 3, 0.5});
  ITensor t3 = ITensor::of(f64({2, 2, 2}), {0, 1, 2, 3, 4, 5, 6, 7});
  check_close(run("transpose(t, perm=[0, 2, 1])", {{"t", t3}}), {0, 2, 1, 3, 4, 6, 5, 7});
  check_close(run("transpose(t, perm=[2, 0, 1])", {{"t", t3}}), {0, 2, 4, 6, 1, 3, 5, 7});
  ITensor r = run("reshape(x, shape=[3, -1])", {{"x", kX}});
  CHECK(r.type == f64({3, 2}));
  check_close(r, {1, -2, 3, -4, 5, 0.5});
  ITensor col = ITensor::of(f64({2, 1}), {7, 8});
  check_close(run("broadcast_to(c, shape=[2, 3])", {{"c", col}}), {7, 7, 7, 8, 8, 8});
}

TEST_CASE("interp: sum, mean and max over axes, with keepdims") {
  check_close(run("sum(x)", {{"x", kX}}), {3.5});
  check_close(run("sum(x, axes=[0])", {{"x", kX}}), {-3, 3, 3.5});
  check_close(run("mean(x, axes=[1])", {{"x", kX}}), {2.0 / 3, 1.5 / 3});
  ITensor k = run("mean(x, axes=[1], keepdims=true)", {{"x", kX}});
  CHECK(k.type == f64({2, 1}));
  check_close(k, {2.0 / 3, 0.5});
  check_close(run("max(x, axes=[-1])", {{"x", kX}}), {3, 5});
  check_close(run("max(x)", {{"x", kX}}), {5});
  ITensor t3 = ITensor::of(f64({2, 2, 2}), {0, 1, 2, 3, 4, 5, 6, 7});
  check_close(run("sum(t, axes=[0, 2])", {{"t", t3}}), {0 + 1 + 4 + 5, 2 + 3 + 6 + 7});
}

TEST_CASE("interp: softmax and log_softmax are stable and normalized") {
  ITensor big = ITensor::of(f64({2, 3}), {1000, 1001, 1002, 0, 0, 0});
  ITensor s = run("softmax(x, axis=1)", {{"x", big}});
  double e1 = std::exp(-1.0), e2 = std::exp(-2.0), z = 1 + e1 + e2;
  check_close(s, {e2 / z, e1 / z, 1 / z, 1.0 / 3, 1.0 / 3, 1.0 / 3});
  check_close(run("log_softmax(x)", {{"x", big}}),
              {-2 - std::log(z), -1 - std::log(z), -std::log(z), -std::log(3.0), -std::log(3.0), -std::log(3.0)});
  // Along axis 0 the columns sum to 1.
  ITensor c = run("softmax(x, axis=0)", {{"x", kX}});
  for (int64_t j = 0; j < 3; ++j) CHECK(c.at({0, j}) + c.at({1, j}) == doctest::Approx(1.0));
}

TEST_CASE("interp: the losses by hand") {
  ITensor logits = ITensor::of(f64({2, 3}), {1, 2, 3, 1, 1, 1});
  ITensor ids = ITensor::of(TensorType{DType::I32, {2}}, {2, 0});
  double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  double expected = ((lse0 - 3) + std::log(3.0)) / 2;
  check_close(run("softmax_cross_entropy(l, y)", {{"l", logits}, {"y", ids}}), {expected});
  ITensor probs = ITensor::of(f64({2, 3}), {0, 0, 1, 0.5, 0.5, 0});
  double expected_p = ((lse0 - 3) + std::log(3.0)) / 2;  // row 2: -(0.5 + 0.5) * log(1/3)
  check_close(run("softmax_cross_entropy(l, p)", {{"l", logits}, {"p", probs}}), {expected_p});

  ITensor pred = ITensor::of(f64({2, 2}), {1, 2, 3, 4});
  ITensor target = ITensor::of(f64({2, 2}), {1, 0, 0, 4});
  check_close(run("mse(a, b)", {{"a", pred}, {"b", target}}), {(0 + 4 + 9 + 0) / 4.0});

  ITensor x = ITensor::of(f64({3}), {0, 2, -30});
  ITensor t = ITensor::of(f64({3}), {1, 0, 1});
  // -t log s(x) - (1 - t) log(1 - s(x)) per element: log 2, 2 + log(1 + e^-2), 30 + log(1 + e^-30).
  double bce = (std::log(2.0) + 2 + std::log1p(std::exp(-2.0)) + 30 + std::log1p(std::exp(-30.0))) / 3;
  check_close(run("bce_with_logits(x, t)", {{"x", x}, {"t", t}}), {bce});
}

TEST_CASE("interp: a class id out of range is an error naming the row") {
  ITensor logits = ITensor::of(f32({2, 3}), {1, 2, 3, 1, 1, 1});
  ITensor ids = ITensor::of(TensorType{DType::I32, {2}}, {1, 3});
  CHECK_THROWS_WITH_AS(run("softmax_cross_entropy(l, y)", {{"l", logits}, {"y", ids}}),
                       doctest::Contains("label 3 at row 1 is out of range [0, 3)"), Error);
}

TEST_CASE("interp: conv2d by hand") {
  // 1x1x3x3 input, one 2x2 kernel, no padding: each output is a 2x2 window's weighted sum.
  ITensor x = ITensor::of(f64({1, 1, 3, 3}), {1, 2, 3, 4, 5, 6, 7, 8, 9});
  ITensor w = ITensor::of(f64({1, 1, 2, 2}), {1, 0, 0, -1});
  check_close(run("conv2d(x, w)", {{"x", x}, {"w", w}}), {1 - 5, 2 - 6, 4 - 8, 5 - 9});
  // Padding 1, stride 2: out[i, j] = p[2i, 2j] - p[2i+1, 2j+1] on the zero-padded 5x5 input p,
  // so the first three outputs see a padding zero and the last is x[1,1] - x[2,2].
  check_close(run("conv2d(x, w, stride=2, padding=1)", {{"x", x}, {"w", w}}), {-1, -3, -7, 5 - 9});
}

TEST_CASE("interp: conv2d against a direct loop, with stride, padding and odd sizes") {
  struct Config {
    int64_t N, C, H, W, O, KH, KW, SH, SW, PH, PW;
  };
  // The brief's case; a kernel larger than the input that only the padding makes fit (its
  // last rows and columns see padding only); and unequal strides and paddings.
  for (Config k : {Config{2, 2, 5, 7, 3, 3, 2, 2, 2, 1, 1}, Config{1, 2, 1, 2, 3, 3, 4, 2, 2, 1, 1},
                   Config{1, 2, 4, 5, 2, 2, 3, 1, 2, 2, 0}}) {
    CAPTURE(k.H);
    CAPTURE(k.KH);
    ITensor x = random_tensor(f64({k.N, k.C, k.H, k.W}), 1);
    ITensor w = random_tensor(f64({k.O, k.C, k.KH, k.KW}), 2);
    ITensor got = run(fmt::format("conv2d(x, w, stride=[{}, {}], padding=[{}, {}])", k.SH, k.SW, k.PH, k.PW),
                     {{"x", x}, {"w", w}});
    const int64_t OH = (k.H + 2 * k.PH - k.KH) / k.SH + 1, OW = (k.W + 2 * k.PW - k.KW) / k.SW + 1;
    REQUIRE(got.type == f64({k.N, k.O, OH, OW}));
    std::vector<double> expected;
    for (int64_t n = 0; n < k.N; ++n)
      for (int64_t o = 0; o < k.O; ++o)
        for (int64_t i = 0; i < OH; ++i)
          for (int64_t j = 0; j < OW; ++j) {
            double acc = 0;
            for (int64_t c = 0; c < k.C; ++c)
              for (int64_t ki = 0; ki < k.KH; ++ki)
                for (int64_t kj = 0; kj < k.KW; ++kj) {
                  int64_t y = i * k.SH - k.PH + ki, z = j * k.SW - k.PW + kj;
                  if (y >= 0 && y < k.H && z >= 0 && z < k.W)
                    acc += x.data[static_cast<size_t>(((n * k.C + c) * k.H + y) * k.W + z)] *
                           w.data[static_cast<size_t>(((o * k.C + c) * k.KH + ki) * k.KW + kj)];
                }
            expected.push_back(acc);
          }
    check_close(got, expected, 1e-12);
  }
}

TEST_CASE("interp: maxpool2d and avgpool2d against a direct loop") {
  ITensor x = random_tensor(f64({2, 3, 5, 7}), 3);
  for (auto [k, s] : {std::pair{2, 2}, std::pair{3, 1}}) {
    CAPTURE(k);
    const int64_t OH = (5 - k) / s + 1, OW = (7 - k) / s + 1;
    std::vector<double> max_expected, avg_expected;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t i = 0; i < OH; ++i)
          for (int64_t j = 0; j < OW; ++j) {
            double m = -1e300, sum = 0;
            for (int64_t a = 0; a < k; ++a)
              for (int64_t b = 0; b < k; ++b) {
                double v = x.data[static_cast<size_t>(((n * 3 + c) * 5 + i * s + a) * 7 + j * s + b)];
                m = std::max(m, v);
                sum += v;
              }
            max_expected.push_back(m);
            avg_expected.push_back(sum / (k * k));
          }
    std::string attrs = fmt::format("kernel={}, stride={}", k, s);
    check_close(run("maxpool2d(x, " + attrs + ")", {{"x", x}}), max_expected, 1e-12);
    check_close(run("avgpool2d(x, " + attrs + ")", {{"x", x}}), avg_expected, 1e-12);
  }
  // By hand: a 1x1x2x2 window.
  ITensor small = ITensor::of(f64({1, 1, 2, 2}), {1, 5, -3, 2});
  check_close(run("maxpool2d(x, kernel=2)", {{"x", small}}), {5});
  check_close(run("avgpool2d(x, kernel=2)", {{"x", small}}), {1.25});
}

TEST_CASE("interp: f32 results are rounded to f32, f64 keeps its precision") {
  ITensor one32 = ITensor::of(f32({1}), {1.0});
  ITensor one64 = ITensor::of(f64({1}), {1.0});
  // 1 + 1e-10 is 1 in f32 and not in f64.
  CHECK(run("add(x, 1e-10)", {{"x", one32}}).data[0] == 1.0);
  CHECK(run("add(x, 1e-10)", {{"x", one64}}).data[0] == 1.0 + 1e-10);
  ITensor third = run("div(x, 3)", {{"x", one32}});
  CHECK(third.data[0] == static_cast<double>(1.0f / 3.0f));
}

TEST_CASE("interp: NaN propagates through relu, maximum, minimum, max and maxpool2d, as in PyTorch") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ITensor x = ITensor::of(f64({1, 1, 2, 2}), {nan, 1, -2, 3});
  auto isnan_at = [](const ITensor& t, size_t i) { return std::isnan(t.data[i]); };
  ITensor r = run("relu(x)", {{"x", x}});
  CHECK(isnan_at(r, 0));
  CHECK(r.data[2] == 0);
  ITensor zero = ITensor::of(f64({1}), {0});
  for (const char* call : {"maximum(x, z)", "maximum(z, x)", "minimum(x, z)", "minimum(z, x)"}) {
    CAPTURE(call);
    ITensor m = run(call, {{"x", x}, {"z", zero}});
    CHECK(isnan_at(m, 0));
    CHECK_FALSE(isnan_at(m, 1));
  }
  CHECK(isnan_at(run("max(x)", {{"x", x}}), 0));
  CHECK(isnan_at(run("maxpool2d(x, kernel=2)", {{"x", x}}), 0));
  // Its gradient goes where the NaN was.
  ITensor one = ITensor::of(f64({1, 1, 1, 1}), {1});
  check_close(run("maxpool2d_grad(x, dy, kernel=2)", {{"x", x}, {"dy", one}}), {1, 0, 0, 0});
}

TEST_CASE("interp: feeds must be complete and of the declared types") {
  Graph g = load_spec("input x : f32[2, 3]\nparam w : f32[3]\nr = add(x, w)\n", "feeds.gir");
  interp::Feeds feeds{{"x", ITensor::zeros(f32({2, 3}))}};
  CHECK_THROWS_WITH_AS(interp::evaluate(g, feeds), doctest::Contains("no value fed for param 'w' (expects f32[3])"),
                       Error);
  feeds["w"] = ITensor::zeros(f32({4}));
  CHECK_THROWS_WITH_AS(interp::evaluate(g, feeds), doctest::Contains("param 'w' expects f32[3], got f32[4]"), Error);
  feeds["w"] = ITensor::of(f32({3}), {1, 2, 3});
  check_close(interp::evaluate(g, feeds)[static_cast<size_t>(*g.find("r"))], {1, 2, 3, 1, 2, 3});
}

// Graphs built node by node, as passes build them, without the parser: the interpreter needs
// nothing but typed nodes with bound, canonical attributes.
namespace {

struct HandGraph {
  Graph g;

  ValueId leaf(NodeKind kind, std::string name, TensorType type) {
    Node n;
    n.kind = kind;
    n.name = std::move(name);
    n.type = std::move(type);
    return g.add(std::move(n));
  }

  ValueId constant(double v, DType dt) {
    Node n;
    n.kind = NodeKind::Constant;
    n.constant = v;
    n.type = {dt, {}};
    return g.add(std::move(n));
  }

  ValueId op(std::string_view spelling, std::vector<ValueId> args, const Attrs& keywords = {}) {
    std::optional<OpKind> k = find_op(spelling);
    REQUIRE(k);
    Node n;
    n.kind = NodeKind::Op;
    n.op = *k;
    n.attrs = bind_attrs(op_info(*k).attrs, op_info(*k).name, {}, keywords, {});
    std::vector<TensorType> types;
    for (ValueId a : args) types.push_back(g[a].type);
    n.type = infer_type(*k, types, n.attrs, {});
    n.args = std::move(args);
    return g.add(std::move(n));
  }

  const ITensor& value(const std::vector<ITensor>& values, ValueId id) { return values[static_cast<size_t>(id)]; }
};

}  // namespace

TEST_CASE("interp: a graph built by hand, with constants of each float dtype") {
  HandGraph h;
  ValueId x64 = h.leaf(NodeKind::Input, "x64", f64({2, 3}));
  ValueId x32 = h.leaf(NodeKind::Param, "x32", f32({2, 3}));
  ValueId tenth64 = h.constant(0.1, DType::F64);
  ValueId tenth32 = h.constant(0.1, DType::F32);
  ValueId y64 = h.op("mul", {x64, tenth64});
  ValueId y32 = h.op("mul", {x32, tenth32});
  // Attributes as written, canonicalized by the shape rule: axes=[-1] becomes [1].
  ValueId s = h.op("sum", {y64}, Attrs{{"axes", Attr{std::vector<int64_t>{-1}}}, {"keepdims", true}});
  ValueId p = h.op("softmax", {x64}, Attrs{{"axis", 0}});
  CHECK(h.g[s].attrs.get("axes").as_ints() == std::vector<int64_t>{1});
  CHECK(h.g[s].type == f64({2, 1}));

  std::vector<double> xs{1, -2, 3, -4, 5, 0.5};
  std::vector<ITensor> v =
      interp::evaluate(h.g, {{"x64", ITensor::of(f64({2, 3}), xs)}, {"x32", ITensor::of(f32({2, 3}), xs)}});
  // The constant holds 0.1 rounded to its dtype: f64 keeps what f32 rounds away.
  CHECK(h.value(v, tenth64).type == f64({}));
  CHECK(h.value(v, tenth64).data[0] == 0.1);
  CHECK(h.value(v, tenth32).data[0] == static_cast<double>(0.1f));
  CHECK(h.value(v, tenth32).data[0] != 0.1);
  for (size_t i = 0; i < xs.size(); ++i) {
    CAPTURE(i);
    CHECK(h.value(v, y64).data[i] == xs[i] * 0.1);
    CHECK(h.value(v, y32).data[i] == static_cast<double>(static_cast<float>(xs[i]) * 0.1f));
  }
  check_close(h.value(v, s), {0.2, 0.15}, 1e-15);
  const ITensor& probs = h.value(v, p);
  for (int64_t j = 0; j < 3; ++j) CHECK(probs.at({0, j}) + probs.at({1, j}) == doctest::Approx(1.0).epsilon(1e-15));
}

TEST_CASE("interp: errors of a graph built by hand name the leaf's kind") {
  HandGraph h;
  ValueId x = h.leaf(NodeKind::Input, "x", f32({64, 784}));
  ValueId st = h.leaf(NodeKind::State, "s", f32({784}));
  h.op("add", {x, st});
  interp::Feeds feeds;
  CHECK_THROWS_WITH_AS(interp::evaluate(h.g, feeds), doctest::Contains("no value fed for input 'x' (expects f32[64, 784])"),
                       Error);
  feeds["x"] = ITensor::zeros(f64({64, 784}));  // the right shape, the wrong dtype
  CHECK_THROWS_WITH_AS(interp::evaluate(h.g, feeds), doctest::Contains("input 'x' expects f32[64, 784], got f64[64, 784]"),
                       Error);
  feeds["x"] = ITensor::zeros(f32({64, 784}));
  CHECK_THROWS_WITH_AS(interp::evaluate(h.g, feeds), doctest::Contains("no value fed for state 's' (expects f32[784])"),
                       Error);
  feeds["s"] = ITensor::zeros(f32({3}));
  CHECK_THROWS_WITH_AS(interp::evaluate(h.g, feeds), doctest::Contains("state 's' expects f32[784], got f32[3]"), Error);
}

TEST_CASE("interp: the seed's model evaluates forward with finite values") {
  Graph g = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  interp::Feeds feeds;
  uint32_t seed = 10;
  for (ValueId id : g.leaves(NodeKind::Param)) feeds[g[id].name] = random_tensor(g[id].type, seed++);
  feeds["x"] = random_tensor(f32({64, 784}), 1);
  std::vector<double> labels(64);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<double>(i % 10);
  feeds["y"] = ITensor::of(TensorType{DType::I32, {64}}, labels);
  std::vector<ITensor> v = interp::evaluate(g, feeds);
  double loss = v[static_cast<size_t>(*g.find("loss"))].data[0];
  CHECK(std::isfinite(loss));
  CHECK(loss > 0);
  const ITensor& probs = v[static_cast<size_t>(*g.find("probs"))];
  for (int64_t r = 0; r < 64; ++r) {
    double s = 0;
    for (int64_t c = 0; c < 10; ++c) s += probs.at({r, c});
    CHECK(s == doctest::Approx(1.0).epsilon(1e-5));
  }
}

TEST_CASE("interp: every op of the table has a value test in this file") {
  std::string source = test::read_file(test::source_path("tests/test_interp.cpp"));
  for (const OpInfo& op : all_ops()) {
    CAPTURE(op.name);
    CHECK(source.find(fmt::format("\"{}(", op.name)) != std::string::npos);
  }
}

// The adjoint ops are checked by the identity that defines them: for a linear map A,
// <A x, dy> = <x, Aᵀ dy>. conv2d is linear in x and in w; pooling is linear in x (maxpool with
// its windows' maxima fixed, which maxpool2d_grad reads from x).
namespace {

double dot(const ITensor& a, const ITensor& b) {
  REQUIRE(a.data.size() == b.data.size());
  double s = 0;
  for (size_t i = 0; i < a.data.size(); ++i) s += a.data[i] * b.data[i];
  return s;
}

}  // namespace

TEST_CASE("interp: conv2d_input_grad and conv2d_weight_grad are the adjoints of conv2d") {
  ITensor x = random_tensor(f64({2, 3, 7, 6}), 5);
  ITensor w = random_tensor(f64({4, 3, 3, 2}), 6);
  ITensor y = run("conv2d(x, w, stride=2, padding=1)", {{"x", x}, {"w", w}});
  ITensor dy = random_tensor(y.type, 7);
  ITensor dx = run("conv2d_input_grad(dy, w, stride=2, padding=1, shape=[2, 3, 7, 6])", {{"dy", dy}, {"w", w}});
  ITensor dw = run("conv2d_weight_grad(x, dy, stride=2, padding=1, kernel=[3, 2])", {{"x", x}, {"dy", dy}});
  CHECK(dot(y, dy) == doctest::Approx(dot(x, dx)).epsilon(1e-12));
  CHECK(dot(y, dy) == doctest::Approx(dot(w, dw)).epsilon(1e-12));
  CHECK_THROWS_WITH_AS(run("conv2d_input_grad(dy, w, stride=1, padding=1, shape=[2, 3, 7, 6])", {{"dy", dy}, {"w", w}}),
                       doctest::Contains("the incoming gradient is f64[2, 4, 4, 4] but the forward op gives"), Error);
}

TEST_CASE("interp: maxpool2d_grad and avgpool2d_grad are the adjoints of pooling") {
  ITensor x = random_tensor(f64({2, 3, 7, 6}), 8);
  for (const char* attrs : {"kernel=2", "kernel=[3, 2], stride=[2, 1]"}) {
    CAPTURE(attrs);
    ITensor ymax = run(fmt::format("maxpool2d(x, {})", attrs), {{"x", x}});
    ITensor dy = random_tensor(ymax.type, 9);
    ITensor dmax = run(fmt::format("maxpool2d_grad(x, dy, {})", attrs), {{"x", x}, {"dy", dy}});
    CHECK(dot(ymax, dy) == doctest::Approx(dot(x, dmax)).epsilon(1e-12));
    ITensor yavg = run(fmt::format("avgpool2d(x, {})", attrs), {{"x", x}});
    ITensor davg = run(fmt::format("avgpool2d_grad(dy, {}, shape=[2, 3, 7, 6])", attrs), {{"dy", dy}});
    CHECK(dot(yavg, dy) == doctest::Approx(dot(x, davg)).epsilon(1e-12));
  }
  // By hand: the gradient goes to the first maximum of the window only.
  ITensor tie = ITensor::of(f64({1, 1, 2, 2}), {1, 7, 7, 2});
  ITensor one = ITensor::of(f64({1, 1, 1, 1}), {3});
  check_close(run("maxpool2d_grad(x, dy, kernel=2)", {{"x", tie}, {"dy", one}}), {0, 3, 0, 0});
  check_close(run("avgpool2d_grad(dy, kernel=2, shape=[1, 1, 2, 2])", {{"dy", one}}), {0.75, 0.75, 0.75, 0.75});
}

TEST_CASE("interp: greater and one_hot") {
  ITensor col = ITensor::of(f64({2, 1}), {0, 2});
  check_close(run("greater(x, c)", {{"x", kX}, {"c", col}}), {1, 0, 1, 0, 1, 0});
  ITensor ids = ITensor::of(TensorType{DType::I32, {3}}, {2, 0, 1});
  ITensor oh = run("one_hot(y, classes=3)", {{"y", ids}});
  CHECK(oh.type == f32({3, 3}));
  check_close(oh, {0, 0, 1, 1, 0, 0, 0, 1, 0});
  CHECK(run("one_hot(y, classes=3, dtype=f64)", {{"y", ids}}).type == f64({3, 3}));
  CHECK_THROWS_WITH_AS(run("one_hot(y, classes=2)", {{"y", ids}}),
                       doctest::Contains("class id 2 at position 0 is out of range [0, 2)"), Error);
}
