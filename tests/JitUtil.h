// Helpers for the tests that hold the JIT against the reference interpreter.
#pragma once

#include <cmath>
#include <random>

#include "gradc/gradc.h"

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

// The number of classes an i32 input indexes (its use in softmax_cross_entropy or one_hot).
inline int64_t classes_of(const Graph& g, ValueId input) {
  for (const Node& n : g.nodes) {
    if (n.kind != NodeKind::Op || n.args.empty()) continue;
    if (n.op == OpKind::SoftmaxCrossEntropy && n.args[1] == input) return g[n.args[0]].type.shape[1];
    if (n.op == OpKind::OneHot && n.args[0] == input) return n.attrs.get("classes").as_int();
  }
  return 10;
}

// Random values for every input of `g`: normal floats, class ids in range for i32 inputs.
inline std::map<std::string, gradc::Tensor> random_inputs(const Graph& g, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, gradc::Tensor> out;
  for (ValueId id : g.leaves(NodeKind::Input)) {
    const Node& n = g[id];
    gradc::Tensor t(n.type);
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (n.type.dtype == DType::I32)
        t.as<int32_t>()[i] = static_cast<int32_t>(std::uniform_int_distribution<int64_t>(0, classes_of(g, id) - 1)(rng));
      else if (n.type.dtype == DType::F32)
        t.as<float>()[i] = static_cast<float>(std::normal_distribution<double>()(rng));
      else
        t.as<double>()[i] = std::normal_distribution<double>()(rng);
    }
    out.emplace(n.name, std::move(t));
  }
  return out;
}

inline Feeds views(const std::map<std::string, gradc::Tensor>& tensors) {
  Feeds f;
  for (const auto& [name, t] : tensors) f.emplace(name, TensorView(t));
  return f;
}

}  // namespace gradc::test
