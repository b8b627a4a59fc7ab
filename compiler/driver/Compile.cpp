// The back of the pipeline behind <gradc/gradc.h>: graphs -> LLVM module -> native code.
#include <unistd.h>

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

int64_t bytes_of(const TensorType& t) { return t.numel() * dtype_bytes(t.dtype); }

// Refuses, before any code is made, a model whose memory would not fit in this machine's:
// its params, state, inputs, outputs and the larger arena.
void check_fits(const KernelProgram* train, const KernelProgram& predict) {
  const Graph& g = train ? train->graph : predict.graph;
  int64_t need = std::max(train ? train->arena_bytes : 0, predict.arena_bytes);
  for (const Node& n : g.nodes)
    if (n.kind == NodeKind::Input || n.kind == NodeKind::Param || n.kind == NodeKind::State) need += bytes_of(n.type);
  for (const Output& o : g.outputs) need += bytes_of(g[o.value].type);
  for (const Output& o : predict.graph.outputs) need += bytes_of(predict.graph[o.value].type);
  int64_t have = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(sysconf(_SC_PAGE_SIZE));
  if (have > 0 && need > have)
    fail({}, "model '{}' needs {} bytes ({:.1f} GiB) for its params, optimizer state, inputs, outputs and arena; "
             "this machine has {} bytes ({:.1f} GiB) of memory",
         g.name, need, static_cast<double>(need) / (1 << 30), have, static_cast<double>(have) / (1 << 30));
}

codegen::EmittedModule emit(const Graph& g) {
  std::optional<KernelProgram> train;
  if (trains(g)) train = train_kernels(g);
  KernelProgram predict = predict_kernels(g);
  check_fits(train ? &*train : nullptr, predict);
  return codegen::emit_module(train ? &*train : nullptr, predict);
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
