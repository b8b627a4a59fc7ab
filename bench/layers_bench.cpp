// layers_bench: what a layer (layer_norm, dropout, gelu) costs per train step, against the same model without it, in one run:
//
//   build/bench/layers_bench [--runs 7] [--seconds 0.3] [--threads 1]
//
// Each pair is an MLP 784-256-256-10 at batch 128 (Adam) written twice, the layer in one and not
// in the other. Both are compiled once and stepped on the same fixed inputs; their timed runs
// alternate (each about --seconds long) so that the machine's noise falls on both alike, and the
// table gives each one's median µs per step and the ratio with / without.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "Median.h"
#include "gradc/gradc.h"

namespace {

using namespace gradc;
using Clock = std::chrono::steady_clock;

using bench_util::median;

// The MLP with `hidden` (a format of the pre-activation {0} and the layer's number {1}) applied to
// each hidden layer's pre-activation, and the activation `act` (a format of its operand) after it.
std::string mlp(const std::string& hidden, const std::string& act, const std::string& extra_params) {
  std::string spec =
      "input x : f32[128, 784]\ninput y : i32[128]\n"
      "param w1 : f32[784, 256] = glorot_uniform\nparam b1 : f32[256] = zeros\n"
      "param w2 : f32[256, 256] = glorot_uniform\nparam b2 : f32[256] = zeros\n"
      "param w3 : f32[256, 10] = glorot_uniform\nparam b3 : f32[10] = zeros\n" +
      extra_params;
  auto layer = [&](const std::string& in, const std::string& k) {
    std::string h = fmt::format("add(matmul({}, w{}), b{})", in, k, k);
    std::string shaped = fmt::format(fmt::runtime(hidden), h, k);
    return fmt::format(fmt::runtime(act), shaped);
  };
  spec += "h1 = " + layer("x", "1") + "\n";
  spec += "h2 = " + layer("h1", "2") + "\n";
  spec += "loss = softmax_cross_entropy(add(matmul(h2, w3), b3), y)\nminimize loss with adam(lr=0.001)\n";
  return spec;
}

struct Timed {
  std::string name;
  Model model;
  std::unique_ptr<Session> session;
  std::vector<double> us;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"layers_bench: per-step cost of a layer against the same model without it"};
  int runs = 7, threads = 1;
  double seconds = 0.3;
  app.add_option("--runs", runs, "timed runs of each model (median)")->check(CLI::Range(1, 100));
  app.add_option("--seconds", seconds, "length of one timed run")->check(CLI::Range(0.01, 60.0));
  app.add_option("--threads", threads, "threads of each session")->check(CLI::Range(1, 64));
  CLI11_PARSE(app, argc, argv);

  const std::string ln_params =
      "param g1 : f32[256] = ones\nparam be1 : f32[256] = zeros\nparam g2 : f32[256] = ones\nparam be2 : f32[256] = zeros\n";
  struct Pair {
    std::string what, plain, with;
  };
  std::vector<Pair> pairs = {
      {"layer_norm after each hidden Dense", mlp("{0}", "relu({})", ""),
       mlp("layer_norm({0}, g{1}, be{1})", "relu({})", ln_params)},
      {"dropout(0.1) after each hidden layer", mlp("{0}", "relu({})", ""), mlp("{0}", "dropout(relu({}), rate=0.1)", "")},
      {"gelu (erf) instead of relu", mlp("{0}", "relu({})", ""), mlp("{0}", "gelu({})", "")},
      {"gelu (tanh) instead of relu", mlp("{0}", "relu({})", ""), mlp("{0}", "gelu({}, approximate=tanh)", "")},
  };

  std::printf("layers_bench: median µs per train step of %d runs of about %.2f s each, %d thread%s\n\n", runs, seconds,
              threads, threads == 1 ? "" : "s");
  std::printf("%-40s %12s %12s %8s\n", "layer", "without", "with", "ratio");
  for (const Pair& p : pairs) {
    Timed a{"without", compile_string(p.plain, "plain.gir"), nullptr, {}};
    Timed b{"with", compile_string(p.with, "with.gir"), nullptr, {}};
    std::vector<float> x(128 * 784);
    std::vector<int32_t> y(128);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f;
    for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int32_t>(i % 10);
    for (Timed* t : {&a, &b}) {
      t->session = std::make_unique<Session>(t->model, SessionOptions{.seed = 1, .threads = threads});
      for (int w = 0; w < 20; ++w) t->session->step({{"x", x}, {"y", y}});  // warm caches and the pool
    }
    for (int r = 0; r < runs; ++r)
      for (Timed* t : {&a, &b}) {
        int steps = 0;
        auto start = Clock::now();
        double elapsed = 0;
        while (elapsed < seconds) {
          t->session->step({{"x", x}, {"y", y}});
          ++steps;
          elapsed = std::chrono::duration<double>(Clock::now() - start).count();
        }
        t->us.push_back(elapsed * 1e6 / steps);
      }
    double plain = median(a.us), with = median(b.us);
    std::printf("%-40s %12.1f %12.1f %8.3f\n", p.what.c_str(), plain, with, with / plain);
  }
}
