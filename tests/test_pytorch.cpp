// Cross-check with PyTorch: the seed's model and the CNN, the loss, every gradient and three
// steps of every optimizer, against fixtures made by tests/fixtures/make_fixtures.py with
// torch.optim (in float64, from float32 params and data). gradc's float32 steps match to 1e-5 and
// its float64 steps to 1e-8, relative to each tensor's largest element; make_fixtures.py says
// why Adam with eps = 1e-7 is matched in float64 only.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "JitUtil.h"
#include "TestUtil.h"
#include "gradc/gradc.h"
#include "passes/Autodiff.h"
#include "passes/CastToF64.h"

using namespace gradc;
using ITensor = interp::Tensor;  // gradc::Tensor is the runtime's
using json = nlohmann::json;

namespace {

double tolerance(DType dt) { return dt == DType::F32 ? 1e-5 : 1e-8; }

ITensor from_json(const json& j, DType dtype) {
  TensorType t{dtype, j.at("shape").get<Shape>()};
  return ITensor::of(t, j.at("data").get<std::vector<double>>());
}

// max |got - expected| / max |expected|: the error relative to the tensor's scale.
double rel_error(const ITensor& got, const ITensor& expected) {
  REQUIRE(got.data.size() == expected.data.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < got.data.size(); ++i) {
    diff = std::max(diff, std::fabs(got.data[i] - expected.data[i]));
    scale = std::max(scale, std::fabs(expected.data[i]));
  }
  return diff / std::max(scale, 1e-30);
}

// The fixture's spec with its `minimize` line using `optimizer`.
Graph spec_with(const std::string& spec_file, const std::string& optimizer) {
  std::string text = test::read_file(test::source_path("tests/fixtures/" + spec_file));
  size_t at = text.find("minimize loss with ");
  REQUIRE(at != std::string::npos);
  size_t end = text.find('\n', at);
  text = text.substr(0, at) + "minimize loss with " + optimizer + text.substr(end);
  return load_spec(text, spec_file);
}

// The batch and the initial params are float32 values written with 9 digits: read them as
// float32 (exactly what PyTorch started from), then widen them for a float64 run.
ITensor exact_f32(const json& j, DType dt) {
  ITensor t = from_json(j, DType::F32);
  t.type.dtype = dt;
  return t;
}

interp::Feeds initial_feeds(const json& fx, DType dt) {
  interp::Feeds feeds;
  feeds["x"] = exact_f32(fx.at("inputs").at("x"), dt);
  feeds["y"] = from_json(fx.at("inputs").at("y"), DType::I32);
  for (const auto& [name, t] : fx.at("params").items()) feeds[name] = exact_f32(t, dt);
  return feeds;
}

Graph in_dtype(Graph g, DType dt) { return dt == DType::F64 ? cast_to_f64(std::move(g)) : g; }

void check_fixture(const std::string& file, DType dt) {
  json fx = json::parse(test::read_file(test::source_path("tests/fixtures/" + file)));
  const std::string spec = fx.at("spec");
  const double tol = tolerance(dt);

  // The loss and every gradient at the initial params.
  Graph forward = in_dtype(spec_with(spec, fx.at("optimizers")[0].at("optimizer")), dt);
  Differentiated d = differentiate(forward);
  std::vector<ITensor> v = interp::evaluate(d.graph, initial_feeds(fx, dt));
  double loss = v[static_cast<size_t>(forward.minimize->loss)].data[0];
  CHECK(loss == doctest::Approx(fx.at("loss").get<double>()).epsilon(tol));
  REQUIRE(d.grads.size() == fx.at("grads").size());
  for (const ParamGrad& pg : d.grads) {
    std::string name = d.graph[pg.param].name;
    CAPTURE(name);
    CHECK(rel_error(v[static_cast<size_t>(pg.grad)], from_json(fx.at("grads").at(name), dt)) < tol);
  }

  // Three steps of each optimizer: the loss before each, the params after the last.
  for (const json& run : fx.at("optimizers")) {
    if (dt == DType::F32 && !run.at("f32").get<bool>()) continue;
    std::string optimizer = run.at("optimizer");
    CAPTURE(optimizer);
    Graph train = train_graph(in_dtype(spec_with(spec, optimizer), dt));
    interp::Feeds feeds = initial_feeds(fx, dt);
    for (ValueId s : train.leaves(NodeKind::State)) feeds[train[s].name] = ITensor::zeros(train[s].type);
    for (size_t step = 0; step < 3; ++step) {
      std::vector<ITensor> values = interp::step(train, feeds);
      CAPTURE(step);
      CHECK(values[static_cast<size_t>(train.outputs[0].value)].data[0] ==
            doctest::Approx(run.at("losses")[step].get<double>()).epsilon(tol));
    }
    for (const auto& [name, t] : run.at("params").items()) {
      CAPTURE(name);
      CHECK(rel_error(feeds.at(name), from_json(t, dt)) < tol);
    }
  }
}

// A fixture tensor as a runtime tensor of `dtype` (f32, f64 or i32).
gradc::Tensor runtime_tensor(const json& j, DType dtype) {
  ITensor t = exact_f32(j, dtype == DType::I32 ? DType::F64 : dtype);
  gradc::Tensor out(TensorType{dtype, t.type.shape});
  for (size_t i = 0; i < t.data.size(); ++i) {
    if (dtype == DType::F32) out.as<float>()[i] = static_cast<float>(t.data[i]);
    else if (dtype == DType::F64) out.as<double>()[i] = t.data[i];
    else out.as<int32_t>()[i] = static_cast<int32_t>(t.data[i]);
  }
  return out;
}

// The native step (the JIT's code, as `gradc train` runs it) against the fixture: three steps of
// every optimizer from the fixture's params, in f32 (where PyTorch's float32 would match too) and f64.
void check_native(const std::string& file, DType dt) {
  json fx = json::parse(test::read_file(test::source_path("tests/fixtures/" + file)));
  const double tol = tolerance(dt);
  gradc::Tensor x = runtime_tensor(fx.at("inputs").at("x"), dt), y = runtime_tensor(fx.at("inputs").at("y"), DType::I32);
  for (const json& run : fx.at("optimizers")) {
    if (dt == DType::F32 && !run.at("f32").get<bool>()) continue;
    std::string optimizer = run.at("optimizer");
    CAPTURE(optimizer);
    Model model = compile(in_dtype(spec_with(fx.at("spec"), optimizer), dt));
    Session session(model);
    for (const auto& [name, t] : fx.at("params").items()) {
      gradc::Tensor value = runtime_tensor(t, dt), &slot = session.param(name);  // the step's own bytes: copy into them
      REQUIRE(slot.type() == value.type());
      std::memcpy(slot.data(), value.data(), slot.bytes());
    }
    for (size_t step = 0; step < 3; ++step) {
      double loss = session.step({{"x", x}, {"y", y}});
      CAPTURE(step);
      CHECK(loss == doctest::Approx(run.at("losses")[step].get<double>()).epsilon(tol));
    }
    for (const auto& [name, t] : run.at("params").items()) {
      CAPTURE(name);
      CHECK(rel_error(test::to_interp(session.param(name)), from_json(t, dt)) < tol);
    }
  }
}

}  // namespace

TEST_CASE("pytorch: the native step of the seed's model matches torch for every optimizer and clip_norm, f32 and f64") {
  check_native("seed_mlp_b8.json", DType::F32);
  check_native("seed_mlp_b8.json", DType::F64);
}

TEST_CASE("pytorch: the native step of the CNN matches torch for its optimizers and clip_norm, f32") {
  check_native("cnn_fmnist_b2.json", DType::F32);
}

TEST_CASE("pytorch: the seed's model, its gradients and every optimizer match torch, in f32 and f64") {
  check_fixture("seed_mlp_b8.json", DType::F32);
  check_fixture("seed_mlp_b8.json", DType::F64);
}

TEST_CASE("pytorch: the CNN, its gradients and its optimizers match torch, in f32 and f64") {
  check_fixture("cnn_fmnist_b2.json", DType::F32);
  check_fixture("cnn_fmnist_b2.json", DType::F64);
}
