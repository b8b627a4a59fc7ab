// The back of the pipeline behind <gradc/gradc.h>: graphs -> LLVM module -> native code.
#include <chrono>

#include "codegen/Jit.h"
#include "gradc/gradc.h"
#include "ir/Verifier.h"
#include "passes/Simplify.h"

namespace gradc {

namespace {

bool trains(const Graph& g) { return g.minimize || !g.assigns.empty(); }

codegen::EmittedModule emit(const Graph& g) {
  std::optional<Graph> train;
  if (trains(g)) train = simplified_graph(g);
  return codegen::emit_module(train ? &*train : nullptr, predict_graph(g));
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

// The LLVM stages of `gradc dump`.
std::string dump_llvm(const Graph& g, Stage stage) {
  if (stage == Stage::Asm) return codegen::host_assembly(emit(g));
  codegen::EmittedModule m = emit(g);
  std::string before = codegen::print_module(m);
  return fmt::format("; ---- LLVM IR as gradc emits it (one function per op)\n{}\n"
                     "; ---- after LLVM's O3 pipeline for the host CPU\n{}",
                     before, codegen::optimized_ir(std::move(m)));
}

}  // namespace gradc
