#include "driver/Memory.h"

#include <unistd.h>

#include <climits>

#include <fmt/format.h>

#include "codegen/Gemm.h"
#include "driver/Pipeline.h"
#include "gradc/gradc.h"

namespace gradc {

int64_t add_bytes(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

int64_t mul_bytes(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

int64_t bytes_of(const TensorType& t) {
  int64_t n = dtype_bytes(t.dtype);
  for (int64_t d : t.shape) n = mul_bytes(n, d);
  return n;
}

int64_t MemoryUse::working() const { return add_bytes(arena, gemm_scratch); }

int64_t MemoryUse::total() const {
  int64_t t = working();
  for (int64_t part : {params, state, inputs, outputs}) t = add_bytes(t, part);
  return t;
}

namespace {

// The scratch the JIT gives a program's f32 GEMMs (codegen's plan, as ModuleEmitter asks for it):
// one region past the planned buffers, as large as the largest kernel's, shared by all.
int64_t gemm_scratch_bytes(const KernelProgram& p) {
  int64_t most = 0;
  const int64_t lanes = codegen::host_vector_lanes();
  for (const Kernel& k : p.kernels) {
    if (k.kind != KernelKind::MatMul || k.members.empty() || p.graph[k.members[0]].type.dtype != DType::F32) continue;
    const Shape& d = k.domain;
    const Shape& as = p.graph[k.a].type.shape;
    int64_t kk = k.a_transposed ? as[as.size() - 2] : as.back();
    codegen::GemmPlan plan = codegen::plan_gemm(d.size() == 3 ? d[0] : 1, d[d.size() - 2], d.back(), kk, k.a_transposed,
                                                k.b_transposed, lanes);
    most = std::max(most, plan.scratch_bytes());
  }
  return most;
}

int64_t aligned64(int64_t bytes) { return add_bytes(bytes, 63) / 64 * 64; }

}  // namespace

MemoryUse memory_use(const KernelProgram* train, const KernelProgram& predict) {
  MemoryUse m;
  // The Session's one arena serves both entry points: the larger of their working memories.
  for (const KernelProgram* p : {train, &predict}) {
    if (!p) continue;
    int64_t scratch = gemm_scratch_bytes(*p);
    int64_t arena = scratch > 0 ? aligned64(p->arena_bytes) : p->arena_bytes;
    if (add_bytes(arena, scratch) > m.working()) m.arena = arena, m.gemm_scratch = scratch;
  }
  const Graph& g = train ? train->graph : predict.graph;
  for (const Node& n : g.nodes) {
    int64_t b = bytes_of(n.type);
    if (n.kind == NodeKind::Param) m.params = add_bytes(m.params, b);
    if (n.kind == NodeKind::State) m.state = add_bytes(m.state, b);
    if (n.kind == NodeKind::Input) m.inputs = add_bytes(m.inputs, b);
  }
  for (const KernelProgram* p : {train, &predict})
    if (p)
      for (const Output& o : p->graph.outputs) m.outputs = add_bytes(m.outputs, bytes_of(p->graph[o.value].type));
  return m;
}

MemoryUse memory_use(const Lowered& l) { return memory_use(l.train ? &*l.train : nullptr, l.predict); }

MemoryUse memory_use(const Graph& spec) { return memory_use(lower(spec)); }

std::string describe(const MemoryUse& m) {
  auto n = [](int64_t b) { return b == INT64_MAX ? std::string("more than 2^63") : fmt::format("{}", b); };
  double total = static_cast<double>(m.total());
  std::string human = total >= (1 << 30) ? fmt::format("{:.1f} GiB", total / (1 << 30)) : fmt::format("{:.1f} MiB", total / (1 << 20));
  return fmt::format("arena {} + GEMM scratch {} = {} bytes; params {}; state {}; inputs {}; outputs {}; total {} bytes ({})",
                     n(m.arena), n(m.gemm_scratch), n(m.working()), n(m.params), n(m.state), n(m.inputs), n(m.outputs),
                     n(m.total()), human);
}

int64_t physical_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? mul_bytes(pages, page) : 0;
}

void require_memory(const std::string& model, const MemoryUse& m, std::string_view what) {
  int64_t have = physical_memory_bytes();
  if (have <= 0 || m.total() <= have) return;
  fail({}, "model '{}' needs {}{} bytes ({:.1f} GiB){}, more than this machine's {} bytes ({:.1f} GiB) of memory: {}",
       model, m.total() == INT64_MAX ? "more than " : "", m.total(), static_cast<double>(m.total()) / (1 << 30),
       what.empty() ? "" : fmt::format(" {}", what), have, static_cast<double>(have) / (1 << 30), describe(m));
}

}  // namespace gradc
