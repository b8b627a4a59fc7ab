// Parameter initializers: fan rules, distributions, reproducibility.
#include <doctest/doctest.h>

#include <cmath>

#include "gradc/Init.h"

using namespace gradc;

namespace {

struct Moments {
  double mean = 0, var = 0, lo = 1e300, hi = -1e300;
};

Moments moments(const Tensor& t) {
  Moments m;
  const float* v = t.as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) m.mean += v[i], m.lo = std::min<double>(m.lo, v[i]), m.hi = std::max<double>(m.hi, v[i]);
  m.mean /= static_cast<double>(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) m.var += (v[i] - m.mean) * (v[i] - m.mean);
  m.var /= static_cast<double>(t.numel());
  return m;
}

const TensorType kDense{DType::F32, {784, 128}};  // fan in 784, fan out 128
const TensorType kConv{DType::F32, {32, 16, 3, 3}};  // fan in 144, fan out 288

}  // namespace

TEST_CASE("runtime: init fan rules, Keras's for dense [in, out] and PyTorch's for conv [O, C, KH, KW]") {
  CHECK(fans({784, 10}).in == 784);
  CHECK(fans({784, 10}).out == 10);
  CHECK(fans({32, 16, 3, 3}).in == 16 * 9);
  CHECK(fans({32, 16, 3, 3}).out == 32 * 9);
  CHECK(fans({10}).in == 10);
  CHECK(fans({4, 5, 6}).in == 4 * 5);
  CHECK(fans({}).in == 1);
}

TEST_CASE("runtime: init distributions have the bounds and variances of their definitions") {
  double a = std::sqrt(6.0 / (784 + 128));
  Moments g = moments(initialize({"glorot_uniform", {}}, kDense, 1, "w"));
  CHECK(g.lo >= -a);
  CHECK(g.hi <= a);
  CHECK(g.hi > 0.99 * a);
  CHECK(std::fabs(g.mean) < 0.01 * a);
  CHECK(g.var == doctest::Approx(a * a / 3).epsilon(0.02));
  Moments gn = moments(initialize({"glorot_normal", {}}, kDense, 1, "w"));
  CHECK(gn.var == doctest::Approx(2.0 / (784 + 128)).epsilon(0.02));
  Moments hu = moments(initialize({"he_uniform", {}}, kConv, 1, "c"));
  CHECK(hu.hi <= std::sqrt(6.0 / 144));
  CHECK(hu.var == doctest::Approx(2.0 / 144).epsilon(0.05));
  Moments hn = moments(initialize({"he_normal", {}}, kConv, 1, "c"));
  CHECK(hn.var == doctest::Approx(2.0 / 144).epsilon(0.05));
  Moments n = moments(initialize({"normal", {{"mean", 1.5}, {"std", 0.3}}}, kDense, 1, "n"));
  CHECK(n.mean == doctest::Approx(1.5).epsilon(0.01));
  CHECK(std::sqrt(n.var) == doctest::Approx(0.3).epsilon(0.02));
  Moments u = moments(initialize({"uniform", {{"lo", -2}, {"hi", -1}}}, kDense, 1, "u"));
  CHECK(u.lo >= -2);
  CHECK(u.hi < -1);
  CHECK(u.mean == doctest::Approx(-1.5).epsilon(0.01));
  Tensor c = initialize({"constant", {{"value", 0.25}}}, TensorType{DType::F64, {3}}, 1, "c");
  CHECK(c.as<double>()[2] == 0.25);
  CHECK(initialize({"zeros", {}}, kConv, 1, "z") == Tensor(kConv));
  CHECK(initialize({"ones", {}}, TensorType{DType::F32, {2}}, 1, "o") == Tensor::of<float>({2}, {1.0f, 1.0f}));
}

TEST_CASE("runtime: init is reproducible: same seed and name, same values — others differ") {
  Tensor a = initialize({"glorot_uniform", {}}, kDense, 42, "w1");
  CHECK(a == initialize({"glorot_uniform", {}}, kDense, 42, "w1"));
  CHECK_FALSE(a == initialize({"glorot_uniform", {}}, kDense, 43, "w1"));
  CHECK_FALSE(a == initialize({"glorot_uniform", {}}, kDense, 42, "w2"));
  // Pinned values: a change of generator or seeding would change every trained model's start.
  Tensor s = initialize({"uniform", {}}, TensorType{DType::F64, {2}}, 0, "w");
  CHECK(s.as<double>()[0] == 0.57029757596883224);
  CHECK(s.as<double>()[1] == 0.93979010853627865);
  Tensor n = initialize({"normal", {}}, TensorType{DType::F64, {2}}, 0, "w");
  CHECK(n.as<double>()[0] == 1.2078358680065731);
  CHECK(n.as<double>()[1] == -0.90189010914960488);
}

TEST_CASE("runtime: init errors") {
  CHECK_THROWS_WITH_AS(initialize({"xavier", {}}, kDense, 1, "w"), doctest::Contains("unknown initializer 'xavier'"),
                       Error);
  CHECK_THROWS_WITH_AS(initialize({"zeros", {}}, TensorType{DType::I32, {3}}, 1, "y"),
                       doctest::Contains("cannot initialize 'y' of type i32[3]"), Error);
}

// A GEMM task writes a 128-byte column chunk of each row while its neighbour writes the next:
// tensors must start on a cache line or the two threads share one line per row (malloc's
// large blocks start 16 bytes past a page).
TEST_CASE("runtime: tensors start on a 64-byte cache line, small, large, copied or initialized") {
  std::vector<Tensor> tensors;
  for (int64_t n : {1, 3, 100, 1 << 20}) tensors.emplace_back(TensorType{DType::F32, {n}});
  tensors.push_back(tensors.back());
  tensors.push_back(initialize(InitSpec{"glorot_uniform", {}}, TensorType{DType::F32, {1024, 1024}}, 7, "w"));
  for (const Tensor& t : tensors) {
    CAPTURE(t.numel());
    CHECK(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
  }
}
