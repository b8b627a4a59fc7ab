// Helpers for the tests that hold the JIT against the reference interpreter.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>

#include <doctest/doctest.h>

#include "TestUtil.h"
#include "driver/Pipeline.h"
#include "gradc/gradc.h"
#include "interp/Interpreter.h"

namespace gradc::test {

inline interp::Tensor to_interp(const gradc::Tensor& t) {
  interp::Tensor out = interp::Tensor::zeros(t.type());
  for (size_t i = 0; i < out.data.size(); ++i)
    out.data[i] = t.dtype() == DType::F32   ? t.as<float>()[i]
                  : t.dtype() == DType::F64 ? t.as<double>()[i]
                                            : t.as<int32_t>()[i];
  return out;
}

// max |a - b| / max |b|: the error of `a` relative to the size of the reference `b`.
inline double relative_error(const gradc::Tensor& a, const interp::Tensor& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.data.size(); ++i) {
    double v = a.dtype() == DType::F32 ? a.as<float>()[i] : a.dtype() == DType::F64 ? a.as<double>()[i] : a.as<int32_t>()[i];
    if (std::isnan(v) != std::isnan(b.data[i])) return INFINITY;
    if (std::isnan(v)) continue;
    diff = std::max(diff, std::fabs(v - b.data[i]));
    scale = std::max(scale, std::fabs(b.data[i]));
  }
  return scale == 0 ? diff : diff / scale;
}

inline Feeds views(const std::map<std::string, gradc::Tensor>& tensors) {
  Feeds f;
  for (const auto& [name, t] : tensors) f.emplace(name, TensorView(t));
  return f;
}

// Every param of the session from a normal distribution (optimizer state stays zero).
inline void random_params(Session& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (const Slot& slot : s.program().slots) {
    if (slot.kind != SlotKind::Param) continue;
    Tensor& t = s.param(slot.name);
    for (int64_t i = 0; i < t.numel(); ++i) {
      double v = std::normal_distribution<double>()(rng);
      if (t.dtype() == DType::F32) t.as<float>()[i] = static_cast<float>(v);
      else t.as<double>()[i] = v;
    }
  }
}

// The worst relative error of the JIT against the interpreter over predict's outputs, three
// steps' losses and the params and optimizer state after them; each checked against `tol`.
inline double check_against_interpreter(const std::string& text, double tol, const std::string& file = "spec.gir") {
  Model model = compile_string(text, file);
  Session session(model);
  random_params(session, 1);
  interp::Feeds feeds;
  for (const std::string& name : session.param_names()) feeds[name] = to_interp(session.param(name));
  auto inputs = random_inputs(model.spec, 2);
  for (const auto& [name, t] : inputs) feeds[name] = to_interp(t);
  double worst = 0;
  auto record = [&](double err, const std::string& what) {
    INFO(what, ": relative error ", err);
    CHECK(err <= tol);
    worst = std::max(worst, err);
  };
  Graph forward = predict_graph(model.spec);
  std::vector<interp::Tensor> ref = interp::evaluate(forward, feeds);
  if (!forward.outputs.empty()) session.predict(views(inputs));
  for (const Output& o : forward.outputs)
    record(relative_error(session.output(forward[o.value].name), ref[static_cast<size_t>(o.value)]),
           "predict output " + forward[o.value].name);
  if (!model.train_step) return worst;
  Graph train = simplified_graph(model.spec);
  for (int s = 0; s < 3; ++s) {
    double loss = session.step(views(inputs));
    double expected = interp::step(train, feeds)[static_cast<size_t>(train.outputs[0].value)].data[0];
    record(std::fabs(loss - expected) / std::max(std::fabs(expected), 1e-30), fmt::format("loss of step {}", s + 1));
  }
  for (const std::string& name : session.param_names()) record(relative_error(session.param(name), feeds.at(name)), name);
  return worst;
}

}  // namespace gradc::test
