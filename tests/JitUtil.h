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

// Small specs whose shapes have dims of 1, each (name, text): a batch of one, one output unit,
// [1, 1] results of matmuls forward and backward, a bias of shape [1], a mean over one element.
// (A loss that cancels to near 0, as the sum of 8 rows dotted with p does, is not compared
// within 1e-5 of itself: such a one goes through a sigmoid.)
// Their [1, 1] values are scalars to fusion (recomputed where they are used) or views of the
// constant 1 (the gradient of a mean over one element), which matmuls, convs and row ops read
// whole from memory: each must be stored by a kernel that runs before.
inline std::vector<std::pair<std::string, std::string>> unit_dim_specs() {
  return {
      {"batch1_mean.gir", "model m\ninput a : f32[1, 32]\nparam p : f32[32, 1] = glorot_uniform\n"
                          "loss = mean(matmul(a, p))\nminimize loss with sgd(lr=0.01)\n"},
      {"batch1_sum.gir", "model m\ninput a : f32[1, 32]\nparam p : f32[32, 1] = glorot_uniform\n"
                         "loss = sum(matmul(a, p))\nminimize loss with sgd(lr=0.01)\n"},
      {"batch1_f64.gir", "model m\ninput a : f64[1, 32]\nparam p : f64[32, 1] = glorot_uniform\n"
                         "loss = mean(matmul(a, p))\nminimize loss with sgd(lr=0.01)\n"},
      {"row_sum_keepdims.gir", "model m\ninput a : f32[8, 32]\nparam p : f32[32, 1] = glorot_uniform\n"
                               "loss = mean(sigmoid(matmul(sum(a, axes=[0], keepdims=true), p)))\nminimize loss with sgd(lr=0.01)\n"},
      {"column_sum_keepdims.gir", "model m\ninput a : f32[32, 8]\nparam p : f32[1, 32] = glorot_uniform\n"
                                  "loss = mean(matmul(p, sum(a, axes=[1], keepdims=true)))\nminimize loss with sgd(lr=0.01)\n"},
      {"one_by_one.gir", "model m\ninput x : f32[1, 1]\nparam w : f32[1, 1] = glorot_uniform\n"
                         "loss = mean(matmul(x, w))\nminimize loss with sgd(lr=0.01)\n"},
      {"reshaped_to_scalar.gir", "model m\ninput a : f32[1, 32]\nparam p : f32[32, 1] = glorot_uniform\n"
                                 "loss = reshape(matmul(a, p), shape=[])\nminimize loss with sgd(lr=0.01)\n"},
      {"batched_1x1.gir", "model m\ninput a : f32[1, 1, 8]\nparam p : f32[1, 8, 1] = glorot_uniform\n"
                          "loss = mean(matmul(a, p))\nminimize loss with sgd(lr=0.01)\n"},
      {"mlp_one_unit.gir", "model m\ninput x : f32[1, 4]\ninput y : f32[1, 1]\nparam w1 : f32[4, 8] = glorot_uniform\n"
                           "param b1 : f32[8] = zeros\nparam w2 : f32[8, 1] = glorot_uniform\nparam b2 : f32[1] = zeros\n"
                           "h = relu(add(matmul(x, w1), b1))\nout = add(matmul(h, w2), b2)\nloss = mse(out, y)\n"
                           "output out\nminimize loss with adam(lr=0.01)\n"},
      {"chained_1x1.gir", "model m\ninput a : f32[1, 32]\nparam p : f32[32, 1] = glorot_uniform\nparam q : f32[1, 16] = glorot_uniform\n"
                          "loss = mean(tanh(matmul(matmul(a, p), q)))\nminimize loss with momentum(lr=0.01, momentum=0.9)\n"},
      {"scalar_operand_and_epilogue.gir", "model m\ninput x : f32[1, 1]\nparam q : f32[4, 1] = glorot_uniform\ns = exp(x)\n"
                                          "loss = mean(add(matmul(q, s), s))\nminimize loss with sgd(lr=0.01)\n"},
      {"one_class_rows.gir", "model m\ninput x : f32[1, 3]\ninput y : i32[1]\nparam w : f32[3, 1] = glorot_uniform\n"
                             "param b : f32[1] = zeros\nloss = softmax_cross_entropy(add(matmul(x, w), b), y)\n"
                             "minimize loss with sgd(lr=0.1)\n"},
      {"logistic_batch1.gir", "model m\ninput x : f32[1, 4]\ninput y : f32[1, 1]\nparam w : f32[4, 1] = glorot_uniform\n"
                              "param b : f32[1] = zeros\nloss = bce_with_logits(add(matmul(x, w), b), y)\n"
                              "minimize loss with adam(lr=0.01, clip_norm=1.0)\n"},
      {"outer_1x1.gir", "model m\ninput a : f32[1, 8]\nparam p : f32[8, 1] = glorot_uniform\n"
                        "loss = mean(matmul(transpose(matmul(a, p)), matmul(a, p)))\nminimize loss with sgd(lr=0.01, clip_norm=0.5)\n"},
      {"softmax_1x1.gir", "model m\ninput a : f32[1, 8]\nparam p : f32[8, 1] = glorot_uniform\nparam q : f32[1, 1] = glorot_uniform\n"
                          "h = tanh(matmul(a, p))\nloss = mean(square(matmul(h, q)))\noutput probs = softmax(h, axis=1)\n"
                          "minimize loss with adamw(lr=0.01)\n"},
      {"constant_operand.gir", "model m\ninput a : f32[4, 1]\nparam p : f32[1, 4] = glorot_uniform\n"
                               "loss = mean(matmul(matmul(a, reshape(3.0, shape=[1, 1])), p))\nminimize loss with sgd(lr=0.01)\n"},
      {"conv_1x1.gir", "model m\ninput x : f32[1, 1, 1, 1]\nparam w : f32[1, 1, 1, 1] = glorot_uniform\nparam b : f32[1] = zeros\n"
                       "h = relu(add(conv2d(x, w, stride=[1, 1], padding=[0, 0]), reshape(b, shape=[1, 1, 1, 1])))\n"
                       "loss = mean(h)\nminimize loss with adam(lr=0.01)\n"},
  };
}

}  // namespace gradc::test
