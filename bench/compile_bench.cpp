// compile_bench: compile time per pass on generated models of growing size (issue 14, fault 3).
//
//   build/bench/compile_bench [--chains 1000,10000] [--mlps 10,100,200] [--runs 3] [--no-llvm]
//
// A chain of N tanh ops (`h1 = tanh(h0)`, ..., the mean of the last squared, SGD) and an MLP of L
// dense layers (width 32, relu, softmax cross-entropy, Adam) go through each pass of the
// pipeline in turn, timed on its own: parse (with shape inference), verify, autodiff, optimizer
// lowering, simplify, fusion, memory plan (the train step's; predict's three passes on one row),
// LLVM IR emission, then LLVM's O3 + instruction selection and ORC's link (no object cache).
// Each cell is the median of --runs runs, in ms. Beside each size after the first of a family:
// its ratio to the previous size (its size ratio in brackets); a pass whose ratio stays near the
// size ratio grows linearly. Wall times on a shared machine wait for the CPU; the CPU-time rows
// (the process's, so both O3 threads count) say how much work it was.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "codegen/Jit.h"
#include "codegen/ModuleEmitter.h"
#include "driver/Pipeline.h"
#include "gradc/gradc.h"
#include "ir/Parser.h"
#include "ir/Verifier.h"
#include "passes/Autodiff.h"
#include "passes/Fusion.h"
#include "passes/MemoryPlan.h"
#include "passes/OptimizerLowering.h"
#include "passes/ShapeInference.h"
#include "passes/Simplify.h"
#include "ScaleSpecs.h"

namespace {

using Clock = std::chrono::steady_clock;
using Times = std::vector<std::pair<std::string, double>>;  // pass, ms

// Milliseconds since t, and t moved to now.
double lap_ms(Clock::time_point& t) {
  Clock::time_point now = Clock::now();
  double ms = std::chrono::duration<double, std::milli>(now - t).count();
  t = now;
  return ms;
}

// One compile, pass by pass, as compile_string runs them.
double cpu_ms() {  // the process's CPU time, every thread's
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

Times compile_once(const std::string& text, bool llvm, int* kernels) {
  using namespace gradc;
  Times t;
  double cpu_start = cpu_ms();
  Clock::time_point at = Clock::now();
  Graph g = infer_shapes(parse_spec(text, "bench.gir"));
  t.emplace_back("parse", lap_ms(at));
  verify_or_throw(g);
  t.emplace_back("verify", lap_ms(at));
  Differentiated d = differentiate(g);
  verify_or_throw(d.graph);
  t.emplace_back("autodiff", lap_ms(at));
  Graph trained = lower_optimizer(std::move(d));
  verify_or_throw(trained);
  t.emplace_back("optimizer", lap_ms(at));
  Graph simple = simplify(std::move(trained));
  verify_or_throw(simple);
  t.emplace_back("simplify", lap_ms(at));
  KernelProgram train = fuse(simple);
  if (!verify_kernels(train, false).empty()) fail({}, "unsound kernels after fusion");
  t.emplace_back("fusion", lap_ms(at));
  plan_memory(train);
  if (!verify_kernels(train, true).empty()) fail({}, "unsound kernels after the plan");
  t.emplace_back("memory plan", lap_ms(at));
  *kernels = static_cast<int>(train.kernels.size());
  KernelProgram predict = predict_kernels(g);
  t.emplace_back("predict (graph, fusion, plan)", lap_ms(at));
  double before_llvm = 0;
  for (const auto& [pass, ms] : t) before_llvm += ms;
  t.emplace_back("= every pass before LLVM", before_llvm);
  t.emplace_back("  (its CPU time)", cpu_ms() - cpu_start);
  at = Clock::now();
  codegen::EmittedModule m = codegen::emit_module(&train, predict);
  t.emplace_back("LLVM IR emission", lap_ms(at));
  if (!llvm) return t;
  codegen::JitReport report;
  Program p = codegen::jit(std::move(m), {.cache_dir = ""}, &report);
  double jit_ms = lap_ms(at);
  double o3 = 0, link = 0;
  for (const auto& [phase, ms] : report.phases) {
    if (phase.rfind("O3 + codegen", 0) == 0 || phase.rfind("O3", 0) == 0) o3 = std::max(o3, ms);
    if (phase.rfind("link", 0) == 0) link += ms;
  }
  t.emplace_back("LLVM O3 + codegen (parts in parallel)", o3);
  t.emplace_back("link", link);
  t.emplace_back("other JIT (target machine, ...)", std::max(0.0, jit_ms - o3 - link));
  double total = 0;
  for (const auto& [pass, ms] : t)
    if (pass[0] != '=' && pass[0] != ' ') total += ms;
  t.emplace_back("= spec to callable step", total);
  t.emplace_back("  (its CPU time, both compile threads)", cpu_ms() - cpu_start);
  if (p.predict.valid()) p.predict.wait();  // predict compiles in the background: not timed
  return t;
}

std::vector<int> parse_sizes(const std::string& list) {
  std::vector<int> sizes;
  size_t at = 0;
  while (at < list.size()) {
    size_t comma = list.find(',', at);
    if (comma == std::string::npos) comma = list.size();
    if (comma > at) sizes.push_back(std::stoi(list.substr(at, comma - at)));
    at = comma + 1;
  }
  return sizes;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"compile time per pass on generated chains and MLPs"};
  std::string chains = "1000,10000", mlps = "10,100,200";
  int runs = 3;
  bool no_llvm = false;
  app.add_option("--chains", chains, "chain lengths (tanh ops), comma-separated");
  app.add_option("--mlps", mlps, "MLP depths (layers), comma-separated");
  app.add_option("--runs", runs, "runs per model (the median is printed)")->check(CLI::Range(1, 100));
  app.add_flag("--no-llvm", no_llvm, "stop after LLVM IR emission");
  CLI11_PARSE(app, argc, argv);

  struct Model {
    std::string family, label, text;
    int size;
  };
  std::vector<Model> models;
  for (int n : parse_sizes(chains)) models.push_back({"chain", fmt::format("chain {}", n), gradc::scale::chain_spec(n, 16, 32, "sgd(lr=0.01)"), n});
  for (int n : parse_sizes(mlps)) models.push_back({"mlp", fmt::format("MLP {}", n), gradc::scale::mlp_spec(n, {}, "adam(lr=0.001)"), n});

  std::vector<std::string> passes;
  std::vector<std::map<std::string, double>> medians;
  std::vector<int> kernels;
  for (const Model& m : models) {
    std::map<std::string, std::vector<double>> all;
    int k = 0;
    for (int r = 0; r < runs; ++r)
      for (const auto& [pass, ms] : compile_once(m.text, !no_llvm, &k)) {
        if (std::find(passes.begin(), passes.end(), pass) == passes.end()) passes.push_back(pass);
        all[pass].push_back(ms);
      }
    std::map<std::string, double> med;
    for (auto& [pass, v] : all) {
      std::sort(v.begin(), v.end());
      med[pass] = v[v.size() / 2];
    }
    medians.push_back(std::move(med));
    kernels.push_back(k);
    std::fprintf(stderr, "compile_bench: %s done\n", m.label.c_str());
  }

  std::string header = fmt::format("{:<40}", "ms (median of " + std::to_string(runs) + ")");
  for (size_t i = 0; i < models.size(); ++i) {
    header += fmt::format(" {:>10}", models[i].label);
    if (i > 0 && models[i].family == models[i - 1].family)
      header += fmt::format(" {:>9}", fmt::format("x[{:g}]", double(models[i].size) / models[i - 1].size));
  }
  std::printf("%s\n", header.c_str());
  for (const std::string& pass : passes) {
    std::string row = fmt::format("{:<40}", pass);
    for (size_t i = 0; i < models.size(); ++i) {
      double ms = medians[i].count(pass) ? medians[i].at(pass) : 0;
      row += fmt::format(" {:>10.1f}", ms);
      if (i > 0 && models[i].family == models[i - 1].family) {
        double prev = medians[i - 1].count(pass) ? medians[i - 1].at(pass) : 0;
        row += prev > 0.05 ? fmt::format(" {:>9.1f}", ms / prev) : fmt::format(" {:>9}", "-");
      }
    }
    std::printf("%s\n", row.c_str());
  }
  std::string row = fmt::format("{:<40}", "train kernels");
  for (size_t i = 0; i < models.size(); ++i) {
    row += fmt::format(" {:>10}", kernels[i]);
    if (i > 0 && models[i].family == models[i - 1].family) row += fmt::format(" {:>9}", "");
  }
  std::printf("%s\n", row.c_str());
  return 0;
}
