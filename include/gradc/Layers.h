// Layer helpers over GraphBuilder: the layers people write, as small functions a user could
// have written (Keras's Dense, PyTorch's nn.Linear, nn.LayerNorm, nn.LSTMCell), each building
// its params under a name prefix ("fc1.w", "fc1.b") and returning its result:
//
//   gradc::GraphBuilder b("lstm");
//   auto x = b.input("x", {gradc::DType::F32, {64, 28}});
//   gradc::layers::Lstm cell = gradc::layers::lstm(b, "cell", 28, 128);   // params, shared by every step
//   auto [h, c] = gradc::layers::lstm_cell(b, cell, x, h0, c0);
//   auto logits = gradc::layers::dense(b, "out", h, 128, 10);
//
// Sizes are given, as nn.Linear(in, out) takes them: the builder infers shapes only at build().
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "gradc/GraphBuilder.h"

namespace gradc::layers {

// x [N, in] -> x w + b [N, units]: w glorot_uniform [in, units], b zeros [units] (Keras's defaults).
inline Value dense(GraphBuilder& b, const std::string& name, Value x, int64_t in, int64_t units,
                   DType dtype = DType::F32) {
  Value w = b.param(name + ".w", {dtype, {in, units}}, glorot_uniform());
  Value bias = b.param(name + ".b", {dtype, {units}}, zeros());
  return b.add(b.matmul(x, w), bias);
}

// nn.LayerNorm(features): normalizes the last axis, gamma ones and beta zeros.
inline Value layer_norm(GraphBuilder& b, const std::string& name, Value x, int64_t features, double eps = 1e-5,
                        DType dtype = DType::F32) {
  Value gamma = b.param(name + ".gamma", {dtype, {features}}, ones());
  Value beta = b.param(name + ".beta", {dtype, {features}}, zeros());
  return b.call("layer_norm", {x, gamma, beta}, {{"eps", Attr(eps)}});
}

// A 'same' conv with bias and relu, then a 2x2 max pool: x [N, in, H, W] -> [N, out, H/2, W/2].
// The kernel he_uniform [out, in, k, k] (k odd), the bias zeros [out, 1, 1], as cnn_fmnist.gir.
inline Value conv_block(GraphBuilder& b, const std::string& name, Value x, int64_t in, int64_t out, int64_t kernel = 3,
                        DType dtype = DType::F32) {
  Value w = b.param(name + ".w", {dtype, {out, in, kernel, kernel}}, he_uniform());
  Value bias = b.param(name + ".b", {dtype, {out, 1, 1}}, zeros());
  Value conv = b.conv2d(x, w, {{"stride", Attr(int64_t{1})}, {"padding", Attr(kernel / 2)}});
  return b.maxpool2d(b.relu(b.add(conv, bias)), {{"kernel", Attr(int64_t{2})}});
}

// nn.LSTMCell(in, hidden): its params, made once and shared by every time step it is applied at.
struct Lstm {
  Value w, u, b;  // [in, 4 hidden], [hidden, 4 hidden], [4 hidden]
  int64_t hidden = 0;
};
inline Lstm lstm(GraphBuilder& b, const std::string& name, int64_t in, int64_t hidden, DType dtype = DType::F32) {
  return {b.param(name + ".w", {dtype, {in, 4 * hidden}}, glorot_uniform()),
          b.param(name + ".u", {dtype, {hidden, 4 * hidden}}, glorot_uniform()),
          b.param(name + ".b", {dtype, {4 * hidden}}, zeros()), hidden};
}

// One step of the cell on x [N, in] and the state (h, c) [N, hidden]: the gates x w + h u + b
// [N, 4 hidden] in PyTorch's order (input, forget, cell, output), then c' = σ(f) c + σ(i) tanh(g)
// and h' = σ(o) tanh(c'). Returns (h', c').
inline std::pair<Value, Value> lstm_cell(GraphBuilder& b, const Lstm& cell, Value x, Value h, Value c) {
  Value gates = b.add(b.add(b.matmul(x, cell.w), b.matmul(h, cell.u)), cell.b);
  int64_t n = cell.hidden;
  auto columns = [&](int64_t k) {  // [k n, (k + 1) n) of every row (the rows' end clamps, as Python's)
    return b.slice(gates, {{"begin", Attr(std::vector<int64_t>{0, k * n})},
                           {"end", Attr(std::vector<int64_t>{int64_t{1} << 40, (k + 1) * n})}});
  };
  Value i = b.sigmoid(columns(0)), f = b.sigmoid(columns(1)), g = b.tanh(columns(2)), o = b.sigmoid(columns(3));
  Value c_next = b.add(b.mul(f, c), b.mul(i, g));
  return {b.mul(o, b.tanh(c_next)), c_next};
}

}  // namespace gradc::layers
