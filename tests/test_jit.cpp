// The JIT against the reference interpreter: every sample spec's train step and predict.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include "JitUtil.h"
#include "TestUtil.h"

namespace gradc {

namespace {

// Runs `steps` steps of the compiled model and of the interpreter from the same initial params
// and the same random inputs; returns the largest relative error over params, state and loss.
double jit_vs_interpreter(const std::string& spec_path, int steps, const Model& model, bool compare_params = true) {
  Session session(model, {.seed = 7});
  Graph train = simplified_graph(model.spec);
  interp::Feeds feeds;
  for (const std::string& name : session.param_names()) feeds[name] = test::to_interp(session.param(name));
  double worst = 0;
  for (int s = 0; s < steps; ++s) {
    auto inputs = random_inputs(model.spec, 100 + static_cast<uint64_t>(s));
    for (const auto& [name, t] : inputs) feeds[name] = test::to_interp(t);
    double loss = session.step(test::views(inputs));
    double ref = interp::step(train, feeds)[static_cast<size_t>(train.outputs[0].value)].data[0];
    INFO(spec_path, " step ", s + 1, ": loss ", loss, " vs ", ref);
    worst = std::max(worst, std::fabs(loss - ref) / std::max(std::fabs(ref), 1e-30));
    CHECK(std::fabs(loss - ref) <= 1e-5 * std::fabs(ref));
  }
  for (const std::string& name : session.param_names()) {
    if (!compare_params) break;
    double err = test::relative_error(session.param(name), feeds.at(name));
    INFO(spec_path, ": ", name, " after ", steps, " steps, relative error ", err);
    CHECK(err <= 1e-5);
    worst = std::max(worst, err);
  }
  return worst;
}

// The sample specs whose params under Adam are compared by their losses alone (see below).
// The GRU's too: its hidden state starts at zero, so some of wh's gradients are sums near zero.
bool adam_flips_signs(const std::string& spec_path) {
  return spec_path.find("cnn") != std::string::npos || spec_path.find("autoencoder") != std::string::npos ||
         spec_path.find("gru") != std::string::npos;
}

double jit_vs_interpreter(const std::string& spec_path, int steps) {
  return jit_vs_interpreter(spec_path, steps, compile_file(test::source_path(spec_path)));
}

}  // namespace

TEST_CASE("jit: the train step equals the interpreter's on every sample spec (5 steps, f32)") {
  for (const std::string& spec : test::sample_specs()) {
    if (adam_flips_signs(spec)) continue;  // below, on their own
    double worst = jit_vs_interpreter(spec, 5);
    MESSAGE(spec, ": worst relative error ", worst);
  }
}

// Batches of one, one-unit layers, [1, 1] matmul results forward and backward: fusion stored
// neither a [1, 1] scalar that a matmul or row op reads as well as its epilogue, nor the
// constant 1 reshaped to [1, 1] (a mean's gradient over one element), and the step failed
// to compile with "map::at" (or read a buffer before it was written).
TEST_CASE("jit: specs with dims of 1 (batch 1, one output unit, [1, 1] matmuls, bias [1]) train as the interpreter does") {
  for (const auto& [name, text] : test::unit_dim_specs()) {
    CAPTURE(name);
    double worst = 0;
    CHECK_NOTHROW(worst = jit_vs_interpreter(name, 5, compile_string(text, name)));
    MESSAGE(name, ": worst relative error ", worst);
  }
}

TEST_CASE("jit: clip_norm with every optimizer equals the interpreter (the seed's model, clipping and not)") {
  std::string seed = test::read_file(test::source_path("samples/specs/seed_mlp.gir"));
  size_t at = seed.find("minimize loss with ");
  REQUIRE(at != std::string::npos);
  seed.resize(at);
  // Random normal params give a gradient norm far above 1 (clipped); 1e6 is never reached.
  // They also give logits of about +-60 from sums of 784 terms of about +-28, whose f32 rounding
  // depends on the order the host's vectors sum in: the probs differed from f64 by 3.4e-5 on an
  // AVX2 host (8 lanes) and by less than 1e-5 on AVX-512 ones. The bound for a sum of n terms is
  // n * 2^-24 of their magnitude (4.7e-5 for 784), so the tolerance is 1e-4.
  for (const char* clip : {"1.0", "1e6"})
    for (const char* optimizer : {"sgd(lr=0.1", "momentum(lr=0.1, momentum=0.9", "momentum(lr=0.1, momentum=0.9, nesterov=true",
                                  "adam(lr=0.001", "adamw(lr=0.001, weight_decay=0.1"}) {
      std::string text = fmt::format("{}minimize loss with {}, clip_norm={})\n", seed, optimizer, clip);
      CAPTURE(text);
      test::check_against_interpreter(text, 1e-4, "seed_clip.gir");
    }
}

// Coupled weight decay (sgd, momentum, nesterov, adam) with clip_norm and without, on the seed's
// model from random normal params (so λ w is not small beside the gradient): the tolerance is the
// clip_norm test's, above.
TEST_CASE("jit: weight_decay of sgd, momentum, nesterov and adam equals the interpreter, with clip_norm and without") {
  std::string seed = test::read_file(test::source_path("samples/specs/seed_mlp.gir"));
  size_t at = seed.find("minimize loss with ");
  REQUIRE(at != std::string::npos);
  seed.resize(at);
  for (const char* optimizer : {"sgd(lr=0.1, weight_decay=0.05", "momentum(lr=0.1, momentum=0.9, weight_decay=0.05",
                                "momentum(lr=0.1, momentum=0.9, nesterov=true, weight_decay=0.05",
                                "adam(lr=0.001, weight_decay=0.05"})
    for (const char* clip : {"", ", clip_norm=1.0"}) {
      std::string text = fmt::format("{}minimize loss with {}{})\n", seed, optimizer, clip);
      CAPTURE(text);
      test::check_against_interpreter(text, 1e-4, "seed_decay.gir");
    }
}

// The step is callable once its own code is compiled: predict's entry point and kernels are in a
// module of their own (the last), which the JIT compiles afterwards, on another thread.
TEST_CASE("jit: predict's code is a module of its own, compiled after the step's") {
  auto functions_by_module = [](const std::string& ir) {
    std::vector<std::vector<std::string>> modules;
    std::istringstream lines(ir.substr(0, ir.find("; ---- after LLVM's O3")));
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("; ModuleID", 0) == 0) modules.emplace_back();
      if (line.rfind("define ", 0) == 0 && !modules.empty()) {
        size_t at = line.find('@'), end = line.find('(', at);
        modules.back().push_back(line.substr(at + 1, end - at - 1));
      }
    }
    return modules;
  };
  auto is_predict = [](const std::string& f) { return f.rfind("predict.", 0) == 0 || f == "gradc_predict"; };
  Graph g = load_spec_file(test::source_path("samples/specs/seed_mlp.gir"));
  auto modules = functions_by_module(dump(g, Stage::Llvm));
  REQUIRE(modules.size() == 3);
  for (size_t i = 0; i < modules.size(); ++i) {
    CHECK_FALSE(modules[i].empty());
    for (const std::string& f : modules[i]) {
      INFO("module ", i, ": ", f);
      CHECK(is_predict(f) == (i == 2));
    }
  }
  Model model = compile_file(test::source_path("samples/specs/seed_mlp.gir"));
  CHECK(static_cast<bool>(model.train_step));
  CHECK(static_cast<bool>(model.predict_entry()));  // waits for predict's module
}

// Adam's first steps move each weight by about lr * sign(gradient): a gradient that sums to
// nearly zero (a dense unit fed by mostly dead relus, a saturated tanh) can take either sign, or
// sit near Adam's eps, under any other order of the f32 sums, and such a weight moves up to 2 * lr
// apart, far past 1e-5. So these specs' params are compared under SGD, whose update is
// proportional to the gradient; under their own Adam the losses of 5 steps must still agree.
TEST_CASE("jit: the CNN's, the autoencoder's and the GRU's train steps equal the interpreter's under SGD (5 steps, f32)") {
  for (const std::string& path : test::sample_specs()) {
    if (!adam_flips_signs(path)) continue;
    std::string text = test::read_file(test::source_path(path));
    size_t at = text.find("minimize loss with adam(");
    REQUIRE(at != std::string::npos);
    std::string sgd = text.substr(0, at) + "minimize loss with sgd(lr=0.01)\n";
    MESSAGE(path, " with SGD: worst relative error ", jit_vs_interpreter(path, 5, compile_string(sgd, path)));
  }
}

// The memory plan may give a matmul's raw result the bytes of an input that its epilogue reads
// at the same element (here t, which the epilogue reads last): the epilogue must load t before it
// stores the matmul. In f32 (our GEMM's epilogue) and f64 (the scalar matmul's).
TEST_CASE("jit: a matmul planned over an input of its own epilogue reads that input first (f32, f64)") {
 for (const char* dt : {"f32", "f64"}) {
  INFO(dt);
  std::string text = fmt::format("model m\ninput a : {0}[4, 6]\ninput v : {0}[4, 6]\nparam w : {0}[6, 6] = glorot_uniform\n"
                                 "t = softmax(v, axis=1)\nh = matmul(a, w)\ny = mul(h, t)\nq = softmax(h, axis=1)\noutput z = add(y, q)\n", dt);
  KernelProgram plan = predict_kernels(load_spec(text, "inplace.gir"));
  auto named = [&](const std::string& name) {
    for (ValueId v = 0; v < plan.graph.size(); ++v)
      if (plan.graph[v].name == name) return v;
    return ValueId{-1};
  };
  REQUIRE(std::find(plan.shared.begin(), plan.shared.end(), std::pair{named("h"), named("t")}) != plan.shared.end());
  Model model = compile_string(text, "inplace.gir");
  Session session(model, {.seed = 1});
  auto inputs = random_inputs(model.spec, 2);
  interp::Feeds feeds;
  for (const auto& [name, t] : inputs) feeds[name] = test::to_interp(t);
  feeds["w"] = test::to_interp(session.param("w"));
  session.predict(test::views(inputs));
  Graph forward = predict_graph(model.spec);
  std::vector<interp::Tensor> ref = interp::evaluate(forward, feeds);
  double err = test::relative_error(session.output("z"), ref[static_cast<size_t>(forward.outputs[0].value)]);
  INFO("relative error ", err);
  CHECK(err <= (std::string(dt) == "f32" ? 1e-5 : 1e-12));
 }
}

TEST_CASE("jit: the CNN's, the autoencoder's and the GRU's losses under their own Adam equal the interpreter's (5 steps, f32)") {
  for (const std::string& path : test::sample_specs())
    if (adam_flips_signs(path)) jit_vs_interpreter(path, 5, compile_file(test::source_path(path)), /*compare_params=*/false);
}

}  // namespace gradc
