// The gradient checker (`gradc check`, gradc::check_gradients): its step, its absolute and
// relative errors, its two engines (the JIT-ed f64 model and the interpreter), that it fails a
// wrong gradient, and that it refuses a model too big for memory. Also the one memory breakdown
// that dump, bench and the memory-fit check share, and the plan of outputs that are views.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "TestUtil.h"
#include "driver/Memory.h"
#include "gradc/gradc.h"
#include "interp/Interpreter.h"

using namespace gradc;

namespace {

Graph sample(const std::string& name) { return load_spec_file(test::source_path("samples/specs/" + name)); }

// A small CNN: conv, relu, maxpool (kinks), a dense layer, cross-entropy.
const char* kSmallCnn = R"(model small_cnn
input x : f32[2, 1, 6, 6]
input y : i32[2]
param c : f32[3, 1, 3, 3] = he_uniform
param cb : f32[3] = zeros
param w : f32[12, 4] = glorot_uniform
param b : f32[4] = zeros
h = maxpool2d(relu(add(conv2d(x, c, stride=[1, 1], padding=[0, 0]), reshape(cb, shape=[1, 3, 1, 1]))), kernel=[2, 2], stride=[2, 2])
logits = add(matmul(reshape(h, shape=[2, 12]), w), b)
loss = softmax_cross_entropy(logits, y)
minimize loss with sgd(lr=0.1)
)";

// Two kinked ops read one value (an L1 activity penalty beside the relu; maximum(h, h)): the
// checker wants that value for each mask ("has no output 'check.value...'" when it asked the
// JIT for it twice).
const char* kSharedKinks = R"(model l1act
input x : f32[8, 6]
input y : i32[8]
param w1 : f32[6, 5] = he_uniform
param b1 : f32[5] = zeros
param w2 : f32[5, 3] = glorot_uniform
z = add(matmul(x, w1), b1)
logits = matmul(maximum(relu(z), relu(z)), w2)
loss = add(softmax_cross_entropy(logits, y), mul(mean(abs(z)), 0.01))
minimize loss with adam(lr=0.001)
)";

}  // namespace

TEST_CASE("check: the step is 10 cbrt(eps) max(1, max |w|) per param unless --step gives one") {
  const double expected = 10 * std::cbrt(std::numeric_limits<double>::epsilon());  // random params are within 1
  for (const ParamCheck& r : check_gradients(sample("seed_mlp.gir"))) {
    CAPTURE(r.param);
    CHECK(r.step == doctest::Approx(expected).epsilon(1e-12));
  }
  for (const ParamCheck& r : check_gradients(sample("seed_mlp.gir"), {.step = 1e-4})) CHECK(r.step == 1e-4);
  test::CommandResult cli = test::run_gradc("check " + test::source_path("samples/specs/seed_mlp.gir") + " --step 2e-5");
  CHECK(cli.exit_code == 0);
  CHECK(cli.out.find("2.00e-05") != std::string::npos);
  CHECK(test::run_gradc("check " + test::source_path("samples/specs/seed_mlp.gir") + " --step 0").exit_code == 1);
  CHECK(test::run_gradc("check " + test::source_path("samples/specs/seed_mlp.gir") + " --step -1").exit_code == 1);
}

// The 784-64-784 autoencoder "failed" at h = 1e-6 (rounding noise in a loss summed over 50,176
// squares, its gradient right); the chosen h passes it, by the command users run.
TEST_CASE("check: the autoencoder passes with the chosen step, where h = 1e-6 gave a false failure") {
  std::string spec = test::source_path("samples/specs/autoencoder.gir");
  test::CommandResult fixed = test::run_gradc("check " + spec + " --step 1e-6");
  CHECK(fixed.exit_code == 1);
  CHECK(fixed.out.find("FAIL") != std::string::npos);
  test::CommandResult chosen = test::run_gradc("check " + spec);
  CHECK(chosen.exit_code == 0);
  CHECK(chosen.out.find("gradc check: all 4 params within 1e-06") != std::string::npos);
  for (const ParamCheck& r : check_gradients(sample("autoencoder.gir"))) {
    CAPTURE(r.param);
    CHECK(r.probes == 8);
    CHECK(r.max_rel_error < 1e-6);
  }
}

TEST_CASE("check: a wrong gradient fails, by about as much as it is wrong, in both columns") {
  for (double scale : {1.001, 0.9, -1.0, 0.0}) {
    CAPTURE(scale);
    const double wrong = std::fabs(scale - 1);
    std::vector<ParamCheck> right = check_gradients(sample("seed_mlp.gir"));
    std::vector<ParamCheck> bad = check_gradients(sample("seed_mlp.gir"), {.gradient_scale = scale});
    REQUIRE(bad.size() == right.size());
    for (size_t i = 0; i < bad.size(); ++i) {
      CAPTURE(bad[i].param);
      CHECK(right[i].max_rel_error < 1e-6);
      CHECK(bad[i].max_rel_error > 1e-6);  // gradc check's default tolerance: this fails
      // Relative to the scale of autodiff's gradient (its largest element, |g| |v| for a
      // direction): at most the fraction the gradient is off, and at least a tenth of it.
      if (scale != 0) {
        CHECK(bad[i].max_rel_error <= wrong / std::fabs(scale) * (1 + 1e-3) + 1e-8);
        CHECK(bad[i].max_rel_error >= wrong / std::fabs(scale) / 10);
      }
      CHECK(bad[i].max_abs_error > right[i].max_abs_error);
      CHECK(bad[i].max_abs_error >= bad[i].max_rel_error * 1e-8);  // absolute: the gradient's own units
    }
  }
}

// The mean of softmax rows is 1/C whatever p is: the true gradient is 0, autodiff's is rounding
// (1e-17), and the difference quotient's rounding noise (eps |L| / h, 5e-13) was a 4.6e-5
// relative error against kTiny, a FAIL. A gradient that is wrong by as little as 1e-6 of a real
// one still fails (the wrong-gradient test below).
TEST_CASE("check: a zero gradient passes: the quotient's rounding noise is not an error") {
  Graph g = load_spec("model z\ninput x : f32[4, 3]\nparam p : f32[3, 5] = glorot_uniform\n"
                      "loss = mean(softmax(matmul(x, p), axis=1))\nminimize loss with sgd(lr=0.1)\n",
                      "zero.gir");
  for (bool interpreter : {false, true}) {
    std::vector<ParamCheck> r = check_gradients(g, {.seed = 3, .interpreter = interpreter});
    REQUIRE(r.size() == 1);
    CHECK(r[0].probes > 0);
    CHECK(r[0].max_abs_error < 1e-10);
    CHECK(r[0].max_rel_error < 1e-6);
  }
}

TEST_CASE("check: the JIT-ed f64 model and the interpreter give the same errors") {
  for (const std::string& text : {test::read_file(test::source_path("samples/specs/seed_mlp.gir")),
                                  test::read_file(test::source_path("samples/specs/regression.gir")),
                                  std::string(kSmallCnn), std::string(kSharedKinks)}) {
    Graph g = load_spec(text, "check.gir");
    CAPTURE(g.name);
    std::vector<ParamCheck> jit = check_gradients(g, {.seed = 3});
    std::vector<ParamCheck> interp = check_gradients(g, {.seed = 3, .interpreter = true});
    REQUIRE(jit.size() == interp.size());
    for (size_t i = 0; i < jit.size(); ++i) {
      CAPTURE(jit[i].param);
      CHECK(jit[i].param == interp[i].param);
      CHECK(jit[i].probes == interp[i].probes);  // the same probes, the same kinks found
      CHECK(jit[i].kinks == interp[i].kinks);
      CHECK(jit[i].step == interp[i].step);
      CHECK(jit[i].max_rel_error < 1e-6);
      CHECK(interp[i].max_rel_error < 1e-6);
      // Both are f64 rounding noise of a difference quotient: equal to far below the tolerance.
      CHECK(std::fabs(jit[i].max_rel_error - interp[i].max_rel_error) < 1e-8);
    }
  }
  test::CommandResult cli = test::run_gradc("check " + test::source_path("samples/specs/seed_mlp.gir") + " --interpreter");
  CHECK(cli.exit_code == 0);
}

TEST_CASE("check: the report has the step, absolute and relative error columns, and FAIL exits 1") {
  std::string spec = test::source_path("samples/specs/seed_mlp.gir");
  test::CommandResult ok = test::run_gradc("check " + spec);
  CHECK(ok.exit_code == 0);
  for (const char* column : {"step", "max abs error", "max rel error"}) CHECK(ok.out.find(column) != std::string::npos);
  test::CommandResult tight = test::run_gradc("check " + spec + " --tol 1e-30");
  CHECK(tight.exit_code == 1);
  CHECK(tight.out.find("FAIL") != std::string::npos);
  CHECK(tight.err.find("params above the tolerance") != std::string::npos);
}

TEST_CASE("check: a model too big for memory is refused as train refuses it, with the same breakdown") {
  // 784 x 2^26 weights: 210 GB in f32, twice that in f64.
  std::string path = test::write_temp("huge.gir", R"(model huge
input x : f32[64, 784]
input y : i32[64]
param w1 : f32[784, 67108864] = glorot_uniform
param w2 : f32[67108864, 10] = glorot_uniform
logits = matmul(relu(matmul(x, w1)), w2)
loss = softmax_cross_entropy(logits, y)
output probs = softmax(logits, axis=1)
minimize loss with sgd(lr=0.1)
)");
  for (const char* cmd : {"check", "check --interpreter", "train --data fashion-mnist --steps 1", "bench"}) {
    CAPTURE(cmd);
    test::CommandResult r = test::run_gradc(fmt::format("{} {}", cmd, path));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("internal error") == std::string::npos);
    CHECK(r.err.find("bad_alloc") == std::string::npos);
    CHECK(r.err.find("model 'huge' needs ") != std::string::npos);
    CHECK(r.err.find("more than this machine's") != std::string::npos);
    CHECK(r.err.find("GEMM scratch") != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(check_gradients(load_spec_file(path)), doctest::Contains("more than this machine's"), Error);
}

// Fault 9: the plan said 10,304 bytes where bench said 41,664 (the GEMMs' packed operands live
// past the planned buffers). One function now gives the breakdown, and its working memory is
// the arena a Session allocates.
TEST_CASE("memory: dump --stage plan, bench and the compiled model report one breakdown") {
  for (const std::string& path : test::sample_specs()) {
    CAPTURE(path);
    Graph g = load_spec_file(test::source_path(path));
    MemoryUse m = memory_use(g);
    Model model = compile(g, {.cache_dir = ""});
    CHECK(m.working() == model.arena_bytes);
    CHECK(m.arena + m.gemm_scratch == m.working());
    CHECK(m.total() == m.working() + m.params + m.state + m.inputs + m.outputs);
    int64_t params = 0, state = 0;
    for (const Node& n : g.nodes)
      if (n.kind == NodeKind::Param) params += bytes_of(n.type);
    for (const Node& n : train_graph(g).nodes)
      if (n.kind == NodeKind::State) state += bytes_of(n.type);
    CHECK(m.params == params);
    CHECK(m.state == state);
  }
  std::string seed = test::source_path("samples/specs/seed_mlp.gir");
  std::string line = "memory: " + describe(memory_use(load_spec_file(seed)));
  CHECK(line.find("GEMM scratch") != std::string::npos);
  test::CommandResult plan = test::run_gradc("dump " + seed + " --stage plan");
  REQUIRE(plan.exit_code == 0);
  CHECK(plan.out.find(line.substr(8)) != std::string::npos);
  test::CommandResult bench = test::run_gradc("bench " + seed + " --steps 2 --threads 1");
  REQUIRE(bench.exit_code == 0);
  CHECK(bench.out.find(line + "\n") != std::string::npos);
}

TEST_CASE("memory: sizes are summed with checked arithmetic") {
  CHECK(add_bytes(INT64_MAX, 1) == INT64_MAX);
  CHECK(mul_bytes(int64_t{1} << 40, int64_t{1} << 40) == INT64_MAX);
  CHECK(bytes_of(TensorType{DType::F64, {int64_t{1} << 48, 4100}}) == INT64_MAX);
  CHECK(bytes_of(TensorType{DType::F32, {3, 5}}) == 60);
  MemoryUse m{.arena = INT64_MAX, .params = 10};
  CHECK(m.total() == INT64_MAX);
  CHECK(describe(m).find("more than 2^63") != std::string::npos);
}

// The plan gave a value whose only output was a reshape of it an output slot of its own name:
// two unnamed such values made "slot '' is f32[4, 4] in one entry point and f32[4, 8] in the other".
TEST_CASE("memory: outputs that are reshapes of unnamed values compile, and predict gives their values") {
  std::string spec = R"(model reshape_outputs
input x : f32[4, 8]
param w : f32[8, 4] = glorot_uniform
h = matmul(x, w)
output a = reshape(relu(h), shape=[16])
output b = reshape(tanh(x), shape=[32])
)";
  Model model = compile_string(spec, "reshape.gir", {.cache_dir = ""});
  Session s(model, {.seed = 1});
  std::map<std::string, Tensor> inputs = random_inputs(model.spec, 5);
  (void)s.predict({{"x", inputs.at("x")}});
  interp::Feeds feeds;
  interp::Tensor x = interp::Tensor::zeros(TensorType{DType::F32, {4, 8}});
  for (int64_t i = 0; i < 32; ++i) x.data[static_cast<size_t>(i)] = inputs.at("x").as<float>()[i];
  interp::Tensor w = interp::Tensor::zeros(TensorType{DType::F32, {8, 4}});
  for (int64_t i = 0; i < 32; ++i) w.data[static_cast<size_t>(i)] = s.param("w").as<float>()[i];
  feeds["x"] = x;
  feeds["w"] = w;
  std::vector<interp::Tensor> want = interp::evaluate(model.spec, feeds);
  for (const Output& o : model.spec.outputs) {
    const std::string& name = model.spec[o.value].name;
    CAPTURE(name);
    const Tensor& got = s.output(name);
    const interp::Tensor& ref = want[static_cast<size_t>(o.value)];
    REQUIRE(got.numel() == ref.numel());
    for (int64_t i = 0; i < got.numel(); ++i)
      CHECK(got.as<float>()[i] == doctest::Approx(ref.data[static_cast<size_t>(i)]).epsilon(1e-5));
  }
}
