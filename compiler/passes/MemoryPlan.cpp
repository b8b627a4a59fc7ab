#include "passes/MemoryPlan.h"

#include <algorithm>
#include <map>
#include <queue>
#include <set>

namespace gradc {

namespace {

constexpr int64_t kAlign = 64;

// Sizes and offsets saturate rather than wrap, so that a model too big for any memory gets a
// huge arena, which the compile's memory check refuses.
int64_t aligned(int64_t bytes) { return saturating_add(bytes, kAlign - 1) / kAlign * kAlign; }
int64_t bytes_of(const Node& n) { return saturating_bytes(n.type); }

// Does member m read its operands only at the element its kernel's loop writes (the op table's
// elementwise form)? Then its kernel may store a result over one of them: every load of an
// element comes before the store to it. one_hot reads its row's class id, a reduction folds
// a group.
bool reads_at_element(const Graph& g, ValueId m) { return op_info(g[m].op).form == FusionForm::Elementwise; }

}  // namespace

// Best fit in order of first use, as an allocator would run the step: a buffer's bytes are
// freed after its last kernel (merged with free neighbours), and each new buffer takes the
// smallest free range that holds it, else the free range at the top of the arena grown to fit,
// else new bytes at the top. O(n log n) in buffers: placing each against every buffer live at
// its time (largest first) packed as well on the samples but took 1.3 s on a 10,000-op chain.
int64_t place_buffers(std::vector<ArenaBuffer>& buffers) {
  std::vector<size_t> order(buffers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {  // by first use, larger first
    const ArenaBuffer &x = buffers[a], &y = buffers[b];
    return x.first != y.first ? x.first < y.first : x.bytes != y.bytes ? x.bytes > y.bytes : a < b;
  });
  std::map<int64_t, int64_t> free_at;                // offset -> bytes of each free range
  std::set<std::pair<int64_t, int64_t>> free_sizes;  // (bytes, offset) of the same ranges
  auto add_free = [&](int64_t at, int64_t bytes) {
    auto next = free_at.find(saturating_add(at, bytes));
    if (next != free_at.end()) {  // merge with the range after
      bytes = saturating_add(bytes, next->second);
      free_sizes.erase({next->second, next->first});
      free_at.erase(next);
    }
    auto prev = free_at.lower_bound(at);
    if (prev != free_at.begin() && saturating_add(std::prev(prev)->first, std::prev(prev)->second) == at) {
      --prev;  // merge with the range before
      free_sizes.erase({prev->second, prev->first});
      at = prev->first, bytes = saturating_add(bytes, prev->second);
      free_at.erase(prev);
    }
    free_at.emplace(at, bytes);
    free_sizes.emplace(bytes, at);
  };
  auto take_free = [&](int64_t at, int64_t bytes) {
    free_at.erase(at);
    free_sizes.erase({bytes, at});
  };
  // Live buffers by their last kernel, the soonest to end first.
  std::priority_queue<std::pair<int64_t, size_t>, std::vector<std::pair<int64_t, size_t>>, std::greater<>> live;
  int64_t top = 0;
  for (size_t i : order) {
    ArenaBuffer& buf = buffers[i];
    while (!live.empty() && live.top().first < buf.first) {
      const ArenaBuffer& done = buffers[live.top().second];
      add_free(done.offset, aligned(done.bytes));
      live.pop();
    }
    int64_t need = aligned(buf.bytes);
    if (auto fit = free_sizes.lower_bound({need, INT64_MIN}); fit != free_sizes.end()) {
      auto [bytes, at] = *fit;
      take_free(at, bytes);
      if (bytes > need) add_free(saturating_add(at, need), bytes - need);
      buf.offset = at;
    } else if (!free_at.empty() && saturating_add(free_at.rbegin()->first, free_at.rbegin()->second) == top) {
      auto [at, bytes] = *free_at.rbegin();  // the free range at the top, too small: grow it
      take_free(at, bytes);
      buf.offset = at;
      top = saturating_add(at, need);
    } else {
      buf.offset = top;
      top = saturating_add(top, need);
    }
    live.emplace(buf.last, i);
  }
  return top;
}

std::vector<std::string> check_plan(const std::vector<ArenaBuffer>& buffers, int64_t arena_bytes) {
  std::vector<std::string> faults;
  for (size_t i = 0; i < buffers.size(); ++i) {
    const ArenaBuffer& a = buffers[i];
    if (a.offset % kAlign != 0) faults.push_back(fmt::format("buffer of value {} at offset {} is not aligned", a.value, a.offset));
    if (a.offset < 0 || saturating_add(a.offset, a.bytes) > arena_bytes)
      faults.push_back(fmt::format("buffer of value {} ({} bytes at {}) leaves the arena of {}", a.value, a.bytes, a.offset, arena_bytes));
    for (size_t j = i + 1; j < buffers.size(); ++j) {
      const ArenaBuffer& b = buffers[j];
      bool same_time = a.first <= b.last && b.first <= a.last;
      bool same_bytes = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes && a.bytes > 0 && b.bytes > 0;
      if (same_time && same_bytes)
        faults.push_back(fmt::format("values {} and {} are live at once (kernels {}..{} and {}..{}) and share bytes "
                                     "({}+{} and {}+{})", a.value, b.value, a.first, a.last, b.first, b.last, a.offset,
                                     a.bytes, b.offset, b.bytes));
    }
  }
  return faults;
}

// An output of a kernel may take the buffer of an input of the same type that the kernel reads
// at the very element it writes and that nobody reads after it (the kernel loads such inputs
// before it stores): `dx = dy * mask` overwrites dy, a gradient summed from two uses
// accumulates in place.
static void share_in_place(KernelProgram& p, const std::vector<bool>& read_by_copy) {
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
    if (kernel.kind == KernelKind::Alone) continue;
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

void plan_memory(KernelProgram& p) {
  const Graph& g = p.graph;
  const int32_t end = static_cast<int32_t>(p.kernels.size());  // the final copies' index
  std::vector<Location>& loc = p.locations;
  loc.assign(g.nodes.size(), {});
  std::vector<int32_t> writer(g.nodes.size(), -1), last_read(g.nodes.size(), -1);
  for (int32_t k = 0; k < end; ++k) {
    for (ValueId v : p.kernels[static_cast<size_t>(k)].outputs) {
      GRADC_ASSERT(writer[static_cast<size_t>(v)] < 0, "value {} is stored by kernels {} and {}", v, writer[static_cast<size_t>(v)], k);
      writer[static_cast<size_t>(v)] = k;
    }
    for (ValueId v : p.kernels[static_cast<size_t>(k)].inputs) last_read[static_cast<size_t>(g.viewed(v))] = k;
  }
  std::map<ValueId, int> outputs, assigns;  // how often a value is output, assigned
  // By the value itself: an output that is a view (reshape) of a value is copied from that
  // value's buffer into its own slot; the value has no output slot to be written into.
  std::map<ValueId, ValueId> assigned_to;   // the target of the first assign of a value
  for (const Output& o : g.outputs) ++outputs[o.value];
  for (const Assign& a : g.assigns) ++assigns[g.viewed(a.value)], assigned_to.emplace(g.viewed(a.value), a.target);
  std::vector<bool> read_by_copy(g.nodes.size(), false);
  for (const Output& o : g.outputs) read_by_copy[static_cast<size_t>(g.viewed(o.value))] = true;
  for (const Assign& a : g.assigns) read_by_copy[static_cast<size_t>(g.viewed(a.value))] = true;

  // May kernel k write the new value of `target` over the old one? Only if no other kernel reads
  // the old value later, no copy reads it, and k itself reads it (if at all) at the very
  // element it writes: a Loop kernel or a matmul's or conv's epilogue over the target's shape.
  std::vector<std::vector<int32_t>> reading(g.nodes.size());  // the kernels that read a value (through views), in order
  for (int32_t j = 0; j < end; ++j)
    for (ValueId v : p.kernels[static_cast<size_t>(j)].inputs) {
      std::vector<int32_t>& list = reading[static_cast<size_t>(g.viewed(v))];
      if (list.empty() || list.back() != j) list.push_back(j);
    }
  auto in_place = [&](ValueId target, int32_t k) {
    if (read_by_copy[static_cast<size_t>(target)]) return false;
    for (int32_t j : reading[static_cast<size_t>(target)]) {
      const Kernel& kernel = p.kernels[static_cast<size_t>(j)];
      if (j < k) continue;
      if (j > k || kernel.kind == KernelKind::Alone || kernel.domain != g[target].type.shape) return false;
      bool headed = kernel.kind == KernelKind::MatMul || kernel.kind == KernelKind::Conv;  // the head reads a and b whole
      if (headed && (g.viewed(kernel.a) == target || g.viewed(kernel.b) == target)) return false;
      if (kernel.kind == KernelKind::RowWise && g.viewed(kernel.rows) == target) return false;
      for (ValueId m : kernel.members)
        for (ValueId a : g[m].args)
          if (g.viewed(a) == target && (a != target || !reads_at_element(g, m)))
            return false;
    }
    return true;
  };

  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& n = g[id];
    if (n.kind == NodeKind::Input || n.kind == NodeKind::Param || n.kind == NodeKind::State) {
      loc[static_cast<size_t>(id)] = {Location::Leaf, 0, id};
      continue;
    }
    int32_t k = writer[static_cast<size_t>(id)];
    if (k < 0) continue;  // a member used only inside its kernel, a constant, a view (below)
    if (outputs[id] == 1 && assigns[id] == 0) {
      loc[static_cast<size_t>(id)] = {Location::Output, 0, id};
      continue;
    }
    if (outputs[id] == 0 && assigns[id] == 1) {
      ValueId target = assigned_to.at(id);
      if (in_place(target, k)) {
        loc[static_cast<size_t>(id)] = {Location::Assigned, 0, target};
        continue;
      }
    }
    int32_t last = read_by_copy[static_cast<size_t>(id)] ? end : std::max(last_read[static_cast<size_t>(id)], k);
    p.buffers.push_back({id, bytes_of(n), 0, k, last});
  }

  share_in_place(p, read_by_copy);

  // Final copies: outputs, then staging of params and states that assigns read, then assigns.
  auto location_of = [&](ValueId v) { return loc[static_cast<size_t>(g.viewed(v))]; };
  std::vector<FinalCopy> staged;
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
  int64_t arena = place_buffers(p.buffers);
  for (const ArenaBuffer& b : p.buffers)
    if (!staged_index.count(b.value) || g[b.value].kind == NodeKind::Op) loc[static_cast<size_t>(b.value)] = {Location::Arena, b.offset, b.value};
  for (auto [v, holder] : p.shared) loc[static_cast<size_t>(v)] = loc[static_cast<size_t>(holder)];
  for (ValueId id = 0; id < g.size(); ++id)  // views read their root's bytes
    if (g.viewed(id) != id) loc[static_cast<size_t>(id)] = location_of(id);

  for (const Output& o : g.outputs) {
    Location to{Location::Output, 0, o.value};
    if (location_of(o.value) != to) p.copies.push_back({o.value, location_of(o.value), to});
  }
  for (auto [leaf, i] : staged_index)
    p.copies.push_back({leaf, loc[static_cast<size_t>(leaf)], {Location::Arena, p.buffers[i].offset, leaf}});
  for (const Assign& a : g.assigns) {
    Location to{Location::Assigned, 0, a.target};
    ValueId src = g.viewed(a.value);
    Location from = staged_index.count(src) ? Location{Location::Arena, p.buffers[staged_index[src]].offset, src} : location_of(a.value);
    if (from != to) p.copies.push_back({a.value, from, to});
  }

  p.arena_bytes = arena;
  p.unshared_bytes = 0;
  for (const ArenaBuffer& b : p.buffers) p.unshared_bytes += aligned(b.bytes);
  p.naive_bytes = 0;
  for (const Node& n : g.nodes)
    if (n.kind == NodeKind::Op && op_info(n.op).form != FusionForm::View) p.naive_bytes += aligned(bytes_of(n));  // views: no bytes
  p.lower_bound_bytes = 0;  // a sweep over the kernels: each buffer joins at first, leaves after last
  std::vector<int64_t> change(static_cast<size_t>(end) + 2, 0);
  for (const ArenaBuffer& b : p.buffers) {
    change[static_cast<size_t>(b.first)] += aligned(b.bytes);
    change[static_cast<size_t>(b.last) + 1] -= aligned(b.bytes);
  }
  int64_t live = 0;
  for (int32_t t = 0; t <= end; ++t) {
    live += change[static_cast<size_t>(t)];
    p.lower_bound_bytes = std::max(p.lower_bound_bytes, live);
  }
}

}  // namespace gradc
