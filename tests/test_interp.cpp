// The reference interpreter: every op against the values computed by hand in its record
// (OpCases.h), conv and pooling against direct loops written here, the adjoints by their
// defining identity, and the errors of a bad feed.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "OpCases.h"
#include "TestUtil.h"
#include "gradc/gradc.h"
#include "interp/Interpreter.h"
#include "ir/Philox.h"

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

// Each op's values computed by hand live in its record (OpCases.h), beside its other cases.
TEST_CASE("interp: every op gives the values computed by hand in its record") {
  for (const test::OpRecord& r : test::op_records())
    for (const test::KnownValue& v : r.values) {
      INFO(r.op, ": ", v.call);
      ITensor got = run(v.call, v.operands);
      if (!v.type.empty()) CHECK(fmt::format("{}", got.type) == v.type);
      check_close(got, v.expected, v.tol);
    }
}

TEST_CASE("interp: softmax along axis 0 sums to 1 down each column") {
  ITensor c = run("softmax(x, axis=0)", {{"x", kX}});
  for (int64_t j = 0; j < 3; ++j) CHECK(c.at({0, j}) + c.at({1, j}) == doctest::Approx(1.0));
}

TEST_CASE("interp: a class id out of range is an error naming the row") {
  ITensor logits = ITensor::of(f32({2, 3}), {1, 2, 3, 1, 1, 1});
  ITensor ids = ITensor::of(TensorType{DType::I32, {2}}, {1, 3});
  CHECK_THROWS_WITH_AS(run("softmax_cross_entropy(l, y)", {{"l", logits}, {"y", ids}}),
                       doctest::Contains("label 3 at row 1 is out of range [0, 3)"), Error);
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
}

TEST_CASE("interp: Philox-4x32-10 gives Random123's known answers") {
  using W = std::array<uint32_t, 4>;
  CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == W{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        W{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        W{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("interp: gather and gather_grad refuse indices out of range, naming the position") {
  ITensor table = ITensor::of(f64({2, 2}), {1, 2, 3, 4});
  CHECK_THROWS_WITH_AS(run("gather(x, ids)", {{"x", table}, {"ids", ITensor::of(TensorType{DType::I32, {3}}, {1, 2, 0})}}),
                       doctest::Contains("gather: index 2 at position 1 is out of range [0, 2)"), Error);
  CHECK_THROWS_WITH_AS(run("gather_grad(x, ids, shape=[3, 2])",
                           {{"x", table}, {"ids", ITensor::of(TensorType{DType::I32, {2}}, {-1, 0})}}),
                       doctest::Contains("gather_grad: index -1 at position 0 is out of range [0, 3)"), Error);
}

TEST_CASE("interp: one_hot gives the dtype asked for, and refuses class ids out of range") {
  ITensor ids = ITensor::of(TensorType{DType::I32, {3}}, {2, 0, 1});
  CHECK(run("one_hot(y, classes=3, dtype=f64)", {{"y", ids}}).type == f64({3, 3}));
  CHECK_THROWS_WITH_AS(run("one_hot(y, classes=2)", {{"y", ids}}),
                       doctest::Contains("class id 2 at position 0 is out of range [0, 2)"), Error);
}
