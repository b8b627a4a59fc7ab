// The memory plan's entry point: the three steps in order (as XLA's buffer assignment runs
// its alias analysis, live ranges and heap simulator): each value's uses (LiveRanges.h), where
// each may be written other than a buffer of its own (AliasAnalysis.h), then the buffers
// packed into one arena (ArenaPacking.h); and around them the final copies and the totals
// that `gradc dump --stage plan` and the memory report print.
#include "passes/MemoryPlan.h"

#include <map>

#include "passes/AliasAnalysis.h"
#include "passes/ArenaPacking.h"
#include "passes/LiveRanges.h"

namespace gradc {

namespace {

int64_t bytes_of(const Node& n) { return saturating_bytes(n.type); }

// An assign takes effect at once, so a param or state that another assign reads and that is
// itself assigned is staged first: a buffer live only at the final copies. Returns each
// staged leaf's buffer in p.buffers.
std::map<ValueId, size_t> add_staging_buffers(KernelProgram& p, int32_t end) {
  const Graph& g = p.graph;
  std::map<ValueId, size_t> staged_index;  // leaf -> its staging buffer in p.buffers
  std::vector<bool> is_target(g.nodes.size(), false);
  for (const Assign& a : g.assigns) is_target[static_cast<size_t>(a.target)] = true;
  for (const Assign& a : g.assigns) {
    ValueId src = g.viewed(a.value);
    const Node& s = g[src];
    bool overwritten = is_target[static_cast<size_t>(src)];
    if ((s.kind == NodeKind::Param || s.kind == NodeKind::State) && overwritten && !staged_index.count(src)) {
      staged_index[src] = p.buffers.size();
      p.buffers.push_back({src, bytes_of(s), 0, end, end});
    }
  }
  return staged_index;
}

// Final copies: outputs, then staging of params and states that assigns read, then assigns.
void add_final_copies(KernelProgram& p, const std::map<ValueId, size_t>& staged_index) {
  const Graph& g = p.graph;
  const std::vector<Location>& loc = p.locations;
  auto location_of = [&](ValueId v) { return loc[static_cast<size_t>(g.viewed(v))]; };
  for (const Output& o : g.outputs) {
    Location to{Location::Output, 0, o.value};
    if (location_of(o.value) != to) p.copies.push_back({o.value, location_of(o.value), to});
  }
  for (auto [leaf, i] : staged_index)
    p.copies.push_back({leaf, loc[static_cast<size_t>(leaf)], {Location::Arena, p.buffers[i].offset, leaf}});
  for (const Assign& a : g.assigns) {
    Location to{Location::Assigned, 0, a.target};
    ValueId src = g.viewed(a.value);
    auto staged = staged_index.find(src);
    Location from = staged != staged_index.end() ? Location{Location::Arena, p.buffers[staged->second].offset, src} : location_of(a.value);
    if (from != to) p.copies.push_back({a.value, from, to});
  }
}

}  // namespace

void plan_memory(KernelProgram& p) {
  const Graph& g = p.graph;
  const ValueUses uses = find_uses(p);  // 1. live ranges
  place_in_slots(p, uses);              // 2. alias analysis: values written straight into slots,
  for (ValueId id = 0; id < g.size(); ++id)  // every other stored value into a buffer of its own,
    if (p.locations[static_cast<size_t>(id)].kind == Location::None && uses.first(id) >= 0)
      p.buffers.push_back({id, bytes_of(g[id]), 0, uses.first(id), uses.last(id)});
  share_in_place(p, uses);  // or over one of its kernel's inputs
  std::map<ValueId, size_t> staged_index = add_staging_buffers(p, uses.end);
  p.arena_bytes = place_buffers(p.buffers);  // 3. packing
  for (const ArenaBuffer& b : p.buffers)
    if (!staged_index.count(b.value) || g[b.value].kind == NodeKind::Op) p.locations[static_cast<size_t>(b.value)] = {Location::Arena, b.offset, b.value};
  locate_aliases(p);
  add_final_copies(p, staged_index);

  p.unshared_bytes = 0;
  for (const ArenaBuffer& b : p.buffers) p.unshared_bytes += arena_aligned(b.bytes);
  p.naive_bytes = 0;
  for (const Node& n : g.nodes)
    if (n.kind == NodeKind::Op && op_info(n.op).form != FusionForm::View) p.naive_bytes += arena_aligned(bytes_of(n));  // views: no bytes
  p.lower_bound_bytes = peak_live_bytes(p.buffers, uses.end);
}

}  // namespace gradc
