// conv2d, maxpool2d and avgpool2d through the JIT's vector kernels (codegen/ConvEmitters.cpp),
// on the shapes that exercise their edges: strides 1 to 3, paddings 0 to 2 (also wider than the
// kernel), channel counts 1, 3, 5 and 16, odd and wide images (row and column chunks in loops),
// overlapping windows and windows that leave gaps. Each against the interpreter (predict, three
// Adam steps, the params after them; f32 within 1e-5, f64 within 1e-12), then each op's
// gradient through the JIT against central differences of the JIT's own loss, in f64, and the
// interpreter's gradient check on the same shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "JitUtil.h"
#include "TestUtil.h"

namespace gradc {

namespace {

struct Conv {
  int64_t n, c, h, w, o, kh, kw;
  std::vector<int64_t> stride, padding;
};

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

std::string list(const std::vector<int64_t>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); }

// loss = sum(EXPR * r), so that every element of EXPR gets its own weight; Adam moves the params.
std::string weighted(const std::string& decls, const std::string& expr, const Shape& shape) {
  return decls + fmt::format("input r : f32{}\nout = {}\nloss = sum(mul(out, r))\noutput out\n"
                             "minimize loss with adam(lr=0.01)\n",
                             list(shape), expr);
}

// The conv alone, or inside `epilogue` (its "{}"), which reads a param d : [O, 1, 1].
std::string conv_spec(const Conv& c, const std::string& epilogue = "{}") {
  Shape y{c.n, c.o, out_size(c.h, c.kh, c.stride[0], c.padding[0]), out_size(c.w, c.kw, c.stride[1], c.padding[1])};
  std::string decls = fmt::format("param x : f32[{}, {}, {}, {}]\nparam k : f32[{}, {}, {}, {}]\n", c.n, c.c, c.h, c.w, c.o,
                                  c.c, c.kh, c.kw);
  if (epilogue != "{}") decls += fmt::format("param d : f32[{}, 1, 1]\n", c.o);
  std::string conv = fmt::format("conv2d(x, k, stride={}, padding={})", list(c.stride), list(c.padding));
  return weighted(decls, fmt::vformat(epilogue, fmt::make_format_args(conv)), y);
}

// The Conv kernels of the spec's training step: the most members any has (1: no epilogue), and
// whether any stores its raw conv.
struct ConvKernels {
  size_t most_members = 0;
  bool raw_stored = false;
};
ConvKernels conv_kernels(const std::string& spec) {
  ConvKernels out;
  for (const Kernel& k : train_kernels(load_spec(spec, "conv.gir")).kernels) {
    if (k.kind != KernelKind::Conv) continue;
    out.most_members = std::max(out.most_members, k.members.size());
    out.raw_stored = out.raw_stored || std::find(k.outputs.begin(), k.outputs.end(), k.members[0]) != k.outputs.end();
  }
  return out;
}

std::vector<Conv> conv_cases() {
  return {
      {2, 3, 7, 9, 5, 3, 3, {1, 1}, {1, 1}},     // odd sizes, "same" padding
      {1, 1, 7, 9, 16, 3, 3, {1, 1}, {0, 0}},    // one input channel (the CNN's first layer)
      {2, 16, 7, 9, 3, 5, 5, {1, 1}, {2, 2}},    // 5x5, many input channels
      {1, 5, 7, 9, 16, 2, 3, {1, 1}, {0, 2}},    // 2x3, padding on one axis only
      {2, 3, 7, 9, 5, 3, 3, {2, 2}, {1, 1}},     // stride 2
      {1, 5, 9, 7, 3, 2, 3, {2, 2}, {0, 2}},     // stride 2, 2x3
      {1, 3, 8, 7, 4, 2, 2, {3, 3}, {0, 1}},     // stride 3 > kernel: inputs no output reads
      {1, 2, 11, 9, 3, 3, 3, {1, 2}, {2, 0}},    // strides and paddings differ per axis
      {1, 3, 5, 6, 2, 1, 1, {1, 1}, {1, 1}},     // padding wider than the kernel
      {1, 2, 2, 3, 3, 3, 3, {1, 1}, {1, 1}},     // kernel as large as the padded input
      {1, 2, 20, 5, 6, 3, 3, {1, 1}, {1, 1}},    // tall: interior row tiles in a loop
      {1, 2, 3, 70, 3, 3, 3, {1, 1}, {1, 1}},    // wide: interior column chunks in a loop
      {1, 2, 4, 70, 2, 3, 3, {2, 2}, {1, 1}},    // wide with stride 2 (strided loads)
      {1, 16, 14, 14, 16, 3, 3, {1, 1}, {1, 1}},  // the CNN's second layer, smaller
  };
}

struct Pool {
  int64_t n, c, h, w;
  std::vector<int64_t> kernel, stride;
};

std::vector<Pool> pool_cases() {
  return {
      {2, 3, 7, 9, {2, 2}, {2, 2}},    // odd sizes: the last row and column are in no window
      {1, 5, 7, 9, {3, 3}, {2, 2}},    // overlapping windows
      {1, 3, 7, 9, {3, 2}, {1, 3}},    // overlapping rows, gaps between columns
      {1, 1, 6, 70, {2, 2}, {2, 2}},   // wide: chunks in a loop
      {2, 16, 8, 8, {2, 2}, {2, 2}},   // the CNN's pooling
      {1, 2, 5, 37, {1, 3}, {1, 1}},   // stride 1 along the row
  };
}

std::string pool_spec(const Pool& p, const std::string& op) {
  Shape y{p.n, p.c, (p.h - p.kernel[0]) / p.stride[0] + 1, (p.w - p.kernel[1]) / p.stride[1] + 1};
  // relu first: pooling sees many equal zeros, so ties pick the first maximum, as the interpreter.
  return weighted(fmt::format("param x : f32[{}, {}, {}, {}]\n", p.n, p.c, p.h, p.w),
                  fmt::format("{}(relu(x), kernel={}, stride={})", op, list(p.kernel), list(p.stride)), y);
}

std::string as_f64(std::string spec) {
  for (size_t at = spec.find("f32"); at != std::string::npos; at = spec.find("f32", at)) spec.replace(at, 3, "f64");
  return spec;
}

double check_against_interpreter(const std::string& text, double tol) { return test::check_against_interpreter(text, tol, "conv.gir"); }

// The gradient of every param through the JIT (a step of sgd with lr = 1 moves p to p - g)
// against central differences of the JIT's loss (steps with lr = 0), in f64: a few elements
// one by one and a few random directions. Returns the worst error relative to |g|.
double check_jit_gradient(const std::string& decls, const std::string& expr, const Shape& shape) {
  std::string text = as_f64(decls + fmt::format("input r : f32{}\ninput lr : f32[]\nloss = sum(mul(tanh({}), r))\n"
                                                "minimize loss with sgd(lr=lr)\n",
                                                list(shape), expr));
  Model model = compile_string(text, "grad.gir");
  Session session(model);
  test::random_params(session, 3);
  std::map<std::string, Tensor> inputs = random_inputs(model.spec, 4);
  auto loss_at = [&](double lr) {
    inputs["lr"] = Tensor::of<double>({}, {lr});
    return session.step(test::views(inputs));
  };
  std::mt19937_64 rng(5);
  double worst = 0;
  std::map<std::string, Tensor> before;
  for (const std::string& name : session.param_names()) before[name] = session.param(name);
  loss_at(1.0);
  std::map<std::string, Tensor> after;
  for (const std::string& name : session.param_names()) {
    after[name] = session.param(name);
    session.param(name) = before[name];
  }
  for (const std::string& name : session.param_names()) {
    double* w = session.param(name).as<double>();
    const double* moved = after[name].as<double>();
    std::vector<double> start(w, w + session.param(name).numel()), grad(start.size());
    for (size_t i = 0; i < grad.size(); ++i) grad[i] = start[i] - moved[i];
    double norm = 0;
    for (double g : grad) norm += g * g;
    norm = std::sqrt(norm);
    REQUIRE(norm > 0);
    const double h = 1e-6;
    auto probe = [&](const std::vector<double>& dir) {
      double dir_norm = 0, expected = 0;
      for (size_t i = 0; i < dir.size(); ++i) {
        dir_norm += dir[i] * dir[i];
        expected += grad[i] * dir[i];
      }
      for (size_t i = 0; i < dir.size(); ++i) w[i] = start[i] + h * dir[i];
      double up = loss_at(0.0);
      for (size_t i = 0; i < dir.size(); ++i) w[i] = start[i] - h * dir[i];
      double down = loss_at(0.0);
      std::copy(start.begin(), start.end(), w);
      double err = std::fabs((up - down) / (2 * h) - expected) / (norm * std::sqrt(dir_norm));
      INFO(name, ": finite difference ", (up - down) / (2 * h), " vs the JIT's ", expected);
      CHECK(err < 1e-6);
      worst = std::max(worst, err);
    };
    for (int e = 0; e < 4; ++e) {  // single elements, spread over the tensor
      std::vector<double> dir(start.size(), 0.0);
      dir[static_cast<size_t>(e) * (dir.size() - 1) / 3] = 1.0;
      probe(dir);
    }
    for (int d = 0; d < 2; ++d) {  // every element at once
      std::vector<double> dir(start.size());
      for (double& v : dir) v = std::normal_distribution<double>()(rng);
      probe(dir);
    }
  }
  return worst;
}

void check_interpreter_gradient(const std::string& spec) {
  std::vector<ParamCheck> results = check_gradients(load_spec(spec, "grad.gir"));
  REQUIRE(!results.empty());
  for (const ParamCheck& r : results) {
    CAPTURE(r.param);
    CHECK(r.probes > 0);
    CHECK(r.max_rel_error < 1e-6);
  }
}

}  // namespace

TEST_CASE("jit conv: conv2d equals the interpreter over strides, paddings, channels and odd sizes") {
  double worst32 = 0, worst64 = 0;
  for (const Conv& c : conv_cases()) {
    std::string spec = conv_spec(c);
    CAPTURE(spec);
    ConvKernels kernels = conv_kernels(spec);  // the conv is the output, the loss its epilogue
    CHECK(kernels.most_members >= 3);
    CHECK(kernels.raw_stored);
    // f32: the sums' order depends on the host's vector width (the worst was 1.01e-5 on an
    // AVX2 host, 8 lanes; under 1e-5 on AVX-512 ones); an error of the kernels is far larger.
    worst32 = std::max(worst32, check_against_interpreter(spec, 3e-5));
    worst64 = std::max(worst64, check_against_interpreter(as_f64(spec), 1e-12));
  }
  MESSAGE("conv2d: worst relative error f32 ", worst32, ", f64 ", worst64);
}

TEST_CASE("jit conv: conv2d with a fused epilogue (bias and relu, a scale and tanh) equals the interpreter") {
  // relu(conv + d), its mask included; tanh(conv · d), with d's gradient (a sum over the conv's
  // domain that reads the raw conv). Both also take the weighted loss's product and sum, and
  // neither stores its raw conv (the plain conv above does: it is the graph's output).
  double worst32 = 0, worst64 = 0;
  for (const char* epilogue : {"relu(add({}, d))", "tanh(mul({}, d))"})
    for (const Conv& c : conv_cases()) {
      std::string spec = conv_spec(c, epilogue);
      CAPTURE(spec);
      ConvKernels kernels = conv_kernels(spec);
      CHECK(kernels.most_members >= 4);
      CHECK(!kernels.raw_stored);
      // f32: the sums' order depends on the host's vector width (the worst was 1.01e-5 on an
    // AVX2 host, 8 lanes; under 1e-5 on AVX-512 ones); an error of the kernels is far larger.
    worst32 = std::max(worst32, check_against_interpreter(spec, 3e-5));
      worst64 = std::max(worst64, check_against_interpreter(as_f64(spec), 1e-12));
    }
  MESSAGE("conv2d with epilogues: worst relative error f32 ", worst32, ", f64 ", worst64);
}

// A random chain of values over one conv output domain, [2, 4, 7, 9]: convs of earlier values,
// biases, activations, products and sums over the channels, so that epilogues of many shapes
// meet convs that read them (fusion must keep each conv's operands out of its own kernel).
std::string random_conv_spec(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(std::uniform_int_distribution<size_t>(0, n - 1)(rng)); };
  std::string decls = "param x : f32[2, 3, 7, 9]\nparam k1 : f32[4, 3, 3, 3]\nparam k2 : f32[4, 4, 3, 3]\n"
                      "param d : f32[4, 1, 1]\nparam v : f32[2, 4, 7, 9]\nc0 = relu(add(conv2d(x, k1, padding=1), d))\n";
  std::vector<std::string> values = {"c0", "v"};
  for (int i = 0; i < 6; ++i) {
    const std::string &a = values[pick(values.size())], &b = values[pick(values.size())];
    std::string e;
    switch (pick(6)) {
      case 0: e = fmt::format("conv2d(tanh({}), k2, padding=1)", a); break;
      case 1: e = fmt::format("relu(add({}, d))", a); break;
      case 2: e = fmt::format("tanh(mul({}, d))", a); break;
      case 3: e = fmt::format("mul({}, sigmoid({}))", a, b); break;
      case 4: e = fmt::format("tanh(mul({}, sum({}, axes=[1], keepdims=true)))", a, b); break;
      default: e = fmt::format("sub({}, conv2d(sigmoid({}), k2, stride=1, padding=1))", a, b); break;
    }
    decls += fmt::format("h{} = {}\n", i, e);
    values.push_back(fmt::format("h{}", i));
  }
  // A small sgd step rather than weighted()'s Adam: Adam's first steps move each param by about
  // lr whatever its gradient's size, and gradients through chains this deep reach the hundreds,
  // so either would let f32 rounding decide which side of a relu's kink a value lands on.
  return decls + fmt::format("input r : f32[2, 4, 7, 9]\nout = add({}, c0)\nloss = sum(mul(out, r))\noutput out\n"
                             "minimize loss with sgd(lr=0.0001)\n",
                             values.back());
}

TEST_CASE("jit conv: random graphs of convs and epilogues equal the interpreter") {
  for (uint64_t seed = 0; seed < 12; ++seed) {
    std::string spec = random_conv_spec(seed);
    CAPTURE(spec);
    CHECK(conv_kernels(spec).most_members >= 3);  // c0's conv with its bias and relu, at least
    check_against_interpreter(spec, 1e-5);
    check_against_interpreter(as_f64(spec), 1e-12);
  }
}

TEST_CASE("jit conv: maxpool2d and avgpool2d equal the interpreter (odd sizes, overlaps, gaps, ties)") {
  double worst32 = 0, worst64 = 0;
  for (const Pool& p : pool_cases())
    for (std::string op : {"maxpool2d", "avgpool2d"}) {
      std::string spec = pool_spec(p, op);
      CAPTURE(spec);
      // f32: the sums' order depends on the host's vector width (the worst was 1.01e-5 on an
    // AVX2 host, 8 lanes; under 1e-5 on AVX-512 ones); an error of the kernels is far larger.
    worst32 = std::max(worst32, check_against_interpreter(spec, 3e-5));
      worst64 = std::max(worst64, check_against_interpreter(as_f64(spec), 1e-12));
    }
  MESSAGE("pooling: worst relative error f32 ", worst32, ", f64 ", worst64);
}

TEST_CASE("jit conv: the adjoints as ops of their own equal the interpreter") {
  // What autodiff emits, but written out: strides, paddings and window shapes the CNN lacks.
  std::string spec =
      "param w : f32[4, 3, 3, 2]\nparam x : f32[2, 3, 9, 7]\nparam dy : f32[2, 4, 5, 4]\nparam dp : f32[2, 3, 4, 3]\n"
      "param dq : f32[2, 3, 3, 2]\n"
      "output a = conv2d_input_grad(dy, w, stride=2, padding=1, shape=[2, 3, 9, 7])\n"
      "output b = conv2d_weight_grad(x, dy, stride=2, padding=1, kernel=[3, 2])\n"
      "output c = maxpool2d_grad(x, dp, kernel=[3, 3], stride=[2, 2])\n"
      "output d = avgpool2d_grad(dq, kernel=[3, 2], stride=[3, 3], shape=[2, 3, 9, 7])\n"
      "output e = conv2d_input_grad(dy, w, stride=[1, 2], padding=[0, 2], shape=[2, 3, 7, 5])\n";
  check_against_interpreter(spec, 1e-5);
  check_against_interpreter(as_f64(spec), 1e-12);
}

TEST_CASE("jit conv: gradients of conv2d, maxpool2d and avgpool2d through the JIT match finite differences") {
  double worst = 0;
  worst = std::max(worst, check_jit_gradient("param x : f32[2, 3, 7, 9]\nparam k : f32[5, 3, 3, 3]\n",
                                             "conv2d(x, k, stride=1, padding=1)", {2, 5, 7, 9}));
  worst = std::max(worst, check_jit_gradient("param x : f32[1, 5, 9, 7]\nparam k : f32[4, 5, 2, 3]\n",
                                             "conv2d(x, k, stride=2, padding=[0, 2])", {1, 4, 4, 5}));
  worst = std::max(worst, check_jit_gradient("param x : f32[2, 3, 7, 9]\nparam k : f32[5, 3, 3, 3]\nparam d : f32[5, 1, 1]\n",
                                             "sigmoid(add(conv2d(x, k, stride=1, padding=1), d))", {2, 5, 7, 9}));
  worst = std::max(worst, check_jit_gradient("param x : f32[2, 3, 7, 9]\n", "maxpool2d(x, kernel=3, stride=2)", {2, 3, 3, 4}));
  worst = std::max(worst, check_jit_gradient("param x : f32[2, 3, 7, 9]\n", "maxpool2d(x, kernel=2)", {2, 3, 3, 4}));
  worst = std::max(worst, check_jit_gradient("param x : f32[2, 3, 7, 9]\n", "avgpool2d(x, kernel=[2, 3], stride=[1, 2])",
                                             {2, 3, 6, 4}));
  MESSAGE("JIT gradients against finite differences: worst relative error ", worst);
}

TEST_CASE("jit conv: the interpreter's gradient check passes on the same shapes") {
  auto loss = [](const std::string& decls, const std::string& expr, const Shape& shape) {
    return decls + fmt::format("input r : f32{}\nloss = sum(mul({}, r))\nminimize loss with sgd(lr=0.1)\n", list(shape), expr);
  };
  check_interpreter_gradient(loss("param x : f32[1, 5, 9, 7]\nparam k : f32[4, 5, 2, 3]\n",
                                  "conv2d(x, k, stride=2, padding=[0, 2])", {1, 4, 4, 5}));
  check_interpreter_gradient(loss("param x : f32[1, 3, 8, 7]\nparam k : f32[4, 3, 2, 2]\n",
                                  "conv2d(x, k, stride=3, padding=1)", {1, 4, 3, 3}));
  check_interpreter_gradient(loss("param x : f32[2, 3, 7, 9]\n", "maxpool2d(x, kernel=3, stride=2)", {2, 3, 3, 4}));
  check_interpreter_gradient(loss("param x : f32[2, 3, 7, 9]\n", "avgpool2d(x, kernel=[2, 3], stride=[1, 2])", {2, 3, 6, 4}));
}

}  // namespace gradc
