// `gradc bench`: times the JIT-ed train step on random inputs.
#include <algorithm>
#include <chrono>
#include <random>

#include "driver/Bench.h"
#include "driver/Pipeline.h"
#include "gradc/gradc.h"

namespace gradc {

std::map<std::string, Tensor> random_inputs(const Graph& g, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, Tensor> out;
  for (ValueId id : g.leaves(NodeKind::Input)) {
    const Node& n = g[id];
    Tensor t(n.type);
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (n.type.dtype == DType::I32)
        t.as<int32_t>()[i] = static_cast<int32_t>(std::uniform_int_distribution<int64_t>(0, class_count(g, id) - 1)(rng));
      else if (n.type.dtype == DType::F32)
        t.as<float>()[i] = static_cast<float>(std::normal_distribution<double>()(rng));
      else
        t.as<double>()[i] = std::normal_distribution<double>()(rng);
    }
    out.emplace(n.name, std::move(t));
  }
  return out;
}

BenchReport bench(const Graph& spec, const BenchOptions& options) { return bench(compile(spec), options); }

BenchReport bench(const Model& model, const BenchOptions& options) {
  if (!model.lowered) fail({}, "bench: model '{}' was not made by gradc::compile (it has no Kernel programs)", model.spec.name);
  const Graph& spec = model.spec;
  BenchReport r;
  r.compile_ms = model.compile_ms;
  r.arena_bytes = model.arena_bytes;
  r.memory = memory_use(*model.lowered);  // the programs this model's code was made from
  r.gemm_flops = step_gemm_flops(step_gemms(step_program(*model.lowered)));
  Session session(model, {.threads = options.threads});
  r.threads = session.threads();
  std::map<std::string, Tensor> inputs = random_inputs(spec, 0);
  Feeds feeds;
  for (const auto& [name, t] : inputs) feeds.emplace(name, TensorView(t));
  bool train = model.train_step != nullptr;
  auto run = [&] { train ? (void)session.step(feeds) : (void)session.predict(feeds); };
  // Predict compiles on a thread of its own once the step is callable (Program.h): timed beside
  // it, the step shared a core with LLVM (on 2 threads the first runs were 1.3-1.4x slower).
  (void)model.predict_entry();
  for (int64_t i = 0; i < std::max<int64_t>(options.steps / 10, 1); ++i) run();  // warm caches and pages
  for (int k = 0; k < std::max(options.runs, 1); ++k) {
    auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < options.steps; ++i) run();
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    r.us_per_step.push_back(us / static_cast<double>(options.steps));
  }
  std::vector<double> sorted = r.us_per_step;
  std::sort(sorted.begin(), sorted.end());
  r.median_us = sorted[sorted.size() / 2];
  r.gflops = r.gemm_flops / (r.median_us * 1e3);
  if (options.peak) {  // after the step, so that the two do not share the cores
    r.peak = measure_fma_peak(r.threads);
    r.percent_of_peak = r.peak.gflops > 0 ? 100 * r.gflops / r.peak.gflops : 0;
  }
  return r;
}

}  // namespace gradc
