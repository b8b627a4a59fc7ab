// The Kernel program's verifier: what fusion and the memory plan must have made true before
// codegen trusts it. Every kernel reads only values that exist when it runs: inputs, params,
// state and constants, or what an earlier kernel stored (a view reads what it views). Every
// value a member reads is another member, one of the kernel's inputs or a constant; what a head
// reads (a MatMul or Conv kernel's operands, a RowWise kernel's rows and class ids) is read from
// memory before any member runs, so it is an input, never a member or a constant (codegen
// passes a head its operands by address). After planning, every value a kernel reads or stores
// has a place.
#include <fmt/format.h>

#include <unordered_set>

#include "ir/Kernel.h"

namespace gradc {

namespace {

std::string named(const Graph& g, ValueId id) {
  return g[id].name.empty() ? fmt::format("%{}", id) : g[id].name;
}

}  // namespace

std::vector<std::string> verify_kernels(const KernelProgram& p, bool planned) {
  const Graph& g = p.graph;
  std::vector<std::string> faults;
  std::vector<int> stored_by(g.nodes.size(), -1);  // the kernel that stores a value
  for (size_t k = 0; k < p.kernels.size(); ++k)
    for (ValueId v : p.kernels[k].outputs) {
      if (stored_by[static_cast<size_t>(v)] >= 0)
        faults.push_back(fmt::format("kernel {} stores {}, which kernel {} stores too", p.kernels[k].name, named(g, v),
                                     p.kernels[static_cast<size_t>(stored_by[static_cast<size_t>(v)])].name));
      stored_by[static_cast<size_t>(v)] = static_cast<int>(k);
    }
  auto has_place = [&](ValueId v) {
    return static_cast<size_t>(v) < p.locations.size() && p.locations[static_cast<size_t>(v)].kind != Location::None;
  };
  for (size_t k = 0; k < p.kernels.size(); ++k) {
    const Kernel& kernel = p.kernels[k];
    for (ValueId m : kernel.members)  // codegen has nothing to emit for one (ir/Composites.cpp)
      if (g[m].kind == NodeKind::Op && op_info(g[m].op).composite())
        faults.push_back(fmt::format("kernel {} computes {} with {}, a composite op that was not expanded", kernel.name,
                                     named(g, m), op_info(g[m].op).name));
    std::unordered_set<ValueId> members(kernel.members.begin(), kernel.members.end());
    std::unordered_set<ValueId> inputs(kernel.inputs.begin(), kernel.inputs.end());
    // Member m reads v: from memory before anything runs (`head`), or at its element.
    auto reads = [&](ValueId m, ValueId v, bool head) {
      if (inputs.count(v)) return;
      bool constant = g[g.viewed(v)].kind == NodeKind::Constant;
      if (!head && (members.count(v) || constant)) return;
      std::string reader = fmt::format("kernel {} computes {} ({})", kernel.name, named(g, m), op_info(g[m].op).name);
      if (!head)
        faults.push_back(fmt::format("{} from {}, which is neither a member nor one of its inputs", reader, named(g, v)));
      else if (members.count(v))
        faults.push_back(fmt::format("{} from {} in memory, which a member of the same kernel computes only after it", reader,
                                     named(g, v)));
      else
        faults.push_back(fmt::format("{} from {} in memory, which is not one of its inputs{}", reader, named(g, v),
                                     constant ? " (a constant, which has no place in memory)" : ""));
    };
    for (ValueId m : kernel.members) {
      if (g[m].kind != NodeKind::Op) continue;
      if ((kernel.kind == KernelKind::MatMul || kernel.kind == KernelKind::Conv) && m == kernel.members[0]) {
        reads(m, kernel.a, true);
        reads(m, kernel.b, true);
        continue;
      }
      bool row_op = kernel.kind == KernelKind::RowWise && op_info(g[m].op).form == FusionForm::Rowwise;
      for (ValueId a : g[m].args) reads(m, a, row_op);
    }
    for (ValueId v : kernel.inputs) {
      ValueId root = g.viewed(v);
      NodeKind kind = g[root].kind;
      if (kind == NodeKind::Constant) continue;
      if (kind == NodeKind::Op) {
        int by = stored_by[static_cast<size_t>(root)];
        if (by < 0)
          faults.push_back(fmt::format("kernel {} reads {}, which no kernel stores", kernel.name, named(g, v)));
        else if (by >= static_cast<int>(k))
          faults.push_back(fmt::format("kernel {} reads {} before kernel {} stores it", kernel.name, named(g, v),
                                       p.kernels[static_cast<size_t>(by)].name));
      }
      if (planned && !has_place(v))
        faults.push_back(fmt::format("kernel {} reads {}, which has no place in memory", kernel.name, named(g, v)));
    }
    if (planned)
      for (ValueId v : kernel.outputs)
        if (!has_place(v))
          faults.push_back(fmt::format("kernel {} stores {}, which has no place in memory", kernel.name, named(g, v)));
  }
  return faults;
}

}  // namespace gradc
