// The JIT against the reference interpreter: every sample spec's train step and predict.
#include <doctest/doctest.h>

#include "JitUtil.h"
#include "TestUtil.h"

namespace gradc {

namespace {

// Runs `steps` steps of the compiled model and of the interpreter from the same initial params
// and the same random inputs; returns the largest relative error over params, state and loss.
double jit_vs_interpreter(const std::string& spec_path, int steps) {
  Model model = compile_file(test::source_path(spec_path));
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
    double err = test::relative_error(session.param(name), feeds.at(name));
    INFO(spec_path, ": ", name, " after ", steps, " steps, relative error ", err);
    CHECK(err <= 1e-5);
    worst = std::max(worst, err);
  }
  return worst;
}

}  // namespace

TEST_CASE("jit: the train step equals the interpreter's on every sample spec (5 steps, f32)") {
  for (const std::string& spec : test::sample_specs()) {
    if (spec.find("cnn") != std::string::npos) continue;  // below, on its own
    double worst = jit_vs_interpreter(spec, 5);
    MESSAGE(spec, ": worst relative error ", worst);
  }
}

TEST_CASE("jit: the CNN's train step equals the interpreter's (5 steps, f32)") {
  MESSAGE("cnn_fmnist: worst relative error ", jit_vs_interpreter("samples/specs/cnn_fmnist.gir", 5));
}

TEST_CASE("jit: predict equals the interpreter's forward graph on every sample spec") {
  for (const std::string& path : test::sample_specs()) {
    Model model = compile_file(test::source_path(path));
    Session session(model, {.seed = 3});
    Graph forward = predict_graph(model.spec);
    interp::Feeds feeds;
    for (ValueId id : forward.leaves(NodeKind::Param)) feeds[forward[id].name] = test::to_interp(session.param(forward[id].name));
    auto inputs = random_inputs(model.spec, 11);
    for (const auto& [name, t] : inputs) feeds[name] = test::to_interp(t);
    const Tensor& out = session.predict(test::views(inputs));
    auto values = interp::evaluate(forward, feeds);
    double err = test::relative_error(out, values[static_cast<size_t>(forward.outputs[0].value)]);
    INFO(path, ": predict's relative error ", err);
    CHECK(err <= 1e-5);
  }
}

}  // namespace gradc
