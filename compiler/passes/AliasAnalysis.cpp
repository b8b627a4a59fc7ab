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

// May kernel k store a value over the bytes of u? Only if nothing reads u after k (no later
// kernel, no final copy) and k itself reads u, if at all, at the very element it writes: a
// Loop kernel or a matmul's, conv's or row op's epilogue over u's shape, not the head (which
// reads a and b, or the rows, whole), and every member that reads u reads u itself (not a
// view of it) with the elementwise form.
bool may_write_over(const KernelProgram& p, const ValueUses& uses, int32_t k, ValueId u) {
  const Graph& g = p.graph;
  size_t i = static_cast<size_t>(u);  // a view root: readers are counted there
  if (uses.read_by_copy[i] || uses.last_read[i] > k) return false;
  if (uses.last_read[i] < k) return true;  // k does not read u
  const Kernel& kernel = p.kernels[static_cast<size_t>(k)];
  if (kernel.kind == KernelKind::Alone || kernel.domain != g[u].type.shape) return false;
  bool headed = kernel.kind == KernelKind::MatMul || kernel.kind == KernelKind::Conv;
  if (headed && (g.viewed(kernel.a) == u || g.viewed(kernel.b) == u)) return false;
  if (kernel.kind == KernelKind::RowWise && g.viewed(kernel.rows) == u) return false;
  for (ValueId m : kernel.members)
    for (ValueId a : g[m].args)
      if (g.viewed(a) == u && (a != u || !reads_at_element(g, m))) return false;
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
      if (may_write_over(p, uses, k, target)) loc[static_cast<size_t>(id)] = {Location::Assigned, 0, target};
    }
  }
}

// An output of a kernel may take the buffer of an input of the same type that the kernel may
// write over (above), and of which no view is read anywhere: `dx = dy * mask` overwrites dy,
// a gradient summed from two uses accumulates in place. Values that took a buffer may pass it
// on in a later kernel; an output takes one buffer at most, and a buffer goes to one output of
// a kernel.
void share_in_place(KernelProgram& p, const ValueUses& uses) {
  const Graph& g = p.graph;
  std::map<ValueId, size_t> buffer_of;
  for (size_t i = 0; i < p.buffers.size(); ++i) buffer_of[p.buffers[i].value] = i;
  std::vector<bool> gone(p.buffers.size(), false);
  std::vector<bool> viewed(g.nodes.size(), false);  // a view of it is read by some kernel
  for (const Kernel& kernel : p.kernels)
    for (ValueId in : kernel.inputs)
      if (g.viewed(in) != in) viewed[static_cast<size_t>(g.viewed(in))] = true;
  for (size_t k = 0; k < p.kernels.size(); ++k) {
    const Kernel& kernel = p.kernels[k];
    std::vector<size_t> taken;  // buffers already given to an output of this kernel
    for (ValueId v : kernel.outputs) {
      auto vb = buffer_of.find(v);
      if (vb == buffer_of.end() || gone[vb->second]) continue;
      for (ValueId u : kernel.inputs) {
        auto ub = buffer_of.find(u);
        if (ub == buffer_of.end() || gone[ub->second] || std::find(taken.begin(), taken.end(), ub->second) != taken.end()) continue;
        if (g[u].type != g[v].type || viewed[static_cast<size_t>(u)] || !may_write_over(p, uses, static_cast<int32_t>(k), u)) continue;
        ArenaBuffer &ubuf = p.buffers[ub->second], &vbuf = p.buffers[vb->second];
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
