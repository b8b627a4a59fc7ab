// The back of the pipeline behind <gradc/gradc.h>: graphs -> LLVM module -> native code.
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <fmt/ranges.h>

#include "codegen/Jit.h"
#include "driver/Memory.h"
#include "driver/Pipeline.h"
#include "gradc/gradc.h"

namespace gradc {

namespace {

using Clock = std::chrono::steady_clock;

// The LLVM module of a lowered spec: refused before any code is made when the model would not
// fit in this machine's memory.
codegen::EmittedModule emit(const std::string& name, const Lowered& l, bool check_finite, Phases* phases = nullptr) {
  Stopwatch watch(phases);
  const KernelProgram* train = l.train ? &*l.train : nullptr;
  require_memory(name, memory_use(l));
  codegen::EmittedModule m = codegen::emit_module(train, l.predict, check_finite);
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
  auto lowered = std::make_shared<Lowered>(lower(g));
  for (const PassRun& p : lowered->passes) phases.emplace_back(p.name, p.ms);
  codegen::EmittedModule module = emit(g.name, *lowered, options.check_finite, &phases);
  codegen::JitReport report;
  static_cast<Program&>(m) = codegen::jit(
      std::move(module), {.cache_dir = options.cache_dir.value_or(codegen::cache_dir_from_environment())}, &report);
  m.spec = g;
  m.lowered = std::move(lowered);
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

Model compile(const Graph& g, const CompileOptions& options) { return compile_from(g, options, Clock::now(), {}); }

Model compile_file(const std::string& path, const CompileOptions& options) {
  return parse_and_compile([&] { return load_spec_file(path); }, options);
}

Model compile_string(std::string_view text, const std::string& file, const CompileOptions& options) {
  return parse_and_compile([&] { return load_spec(text, file); }, options);
}

// The stages of `gradc dump` after the graph stages, from a lowered spec: the train step's
// program (predict's when the spec minimizes nothing).
std::string dump_lowered(const std::string& name, const Lowered& l, Stage stage) {
  if (stage == Stage::Fused) return print_kernels(step_program(l));
  if (stage == Stage::Plan)
    return fmt::format("{}# memory (as gradc bench and train report it): {}\n", print_plan(step_program(l)),
                       describe(memory_use(l)));
  if (stage == Stage::Asm) return codegen::host_assembly(emit(name, l, true));
  codegen::EmittedModule m = emit(name, l, true);
  std::string before = codegen::print_module(m);
  return fmt::format("; ---- LLVM IR as gradc emits it (one function per op)\n{}\n"
                     "; ---- after LLVM's O3 pipeline for the host CPU\n{}",
                     before, codegen::optimized_ir(std::move(m)));
}

}  // namespace gradc
