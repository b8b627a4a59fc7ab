// A program that sees include/ alone (its only include directory): it compiles a spec, trains
// it and predicts through <gradc/gradc.h>. It exits 1 unless the loss is finite and falls, so
// that a public header needing an internal one fails to build and a broken API fails to run.
#include <cmath>
#include <cstdio>
#include <vector>

#include <gradc/gradc.h>

namespace {

constexpr const char* kSpec = R"(model consumer
input x : f32[16, 2]
input y : f32[16, 1]
param w : f32[2, 1] = zeros
param b : f32[1] = zeros
pred = add(matmul(x, w), b)
loss = mse(pred, y)
output pred
minimize loss with sgd(lr=0.1)
)";

}  // namespace

int main() {
  try {
    gradc::Model model = gradc::compile_string(kSpec, "consumer.gir", {.cache_dir = ""});
    gradc::Session s(model, {.seed = 1, .threads = 1});
    std::vector<float> xs, ys;  // y = 2 x0 - x1 + 0.5
    for (int i = 0; i < 16; ++i) {
      float x0 = static_cast<float>(i % 4) / 4, x1 = static_cast<float>(i / 4) / 4;
      xs.insert(xs.end(), {x0, x1});
      ys.push_back(2 * x0 - x1 + 0.5f);
    }
    double first = s.step({{"x", xs}, {"y", ys}}), last = first;
    for (int step = 0; step < 50; ++step) last = s.step({{"x", xs}, {"y", ys}});
    const gradc::Tensor& pred = s.predict({{"x", xs}}).at("pred");
    std::printf("loss %.6f -> %.6f, pred[0] %.4f (want %.4f)\n", first, last, pred.as<float>()[0], ys[0]);
    if (!std::isfinite(last) || !(last < first / 4) || pred.numel() != 16) return 1;
  } catch (const gradc::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
