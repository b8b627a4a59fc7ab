// Parameter initializers: seeded, reproducible, with PyTorch's and Keras's fan rules.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gradc/Tensor.h"

namespace gradc {

// An initializer as a spec names it: `glorot_uniform`, `normal(mean=0, std=0.3)`, ...
struct InitSpec {
  std::string kind;
  std::vector<std::pair<std::string, double>> args;  // by name; absent ones take the defaults
};

struct Fans {
  double in = 1, out = 1;
};

// Fan-in and fan-out of a weight of `shape`. gradc's dense weights are [in, out] (x · W, Keras's
// Dense kernel), so rank 2 and other ranks follow Keras: in = shape[-2] · receptive field,
// out = shape[-1] · receptive field, the receptive field being the product of the leading dims.
// Rank-4 conv weights are PyTorch's [O, C, KH, KW]: in = C·KH·KW, out = O·KH·KW.
// Rank 1 (biases): in = out = shape[0]; a scalar: 1.
Fans fans(const Shape& shape);

// A tensor of `type` filled by `init`:
//   zeros, ones, constant(value), normal(mean=0, std=1), uniform(lo=0, hi=1),
//   glorot_uniform: U(-a, a), a = sqrt(6 / (in + out))      (Keras, torch xavier_uniform_)
//   glorot_normal:  N(0, sqrt(2 / (in + out)))               (torch xavier_normal_)
//   he_uniform:     U(-a, a), a = sqrt(6 / in)               (Keras, torch kaiming_uniform_ for relu)
//   he_normal:      N(0, sqrt(2 / in))                       (torch kaiming_normal_ for relu)
// Random draws come from a generator of our own (mt19937_64, 53-bit uniforms, Box-Muller), seeded
// by `seed` and the param's `name`, so values are the same on every platform and adding a param
// does not change the others. Throws gradc::Error for an unknown kind or a non-float type.
Tensor initialize(const InitSpec& init, const TensorType& type, uint64_t seed, std::string_view name);

// The initializers `initialize` knows, in the order above, each with the schema of its arguments
// in the op table's attribute syntax ("value:float", "mean:float=0 std:float=1"): the one list
// that the spec's parser and verifier read too.
struct InitKind {
  std::string_view name;
  std::string_view schema;
};
const std::vector<InitKind>& init_kinds();

}  // namespace gradc
