#include "gradc/Init.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numbers>
#include <random>

#include "runtime/Format.h"

namespace gradc {

namespace {

// FNV-1a of the name, mixed with the seed by splitmix64: one independent stream per param.
uint64_t stream_seed(uint64_t seed, std::string_view name) {
  uint64_t h = 1469598103934665603ull;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (h | 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Draws defined by us rather than by std:: distributions, whose algorithms vary by library.
class Draws {
 public:
  explicit Draws(uint64_t seed) : rng_(seed) {}
  double uniform01() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform01(); }
  double normal(double mean, double std) {  // Box-Muller; 1 - u keeps log away from 0
    double u = 1.0 - uniform01(), v = uniform01();
    return mean + std * std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * std::numbers::pi * v);
  }

 private:
  std::mt19937_64 rng_;
};

double arg(const InitSpec& init, std::string_view name, double fallback) {
  for (const auto& [k, v] : init.args)
    if (k == name) return v;
  return fallback;
}

// An initializer: its kind, and the value of each element in turn, made once per tensor from the
// spec's arguments (absent ones take the defaults of its schema), the weight's fans and the draws.
using Value = std::function<double()>;
struct Initializer {
  InitKind kind;
  Value (*make)(const InitSpec& init, const Fans& f, Draws& draws);
};

// Arguments as in PyTorch's torch.nn.init (normal_: mean=0, std=1; uniform_: a=0, b=1); the
// fan-based ones take none.
const std::vector<Initializer>& initializers() {
  static const std::vector<Initializer> table = {
      {{"zeros", ""}, [](const InitSpec&, const Fans&, Draws&) -> Value { return [] { return 0.0; }; }},
      {{"ones", ""}, [](const InitSpec&, const Fans&, Draws&) -> Value { return [] { return 1.0; }; }},
      {{"constant", "value:float"},
       [](const InitSpec& init, const Fans&, Draws&) -> Value { return [v = arg(init, "value", 0.0)] { return v; }; }},
      {{"normal", "mean:float=0 std:float=1"},
       [](const InitSpec& init, const Fans&, Draws& draws) -> Value {
         return [&draws, m = arg(init, "mean", 0.0), s = arg(init, "std", 1.0)] { return draws.normal(m, s); };
       }},
      {{"uniform", "lo:float=0 hi:float=1"},
       [](const InitSpec& init, const Fans&, Draws& draws) -> Value {
         return [&draws, lo = arg(init, "lo", 0.0), hi = arg(init, "hi", 1.0)] { return draws.uniform(lo, hi); };
       }},
      {{"glorot_uniform", ""},
       [](const InitSpec&, const Fans& f, Draws& draws) -> Value {
         return [&draws, a = std::sqrt(6.0 / (f.in + f.out))] { return draws.uniform(-a, a); };
       }},
      {{"glorot_normal", ""},
       [](const InitSpec&, const Fans& f, Draws& draws) -> Value {
         return [&draws, s = std::sqrt(2.0 / (f.in + f.out))] { return draws.normal(0, s); };
       }},
      {{"he_uniform", ""},
       [](const InitSpec&, const Fans& f, Draws& draws) -> Value {
         return [&draws, a = std::sqrt(6.0 / f.in)] { return draws.uniform(-a, a); };
       }},
      {{"he_normal", ""},
       [](const InitSpec&, const Fans& f, Draws& draws) -> Value {
         return [&draws, s = std::sqrt(2.0 / f.in)] { return draws.normal(0, s); };
       }},
  };
  return table;
}

template <typename T>
void fill(Tensor& t, const InitSpec& init, Draws& draws) {
  const std::vector<Initializer>& table = initializers();
  auto it = std::find_if(table.begin(), table.end(), [&](const Initializer& i) { return i.kind.name == init.kind; });
  if (it == table.end()) fail({}, "unknown initializer '{}'", init.kind);
  Value value = it->make(init, fans(t.shape()), draws);
  T* out = t.as<T>();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(value());
}

}  // namespace

const std::vector<InitKind>& init_kinds() {
  static const std::vector<InitKind> kinds = [] {
    std::vector<InitKind> k;
    for (const Initializer& i : initializers()) k.push_back(i.kind);
    return k;
  }();
  return kinds;
}

Fans fans(const Shape& shape) {
  auto d = [](int64_t v) { return static_cast<double>(v); };
  if (shape.empty()) return {};
  if (shape.size() == 1) return {d(shape[0]), d(shape[0])};
  if (shape.size() == 4) {
    double receptive = d(shape[2]) * d(shape[3]);
    return {d(shape[1]) * receptive, d(shape[0]) * receptive};
  }
  double receptive = 1;
  for (size_t i = 0; i + 2 < shape.size(); ++i) receptive *= d(shape[i]);
  return {d(shape[shape.size() - 2]) * receptive, d(shape.back()) * receptive};
}

Tensor initialize(const InitSpec& init, const TensorType& type, uint64_t seed, std::string_view name) {
  if (!is_float(type.dtype)) fail({}, "cannot initialize '{}' of type {}: initializers make float tensors", name, to_string(type));
  Tensor t(type);
  Draws draws(stream_seed(seed, name));
  if (type.dtype == DType::F32) fill<float>(t, init, draws);
  else fill<double>(t, init, draws);
  return t;
}

}  // namespace gradc
