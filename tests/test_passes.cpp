// The passes after autodiff: optimizer lowering (torch.optim's rules, checked by hand), the
// training graph as a spec, and simplify (smaller graph, same numbers).
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "JitUtil.h"
#include "TestUtil.h"
#include "gradc/gradc.h"
#include "ir/Printer.h"
#include "ir/Verifier.h"

using namespace gradc;
using ITensor = interp::Tensor;  // gradc::Tensor is the runtime's

namespace {

// loss = sum(w * x): its gradient is x, so each update rule can be followed by hand.
std::string linear_spec(const std::string& optimizer) {
  return "input x : f64[3]\ninput lr_in : f64[]\nparam w : f64[3]\nloss = sum(mul(w, x))\nminimize loss with " +
         optimizer + "\n";
}

const std::vector<double> kW0 = {0.5, -1.0, 2.0};
const std::vector<double> kG = {0.3, -0.2, 4.0};  // the gradient, fed as x

// Runs `steps` training steps in the interpreter and returns w after each.
std::vector<std::vector<double>> run_steps(const std::string& optimizer, int steps) {
  Graph g = train_graph(load_spec(linear_spec(optimizer), "opt.gir"));
  interp::Feeds feeds{{"x", ITensor::of({DType::F64, {3}}, kG)},
                      {"lr_in", ITensor::scalar(0.05, DType::F64)},
                      {"w", ITensor::of({DType::F64, {3}}, kW0)}};
  for (ValueId s : g.leaves(NodeKind::State)) feeds[g[s].name] = ITensor::zeros(g[s].type);
  std::vector<std::vector<double>> ws;
  for (int i = 0; i < steps; ++i) {
    interp::step(g, feeds);
    ws.push_back(feeds["w"].data);
  }
  return ws;
}

void check_same(const std::vector<std::vector<double>>& got, const std::vector<std::vector<double>>& expected) {
  REQUIRE(got.size() == expected.size());
  for (size_t s = 0; s < got.size(); ++s)
    for (size_t i = 0; i < 3; ++i) {
      CAPTURE(s);
      CAPTURE(i);
      CHECK(got[s][i] == doctest::Approx(expected[s][i]).epsilon(1e-12));
    }
}

}  // namespace

TEST_CASE("passes: sgd, with a number or an input as lr, and with clip_norm") {
  std::vector<std::vector<double>> expected;
  std::vector<double> w = kW0;
  for (int s = 0; s < 3; ++s) {
    for (size_t i = 0; i < 3; ++i) w[i] -= 0.1 * kG[i];
    expected.push_back(w);
  }
  check_same(run_steps("sgd(lr=0.1)", 3), expected);

  expected.clear();
  w = kW0;
  for (int s = 0; s < 2; ++s) {
    for (size_t i = 0; i < 3; ++i) w[i] -= 0.05 * kG[i];
    expected.push_back(w);
  }
  check_same(run_steps("sgd(lr=lr_in)", 2), expected);

  // ‖g‖ = sqrt(0.09 + 0.04 + 16) ≈ 4.016 > 1: g is scaled by 1 / (‖g‖ + 1e-6).
  double norm = std::sqrt(0.09 + 0.04 + 16.0), coef = 1.0 / (norm + 1e-6);
  expected.clear();
  w = kW0;
  for (size_t i = 0; i < 3; ++i) w[i] -= 0.1 * kG[i] * coef;
  expected.push_back(w);
  check_same(run_steps("sgd(lr=0.1, clip_norm=1.0)", 1), expected);
  // A norm below clip_norm leaves the gradient alone.
  expected.clear();
  w = kW0;
  for (size_t i = 0; i < 3; ++i) w[i] -= 0.1 * kG[i];
  expected.push_back(w);
  check_same(run_steps("sgd(lr=0.1, clip_norm=100)", 1), expected);
}

TEST_CASE("passes: momentum, plain and nesterov, as torch.optim.SGD") {
  for (bool nesterov : {false, true}) {
    CAPTURE(nesterov);
    std::vector<std::vector<double>> expected;
    std::vector<double> w = kW0, buf(3, 0.0);
    for (int s = 0; s < 4; ++s) {
      for (size_t i = 0; i < 3; ++i) {
        buf[i] = s == 0 ? kG[i] : 0.9 * buf[i] + kG[i];  // torch starts the buffer at g
        w[i] -= 0.1 * (nesterov ? kG[i] + 0.9 * buf[i] : buf[i]);
      }
      expected.push_back(w);
    }
    check_same(run_steps(fmt::format("momentum(lr=0.1, momentum=0.9, nesterov={})", nesterov), 4), expected);
  }
}

TEST_CASE("passes: adam and adamw, as torch.optim.Adam and AdamW") {
  for (bool decoupled : {false, true}) {
    CAPTURE(decoupled);
    const double lr = 0.01, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
    std::vector<std::vector<double>> expected;
    std::vector<double> w = kW0, m(3, 0.0), v(3, 0.0);
    for (int t = 1; t <= 4; ++t) {
      for (size_t i = 0; i < 3; ++i) {
        if (decoupled) w[i] *= 1 - lr * wd;
        m[i] = b1 * m[i] + (1 - b1) * kG[i];
        v[i] = b2 * v[i] + (1 - b2) * kG[i] * kG[i];
        double step_size = lr / (1 - std::pow(b1, t));
        double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + eps;
        w[i] -= step_size * m[i] / denom;
      }
      expected.push_back(w);
    }
    std::string opt = decoupled ? "adamw(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1)"
                                : "adam(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6)";
    check_same(run_steps(opt, 4), expected);
  }
}

// Coupled weight decay λ, torch.optim.SGD's and Adam's weight_decay: d = g + λ w, where g is the
// gradient after clip_grad_norm_ (which runs before optimizer.step, and sees the gradient alone);
// then SGD's buf = μ buf + d (d on the first step), nesterov d + μ buf, w -= lr d; Adam's moments
// of d. The reference is written here in f64 from torch's formulas (torch is not installed here:
// tests/fixtures has no weight_decay runs of sgd, momentum or adam).
TEST_CASE("passes: weight_decay of sgd, momentum, nesterov and adam, as torch.optim.SGD and Adam, with clip_norm too") {
  const double lr = 0.1, mu = 0.9, wd = 0.2, b1 = 0.8, b2 = 0.95, eps = 1e-6, clip = 1.0;
  const double norm = std::sqrt(0.09 + 0.04 + 16.0);  // ‖g‖ ≈ 4.016: clip_norm=1 scales g
  for (const char* kind : {"sgd", "momentum", "nesterov", "adam"})
    for (bool clipped : {false, true}) {
      CAPTURE(kind);
      CAPTURE(clipped);
      const std::string k = kind;
      const double coef = clipped ? std::min(1.0, clip / (norm + 1e-6)) : 1.0;
      std::vector<std::vector<double>> expected;
      std::vector<double> w = kW0, buf(3, 0.0), m(3, 0.0), v(3, 0.0);
      for (int t = 1; t <= 4; ++t) {
        for (size_t i = 0; i < 3; ++i) {
          double d = kG[i] * coef + wd * w[i];
          if (k == "sgd") {
            w[i] -= lr * d;
          } else if (k == "adam") {
            m[i] = b1 * m[i] + (1 - b1) * d;
            v[i] = b2 * v[i] + (1 - b2) * d * d;
            double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + eps;
            w[i] -= lr / (1 - std::pow(b1, t)) * m[i] / denom;
          } else {
            buf[i] = t == 1 ? d : mu * buf[i] + d;
            w[i] -= lr * (k == "nesterov" ? d + mu * buf[i] : buf[i]);
          }
        }
        expected.push_back(w);
      }
      std::string opt = k == "sgd"        ? "sgd(lr=0.1, weight_decay=0.2"
                        : k == "momentum" ? "momentum(lr=0.1, momentum=0.9, weight_decay=0.2"
                        : k == "nesterov" ? "momentum(0.1, 0.9, true, weight_decay=0.2"  // the signature by position
                                          : "adam(lr=0.1, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.2";
      check_same(run_steps(opt + (clipped ? ", clip_norm=1.0)" : ")"), 4), expected);
    }
}

// weight_decay=0, written or left out, lowers to the graph of today: no node is added.
TEST_CASE("passes: weight_decay=0 leaves the training graph as it is without it, and adamw keeps its own") {
  for (std::string opt : {"sgd(lr=0.1", "momentum(lr=0.1, momentum=0.9", "momentum(0.1, 0.9, true", "adam(lr=0.01"}) {
    CAPTURE(opt);
    Graph without = train_graph(load_spec(linear_spec(opt + ")"), "opt.gir"));
    Graph zero = train_graph(load_spec(linear_spec(opt + ", weight_decay=0)"), "opt.gir"));
    CHECK(print_spec(zero) == print_spec(without));
    Graph decayed = train_graph(load_spec(linear_spec(opt + ", weight_decay=0.01)"), "opt.gir"));
    CHECK(decayed.size() == without.size() + 3);  // the constant, mul(w, λ) and the add
  }
  Graph spec = load_spec(linear_spec("adam(lr=0.001, weight_decay=1e-4)"), "opt.gir");
  CHECK(spec.minimize->optimizer.args.get("weight_decay").as_number() == 1e-4);
  CHECK_FALSE(load_spec(linear_spec("adam(lr=0.001)"), "opt.gir").minimize->optimizer.args.has("weight_decay"));
  CHECK(load_spec(linear_spec("adamw(lr=0.001)"), "opt.gir").minimize->optimizer.args.get("weight_decay").as_number() ==
        0.01);
}

namespace {
interp::Feeds random_feeds(const Graph& g, uint32_t seed);
}

TEST_CASE("passes: the loss is the first output of a training graph, even when the spec outputs it later") {
  Graph g = train_graph(load_spec("param w : f32[3]\noutput p = neg(w)\nloss = sum(square(w))\noutput loss\n"
                                  "minimize loss with sgd(lr=0.1)\n", "first.gir"));
  REQUIRE(g.outputs.size() == 2);
  CHECK(g[g.outputs[0].value].name == "loss");
  CHECK(g[g.outputs[1].value].name == "p");
}

TEST_CASE("passes: the training graph is a spec: state and assign lines, and it parses back") {
  for (const std::string& spec : test::sample_specs()) {
    CAPTURE(spec);
    Graph train = train_graph(load_spec_file(test::source_path(spec)));
    CHECK_FALSE(train.minimize);
    CHECK(train.assigns.size() >= train.leaves(NodeKind::Param).size());
    std::string printed = print_spec(train);
    CHECK(printed.find("\nassign ") != std::string::npos);
    Graph again = load_spec(printed, "train.gir");
    CHECK(print_spec(again) == printed);
    CHECK(print_spec(train_graph(again)) == printed);  // compiling it again changes nothing
    if (spec.find("cnn") == std::string::npos) {       // the same numbers (the CNN is slow here)
      interp::Feeds a = random_feeds(train, 11), b = a;
      interp::step(train, a);
      interp::step(again, b);
      for (const auto& [name, t] : a) CHECK(t.data == b.at(name).data);
    }
    Graph simple = simplified_graph(again);
    CHECK(verify(simple).empty());
    CHECK(print_spec(load_spec(print_spec(simple), "simple.gir")) == print_spec(simple));
  }
}

namespace {

// Inputs and params uniform in [-0.5, 0.5], labels in [0, 10), states zero.
interp::Feeds random_feeds(const Graph& g, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  interp::Feeds feeds;
  for (const Node& n : g.nodes) {
    if (n.kind != NodeKind::Input && n.kind != NodeKind::Param && n.kind != NodeKind::State) continue;
    ITensor t = ITensor::zeros(n.type);
    if (n.type.dtype == DType::I32) {
      for (double& v : t.data) v = static_cast<double>(rng() % 10);
    } else if (n.kind != NodeKind::State) {
      for (double& v : t.data) v = u(rng);
    }
    feeds[n.name] = ITensor::of(n.type, t.data);
  }
  return feeds;
}

}  // namespace

TEST_CASE("passes: simplify shrinks the seed's training graph and keeps its numbers") {
  Graph train = train_graph(load_spec_file(test::source_path("samples/specs/seed_mlp.gir")));
  Graph simple = simplified_graph(train);
  MESSAGE("seed training graph: ", train.size(), " nodes, simplified: ", simple.size());
  CHECK(simple.size() * 5 < train.size() * 4);  // at least a fifth fewer nodes
  interp::Feeds a = random_feeds(train, 3), b = a;
  for (int s = 0; s < 3; ++s) {
    std::vector<ITensor> va = interp::step(train, a), vb = interp::step(simple, b);
    CHECK(va[static_cast<size_t>(train.outputs[0].value)].data == vb[static_cast<size_t>(simple.outputs[0].value)].data);
  }
  for (const auto& [name, t] : a) {
    CAPTURE(name);
    CHECK(t.data == b.at(name).data);  // bit for bit: simplify only removes work
  }
}

TEST_CASE("passes: simplify's rewrites, one by one") {
  Graph g = simplified_graph(load_spec(R"(
input x : f32[2, 3]
param w : f32[2, 3]
a = add(mul(w, 1), 0)
b = transpose(transpose(x, perm=[1, 0]), perm=[1, 0])
c = reshape(reshape(x, shape=[3, 2]), shape=[6])
d = add(w, broadcast_to(2, shape=[2, 3]))
e = neg(neg(w))
f = mul(add(1, 2), x)
g1 = add(w, x)
g2 = add(w, x)
dead = exp(w)
loss = sum(add(add(add(a, b), add(reshape(c, shape=[2, 3]), d)), add(add(e, f), add(g1, g2))))
minimize loss with sgd(lr=0.1)
)", "rewrites.gir"));
  std::string text = print_spec(g);
  CAPTURE(text);
  CHECK(text.find("transpose(") == std::string::npos);  // transpose of a transpose is x
  CHECK(text.find("neg(") == std::string::npos);        // -(-w) is w
  CHECK(text.find("exp(") == std::string::npos);        // dead code
  CHECK(text.find("d : f32[2, 3] = add(w, 2.0)") != std::string::npos);  // the constant broadcasts anyway
  CHECK(text.find("mul(3.0, x)") != std::string::npos);  // 1 + 2 folded
  CHECK(text.find("g2 :") == std::string::npos);         // add(w, x) computed once
  CHECK(text.find("reshape(x, shape=[2, 3])") == std::string::npos);  // reshape back to x's shape is x
}

// predict returns outputs by their names: an output that equals another value keeps its own
// (was: `output b` merged into `output a` came back as a second "a", and `output c = add(h, 0)`
// as "h").
TEST_CASE("passes: simplify keeps every output's name when it equals another value") {
  const char* text = R"(model m
input x : f32[4, 3]
input t : f32[4, 2]
param w : f32[3, 2] = ones
h = matmul(x, w)
output a = relu(h)
output b = relu(h)
output c = add(h, 0)
loss = mse(a, t)
minimize loss with sgd(lr=0.1)
)";
  Graph g = load_spec(text, "names.gir");
  Graph simple = simplified_graph(g);
  std::vector<std::string> names;
  for (const Output& o : simple.outputs) names.push_back(simple[o.value].name);
  CHECK(names == std::vector<std::string>{"loss", "a", "b", "c"});  // the step's loss first

  Model model = compile(g);
  Session s(model, {.seed = 1, .threads = 1});
  std::map<std::string, Tensor> in = random_inputs(model.spec, 5);
  const Outputs& out = s.predict(test::views(in));
  CHECK(out.names() == std::vector<std::string>{"a", "b", "c"});
  CHECK(out["a"] == out["b"]);
  for (int64_t i = 0; i < out["c"].numel(); ++i) CHECK(out["a"].as<float>()[i] == std::max(out["c"].as<float>()[i], 0.0f));
}

TEST_CASE("passes: the interpreter trains the seed's model: many steps lower the loss") {
  Graph train = simplified_graph(load_spec_file(test::source_path("samples/specs/seed_mlp.gir")));
  interp::Feeds feeds = random_feeds(train, 7);
  ValueId loss = train.outputs[0].value;
  double first = 0, last = 0;
  for (int s = 0; s < 30; ++s) {
    double l = interp::step(train, feeds)[static_cast<size_t>(loss)].data[0];
    if (s == 0) first = l;
    last = l;
  }
  MESSAGE("loss on one batch: ", first, " -> ", last, " after 30 Adam steps");
  CHECK(last < 0.7 * first);
  CHECK(feeds.at("adam.step").data[0] == 30);
}
