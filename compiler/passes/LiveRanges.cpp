// Live ranges: one walk over the schedule records each value's writer and readers (at the
// view root), and the final copies' reads; the memory plan's buffers take their live ranges
// from these, and the alias analysis its "is it read later" from the same records.
#include "passes/LiveRanges.h"

#include <algorithm>

#include "runtime/Format.h"

namespace gradc {

int32_t ValueUses::last(ValueId v) const {
  size_t i = static_cast<size_t>(v);
  return read_by_copy[i] ? end : std::max(last_read[i], writer[i]);
}

ValueUses find_uses(const KernelProgram& p) {
  const Graph& g = p.graph;
  ValueUses uses;
  uses.end = static_cast<int32_t>(p.kernels.size());
  uses.writer.assign(g.nodes.size(), -1);
  uses.last_read.assign(g.nodes.size(), -1);
  uses.readers.assign(g.nodes.size(), {});
  uses.read_by_copy.assign(g.nodes.size(), false);
  for (int32_t k = 0; k < uses.end; ++k) {
    const Kernel& kernel = p.kernels[static_cast<size_t>(k)];
    for (ValueId v : kernel.outputs) {
      int32_t& writer = uses.writer[static_cast<size_t>(v)];
      GRADC_ASSERT(writer < 0, "value {} is stored by kernels {} and {}", v, writer, k);
      writer = k;
    }
    for (ValueId v : kernel.inputs) {
      size_t root = static_cast<size_t>(g.viewed(v));
      uses.last_read[root] = k;
      std::vector<int32_t>& list = uses.readers[root];
      if (list.empty() || list.back() != k) list.push_back(k);
    }
  }
  for (const Output& o : g.outputs) uses.read_by_copy[static_cast<size_t>(g.viewed(o.value))] = true;
  for (const Assign& a : g.assigns) uses.read_by_copy[static_cast<size_t>(g.viewed(a.value))] = true;
  return uses;
}

}  // namespace gradc
