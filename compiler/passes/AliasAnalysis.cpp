// Alias analysis (see AliasAnalysis.h): a kernel may store a value over bytes that hold another
// only when nothing reads the old bytes after it (no later kernel, no final copy: the live
// ranges tell) and the kernel itself reads them, if at all, at the very element it writes
// (the op table's elementwise form), so that every load of an element comes before the store
// to it. Saving a buffer this way is what lets an optimizer update its params in place and a
// backward pass overwrite the gradients it has finished with.
#include "passes/AliasAnalysis.h"

#include <algorithm>
#include <map>

namespace gradc {

namespace {

// Does member m read its operands only at the element its kernel's loop writes (the op table's
// elementwise form)? Then its kernel may store a result over one of them: every load of an
// element comes before the store to it. one_hot reads its row's class id, a reduction folds
// a group.
bool reads_at_element(const Graph& g, ValueId m) { return op_info(g[m].op).form == FusionForm::Elementwise; }

// May kernel k write the new value of `target` over the old one? Only if no other kernel reads
// the old value later, no copy reads it, and k itself reads it (if at all) at the very
// element it writes: a Loop kernel or a matmul's or conv's epilogue over the target's shape.
bool may_update_in_place(const KernelProgram& p, const ValueUses& uses, ValueId target, int32_t k) {
  const Graph& g = p.graph;
  if (uses.read_by_copy[static_cast<size_t>(target)]) return false;
  for (int32_t j : uses.readers[static_cast<size_t>(target)]) {
    const Kernel& kernel = p.kernels[static_cast<size_t>(j)];
    if (j < k) continue;
    if (j > k || kernel.kind == KernelKind::Op || kernel.domain != g[target].type.shape) return false;
    bool headed = kernel.kind == KernelKind::MatMul || kernel.kind == KernelKind::Conv;  // the head reads a and b whole
    if (headed && (g.viewed(kernel.a) == target || g.viewed(kernel.b) == target)) return false;
    if (kernel.kind == KernelKind::RowWise && g.viewed(kernel.rows) == target) return false;
    for (ValueId m : kernel.members)
      for (ValueId a : g[m].args)
        if (g.viewed(a) == target && (a != target || !reads_at_element(g, m)))
          return false;
  }
  return true;
}

}  // namespace

void place_in_slots(KernelProgram& p, const ValueUses& uses) {
  const Graph& g = p.graph;
  std::vector<Location>& loc = p.locations;
  loc.assign(g.nodes.size(), {});
  std::map<ValueId, int> outputs, assigns;  // how often a value is output, assigned
  // By the value itself: an output that is a view (reshape) of a value is copied from that
  // value's buffer into its own slot; the value has no output slot to be written into.
  std::map<ValueId, ValueId> assigned_to;   // the target of the first assign of a value
  for (const Output& o : g.outputs) ++outputs[o.value];
  for (const Assign& a : g.assigns) ++assigns[g.viewed(a.value)], assigned_to.emplace(g.viewed(a.value), a.target);
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& n = g[id];
    if (n.kind == NodeKind::Input || n.kind == NodeKind::Param || n.kind == NodeKind::State) {
      loc[static_cast<size_t>(id)] = {Location::Leaf, 0, id};
      continue;
    }
    int32_t k = uses.first(id);
    if (k < 0) continue;  // a member used only inside its kernel, a constant, a view (locate_aliases)
    if (outputs[id] == 1 && assigns[id] == 0) {
      loc[static_cast<size_t>(id)] = {Location::Output, 0, id};
      continue;
    }
    if (outputs[id] == 0 && assigns[id] == 1) {
      ValueId target = assigned_to.at(id);
      if (may_update_in_place(p, uses, target, k)) loc[static_cast<size_t>(id)] = {Location::Assigned, 0, target};
    }
  }
}

// An output of a kernel may take the buffer of an input of the same type that the kernel reads
// at the very element it writes and that nobody reads after it (the kernel loads such inputs
// before it stores): `dx = dy * mask` overwrites dy, a gradient summed from two uses
// accumulates in place.
void share_in_place(KernelProgram& p, const ValueUses& uses) {
  const Graph& g = p.graph;
  const std::vector<bool>& read_by_copy = uses.read_by_copy;
  std::map<ValueId, size_t> buffer_of;
  for (size_t i = 0; i < p.buffers.size(); ++i) buffer_of[p.buffers[i].value] = i;
  std::vector<bool> gone(p.buffers.size(), false);
  std::vector<bool> viewed(g.nodes.size(), false);  // a view of it is read by some kernel
  for (const Kernel& kernel : p.kernels)
    for (ValueId in : kernel.inputs)
      if (g.viewed(in) != in) viewed[static_cast<size_t>(g.viewed(in))] = true;
  for (size_t k = 0; k < p.kernels.size(); ++k) {
    const Kernel& kernel = p.kernels[k];
    if (kernel.kind == KernelKind::Op) continue;
    std::vector<size_t> taken;  // buffers already given to an output of this kernel
    for (ValueId v : kernel.outputs) {
      auto vb = buffer_of.find(v);
      if (vb == buffer_of.end() || gone[vb->second] || g[v].type.shape != kernel.domain) continue;
      for (ValueId u : kernel.inputs) {
        auto ub = buffer_of.find(u);
        if (ub == buffer_of.end() || gone[ub->second] || g[u].type != g[v].type || read_by_copy[static_cast<size_t>(u)]) continue;
        ArenaBuffer& ubuf = p.buffers[ub->second];
        if (ubuf.last != static_cast<int32_t>(k) || std::find(taken.begin(), taken.end(), ub->second) != taken.end()) continue;
        if (u == kernel.a || u == kernel.b || u == kernel.rows) continue;
        bool same_element = true;  // every member reads u at the element it computes
        for (ValueId m : kernel.members)
          for (ValueId a : g[m].args)
            if (a == u && !reads_at_element(g, m)) same_element = false;
        if (viewed[static_cast<size_t>(u)]) same_element = false;  // no view of u is read anywhere
        if (!same_element) continue;
        ArenaBuffer& vbuf = p.buffers[vb->second];
        ubuf.last = std::max(ubuf.last, vbuf.last);
        gone[vb->second] = true;
        taken.push_back(ub->second);
        buffer_of[v] = ub->second;
        break;
      }
    }
  }
  // The shared buffers' values: the first holder names the buffer; the others follow it.
  std::vector<ArenaBuffer> kept;
  std::map<size_t, size_t> renumber;
  for (size_t i = 0; i < p.buffers.size(); ++i)
    if (!gone[i]) renumber[i] = kept.size(), kept.push_back(p.buffers[i]);
  p.shared.clear();
  for (auto [v, i] : buffer_of)
    if (kept[renumber.at(i)].value != v) p.shared.emplace_back(v, kept[renumber.at(i)].value);
  p.buffers = std::move(kept);
}

void locate_aliases(KernelProgram& p) {
  const Graph& g = p.graph;
  std::vector<Location>& loc = p.locations;
  for (auto [v, holder] : p.shared) loc[static_cast<size_t>(v)] = loc[static_cast<size_t>(holder)];
  for (ValueId id = 0; id < g.size(); ++id)  // views read their root's bytes
    if (g.viewed(id) != id) loc[static_cast<size_t>(id)] = loc[static_cast<size_t>(g.viewed(id))];
}

}  // namespace gradc
