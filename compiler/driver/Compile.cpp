// The back of the pipeline behind <gradc/gradc.h>: graphs -> LLVM module -> native code.
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <fmt/ranges.h>

#include "codegen/Jit.h"
#include "driver/Memory.h"
#include "gradc/gradc.h"
#include "ir/Verifier.h"
#include "passes/Fusion.h"
#include "passes/MemoryPlan.h"
#include "passes/Simplify.h"

namespace gradc {

namespace {

using Clock = std::chrono::steady_clock;

// Codegen trusts the Kernel program: a fault here is a compiler bug, reported before any code.
void check_kernels(const KernelProgram& p, bool planned, std::string_view after) {
  std::vector<std::string> faults = verify_kernels(p, planned);
#ifndef NDEBUG  // check_plan compares every pair of buffers: debug builds only (tests call it on every sample)
  if (planned)
    for (std::string& f : check_plan(p.buffers, p.arena_bytes)) faults.push_back(std::move(f));
#endif
  if (!faults.empty())
    fail({}, "internal error: after {}, the kernel program of '{}' is unsound: {}", after, p.graph.name,
         fmt::join(faults, "; "));
}

KernelProgram planned(const Graph& g, bool fuse, Stopwatch& watch, std::string_view which) {
  KernelProgram p = gradc::fuse(g, {.fuse = fuse});
  check_kernels(p, false, "fusion");
  watch.lap(fmt::format("{} fusion", which));
  plan_memory(p);
  check_kernels(p, true, "the memory plan");
  watch.lap(fmt::format("{} memory plan", which));
  return p;
}

codegen::EmittedModule emit(const Graph& g, bool check_finite, Stopwatch watch = Stopwatch()) {
  std::optional<KernelProgram> train;
  if (g.trains()) {
    Graph simplified = simplified_graph(g);
    watch.lap("train graph (autodiff, optimizer, simplify)");
    train = planned(simplified, true, watch, "train");
  }
  Graph forward = predict_graph(g);
  watch.lap("predict graph");
  KernelProgram predict = planned(forward, true, watch, "predict");
  // Refused before any code is made when it would not fit in this machine's memory.
  require_memory(g.name, memory_use(train ? &*train : nullptr, predict));
  codegen::EmittedModule m = codegen::emit_module(train ? &*train : nullptr, predict, check_finite);
  watch.lap("LLVM IR emission");
  return m;
}

// GRADC_TIME_COMPILE=1 prints each compile's phases to stderr.
void print_phases(const Model& m) {
  const char* flag = std::getenv("GRADC_TIME_COMPILE");
  if (!flag || !*flag || std::string_view(flag) == "0") return;
  std::string text = fmt::format("gradc: compiled {} in {:.1f} ms ({})\n", m.name, m.compile_ms,
                                 m.cached ? "cached object" : "compiled afresh");
  for (const auto& [phase, ms] : m.compile_phases) text += fmt::format("  {:>8.2f} ms  {}\n", ms, phase);
  std::fputs(text.c_str(), stderr);
}

// The compile of a parsed spec, its clock started (and phases timed) before parsing.
Model compile_from(const Graph& g, const CompileOptions& options, Clock::time_point start, Phases phases) {
  Model m;
  codegen::EmittedModule module = emit(g, options.check_finite, Stopwatch(&phases));
  codegen::JitReport report;
  static_cast<Program&>(m) = codegen::jit(
      std::move(module), {.cache_dir = options.cache_dir.value_or(codegen::cache_dir_from_environment())}, &report);
  m.spec = g;
  m.cached = report.cached;
  m.compile_ms = ms_since(start);
  phases.insert(phases.end(), report.phases.begin(), report.phases.end());
  m.compile_phases = std::move(phases);
  print_phases(m);
  return m;
}

template <typename Parse>
Model parse_and_compile(Parse parse, const CompileOptions& options) {
  Clock::time_point start = Clock::now();
  Graph g = parse();
  return compile_from(g, options, start, {{"parse", ms_since(start)}});
}

}  // namespace

Graph predict_graph(const Graph& g) {
  Graph forward = g;
  forward.minimize.reset();
  forward.assigns.clear();
  forward = simplify(std::move(forward));
  verify_or_throw(forward);
  return forward;
}

KernelProgram train_kernels(const Graph& g, bool fuse) {
  if (!g.trains()) fail({}, "the spec minimizes nothing, so it has no train step (its predict: predict_kernels)");
  Stopwatch untimed;
  return planned(simplified_graph(g), fuse, untimed, "train");
}

KernelProgram predict_kernels(const Graph& g, bool fuse) {
  Stopwatch untimed;
  return planned(predict_graph(g), fuse, untimed, "predict");
}

Model compile(const Graph& g, const CompileOptions& options) { return compile_from(g, options, Clock::now(), {}); }

Model compile_file(const std::string& path, const CompileOptions& options) {
  return parse_and_compile([&] { return load_spec_file(path); }, options);
}

Model compile_string(std::string_view text, const std::string& file, const CompileOptions& options) {
  return parse_and_compile([&] { return load_spec(text, file); }, options);
}

std::string Model::dump(Stage stage, bool dot) const { return gradc::dump(spec, stage, dot); }

// The stages of `gradc dump` after the graph stages: the train step's (predict's when the spec
// minimizes nothing).
std::string dump_backend(const Graph& g, Stage stage) {
  if (stage == Stage::Fused || stage == Stage::Plan) {
    KernelProgram p = g.trains() ? train_kernels(g) : predict_kernels(g);
    if (stage == Stage::Fused) return print_kernels(p);
    return fmt::format("{}# memory (as gradc bench and train report it): {}\n", print_plan(p), describe(memory_use(g)));
  }
  if (stage == Stage::Asm) return codegen::host_assembly(emit(g, true));
  codegen::EmittedModule m = emit(g, true);
  std::string before = codegen::print_module(m);
  return fmt::format("; ---- LLVM IR as gradc emits it (one function per op)\n{}\n"
                     "; ---- after LLVM's O3 pipeline for the host CPU\n{}",
                     before, codegen::optimized_ir(std::move(m)));
}

}  // namespace gradc
