// The back of the pipeline behind <gradc/gradc.h>: graphs -> LLVM module -> native code.
#include <chrono>

#include "codegen/Jit.h"
#include "gradc/gradc.h"
#include "ir/Verifier.h"
#include "passes/Fusion.h"
#include "passes/MemoryPlan.h"
#include "passes/Simplify.h"

namespace gradc {

namespace {

bool trains(const Graph& g) { return g.minimize || !g.assigns.empty(); }

KernelProgram planned(const Graph& g, bool fuse) {
  KernelProgram p = gradc::fuse(g, {.fuse = fuse});
  plan_memory(p);
  return p;
}

codegen::EmittedModule emit(const Graph& g) {
  std::optional<KernelProgram> train;
  if (trains(g)) train = train_kernels(g);
  return codegen::emit_module(train ? &*train : nullptr, predict_kernels(g));
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
  if (!trains(g)) fail({}, "the spec minimizes nothing, so it has no train step (its predict: predict_kernels)");
  return planned(simplified_graph(g), fuse);
}

KernelProgram predict_kernels(const Graph& g, bool fuse) { return planned(predict_graph(g), fuse); }

Model compile(const Graph& g) {
  auto start = std::chrono::steady_clock::now();
  Model m;
  static_cast<Program&>(m) = codegen::jit(emit(g));
  m.spec = g;
  m.compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return m;
}

Model compile_file(const std::string& path) { return compile(load_spec_file(path)); }

Model compile_string(std::string_view text, const std::string& file) { return compile(load_spec(text, file)); }

std::string Model::dump(Stage stage, bool dot) const { return gradc::dump(spec, stage, dot); }

// The stages of `gradc dump` after the graph stages: the train step's (predict's when the spec
// minimizes nothing).
std::string dump_backend(const Graph& g, Stage stage) {
  if (stage == Stage::Fused || stage == Stage::Plan) {
    KernelProgram p = trains(g) ? train_kernels(g) : predict_kernels(g);
    return stage == Stage::Fused ? print_kernels(p) : print_plan(p);
  }
  if (stage == Stage::Asm) return codegen::host_assembly(emit(g));
  codegen::EmittedModule m = emit(g);
  std::string before = codegen::print_module(m);
  return fmt::format("; ---- LLVM IR as gradc emits it (one function per op)\n{}\n"
                     "; ---- after LLVM's O3 pipeline for the host CPU\n{}",
                     before, codegen::optimized_ir(std::move(m)));
}

}  // namespace gradc
