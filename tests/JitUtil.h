// Helpers for the tests that hold the JIT against the reference interpreter.
#pragma once

#include <cmath>

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

inline Feeds views(const std::map<std::string, gradc::Tensor>& tensors) {
  Feeds f;
  for (const auto& [name, t] : tensors) f.emplace(name, TensorView(t));
  return f;
}

}  // namespace gradc::test
