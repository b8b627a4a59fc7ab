// Generated specs of any size, for compile-time work: bench/compile_bench times them and
// tests/test_compile_scale.cpp checks them against the interpreter (scripts/scale_specs.py
// writes the same families to files for scripts/compare_dumps).
#pragma once

#include <string>

#include <fmt/format.h>

namespace gradc::scale {

// n chained tanh ops on x : f32[rows, cols], the mean square of the last minimized.
inline std::string chain_spec(int n, int rows, int cols, const std::string& optimizer) {
  std::string s = fmt::format(
      "model chain_{}\ninput x : f32[{}, {}]\nparam p : f32[{}] = normal(0, 0.5)\n"
      "h0 = tanh(add(x, p))\n",
      n, rows, cols, cols);
  for (int i = 1; i < n; ++i) s += fmt::format("h{} = tanh(h{})\n", i, i - 1);
  return s + fmt::format("loss = mean(square(h{}))\noutput h{}\nminimize loss with {}\n", n - 1, n - 1, optimizer);
}

struct MlpShape {
  int batch = 16, inputs = 64, width = 32;
  const char* activation = "relu";
};

// `layers` Dense layers (the last to 10 logits), softmax cross-entropy against y : i32[batch].
inline std::string mlp_spec(int layers, const MlpShape& shape, const std::string& optimizer) {
  std::string s = fmt::format("model mlp_{}\ninput x : f32[{}, {}]\ninput y : i32[{}]\n", layers, shape.batch,
                              shape.inputs, shape.batch);
  int prev = shape.inputs;
  for (int i = 0; i < layers; ++i) {
    int out = i == layers - 1 ? 10 : shape.width;
    s += fmt::format("param w{} : f32[{}, {}] = glorot_uniform\nparam b{} : f32[{}] = zeros\n", i, prev, out, i, out);
    prev = out;
  }
  std::string h = "x";
  for (int i = 0; i < layers; ++i) {
    std::string pre = fmt::format("add(matmul({}, w{}), b{})", h, i, i);
    if (i == layers - 1) {
      s += "logits = " + pre + "\n";
    } else {
      s += fmt::format("h{} = {}({})\n", i, shape.activation, pre);
      h = fmt::format("h{}", i);
    }
  }
  return s + fmt::format(
                 "loss = softmax_cross_entropy(logits, y)\noutput probs = softmax(logits, axis=1)\n"
                 "minimize loss with {}\n",
                 optimizer);
}

}  // namespace gradc::scale
