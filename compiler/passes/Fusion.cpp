#include "passes/Fusion.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <queue>
#include <set>
#include <unordered_set>

namespace gradc {

namespace {


class Fuser {
 public:
  Fuser(Graph g, const FusionOptions& o) : g_(std::move(g)), fuse_(o.fuse) {}

  KernelProgram run() {
    find_live_and_users();
    if (materialize_constants_read_whole()) find_live_and_users();
    kernel_of_.assign(g_.nodes.size(), -1);
    for (ValueId id = 0; id < g_.size(); ++id)
      if (is_candidate(id)) place_node(id);
    placed_sources_.assign(g_.nodes.size(), {});
    placed_sources_done_.assign(g_.nodes.size(), false);
    if (fuse_) merge_along_edges();
    is_result_.assign(g_.nodes.size(), false);
    for (const Output& o : g_.outputs) is_result_[at(o.value)] = true;
    for (const Assign& a : g_.assigns) is_result_[at(a.value)] = true;
    place_scalars();
    KernelProgram p;
    sorted_members_.assign(kernels_.size(), {});
    for (size_t k = 0; k < kernels_.size(); ++k) {
      sorted_members_[k] = kernels_[k].members;
      std::sort(sorted_members_[k].begin(), sorted_members_[k].end());
    }
    for (size_t k = 0; k < kernels_.size(); ++k) collect_inputs(k);
    read_from_memory_.assign(g_.nodes.size(), false);
    for (const Kernel& k : kernels_)
      for (ValueId v : k.inputs) read_from_memory_[at(v)] = true;
    for (size_t k = 0; k < kernels_.size(); ++k) finish(k);
    order_kernels();
    p.kernels = std::move(kernels_);
    p.graph = std::move(g_);
    p.locations.assign(p.graph.nodes.size(), {});
    return p;
  }

 private:
  static size_t at(ValueId id) { return static_cast<size_t>(id); }

  void find_live_and_users() {
    live_ = live_values(g_);  // (the graphs fused have no minimize: lowered, or predict's)
    users_.assign(g_.nodes.size(), {});
    for (ValueId id = 0; id < g_.size(); ++id)
      if (live_[at(id)])
        for (ValueId a : g_[id].args)
          if (users_[at(a)].empty() || users_[at(a)].back() != id) users_[at(a)].push_back(id);  // ids ascend
  }

  // The op table's fusion form of an op node.
  bool has_form(ValueId id, FusionForm f) const { return g_[id].kind == NodeKind::Op && op_info(g_[id].op).form == f; }
  bool is_view(ValueId id) const { return has_form(id, FusionForm::View); }
  // A value whole only after its kernel's loops: a reduction, or a loss over the rows.
  bool is_reduction(ValueId id) const {
    return has_form(id, FusionForm::Reduction) || (g_[id].kind == NodeKind::Op && op_info(g_[id].op).has(kLoss));
  }
  // Where a node goes: per element (Loop kernels), as a reduction, heading a matmul or
  // convolution, row by row, or alone.
  enum class Form { Scalar, Reduction, MatMul, Conv, Row, Alone };
  static Form placement(FusionForm f) {
    switch (f) {
      case FusionForm::Elementwise:
      case FusionForm::Indexed: return Form::Scalar;
      case FusionForm::Reduction: return Form::Reduction;
      case FusionForm::Gemm: return Form::MatMul;
      case FusionForm::Conv: return Form::Conv;
      case FusionForm::Rowwise:
      case FusionForm::View:
      case FusionForm::Alone: return Form::Alone;
    }
    return Form::Alone;
  }

  bool has_scalar_form(ValueId id) const { return g_[id].kind == NodeKind::Op && form_of(id) == Form::Scalar; }

  // A row op (softmax, log_softmax, the cross-entropy loss) along the last axis of a matrix,
  // with class ids when it takes a second operand: row by row, from each row's max and
  // log-sum-exp (RowWise kernels).
  bool rows_of_matrix(const Node& n) const {
    if (g_[n.args[0]].type.rank() != 2) return false;
    if (const Attr* axis = n.attrs.find("axis"); axis && axis->as_int() != 1) return false;
    return n.args.size() < 2 || g_[n.args[1]].type.dtype == DType::I32;
  }
  Form form_of(ValueId id) const {
    const Node& n = g_[id];
    if (fuse_ && op_info(n.op).form == FusionForm::Rowwise && rows_of_matrix(n)) return Form::Row;
    return placement(op_info(n.op).form);
  }


  // A permutation of its operand's axes (transpose): an op whose schema takes a `perm`.
  bool permutes(ValueId id) const {
    if (g_[id].kind != NodeKind::Op) return false;
    const std::vector<AttrSpec>& schema = op_info(g_[id].op).attrs;
    return std::any_of(schema.begin(), schema.end(), [](const AttrSpec& a) { return a.name == "perm"; });
  }

  // A transpose of the last two dims that only GEMM heads read: they read its operand transposed.
  bool folded_transpose(ValueId id) const {
    if (!fuse_ || !permutes(id)) return false;
    const std::vector<int64_t>& perm = g_[id].attrs.get("perm").as_ints();
    bool swap = perm == std::vector<int64_t>{1, 0} || perm == std::vector<int64_t>{0, 2, 1};
    if (!swap || g_.outputs.end() != std::find_if(g_.outputs.begin(), g_.outputs.end(), [&](const Output& o) { return o.value == id; }))
      return false;
    for (ValueId u : users_[at(id)])
      if (!has_form(u, FusionForm::Gemm)) return false;
    return !users_[at(id)].empty();
  }

  // A head reads its operands whole from memory, where a constant has no place (codegen inlines
  // a constant where a member reads it at an element). A view of a constant that a matmul, a
  // conv or a row op reads (the [1, 1] gradient of a mean over one element: the scalar 1
  // reshaped) becomes broadcast_to of the constant, a scalar that a kernel stores
  // (place_scalars); its other readers recompute it, the constant, as before. Returns whether
  // any did (the graph's reads changed).
  bool materialize_constants_read_whole() {
    bool changed = false;
    for (ValueId id = 0; id < g_.size(); ++id) {
      if (!live_[at(id)] || g_[id].kind != NodeKind::Op) continue;
      Form f = form_of(id);
      if (f != Form::MatMul && f != Form::Conv && f != Form::Row) continue;
      for (ValueId a : g_[id].args) {
        ValueId v = f == Form::MatMul && folded_transpose(a) ? g_[a].args[0] : a;
        ValueId c = g_.viewed(v);
        if (c == v || g_[c].kind != NodeKind::Constant) continue;
        g_.nodes[at(v)].op = OpKind::BroadcastTo;  // reshape's attribute, `shape`, is broadcast_to's too
        g_.nodes[at(v)].args = {c};
        changed = true;
      }
    }
    return changed;
  }

  // One element, computed from scalars: recomputed in every kernel that uses it.
  bool is_scalar(ValueId id) const {
    if (!fuse_ || !has_form(id, FusionForm::Elementwise) || g_[id].type.numel() != 1) return false;
    for (ValueId a : g_[id].args)
      if (g_[a].type.numel() != 1) return false;
    return true;
  }

  // The kernels that must run before a kernel reading `id`.
  void sources(ValueId id, std::set<int>& out) const {
    if (kernel_of_[at(id)] >= 0) {
      out.insert(kernel_of_[at(id)]);
      return;
    }
    if (g_[id].kind == NodeKind::Op)  // a view, a folded transpose or a scalar: what it reads
      for (ValueId a : g_[id].args) sources(a, out);
  }

  // A MatMul or Conv kernel's head (members[0]): an op that reads its operands, k.a and k.b,
  // from memory, and whose epilogue runs on its results.
  static bool has_head_operands(const Kernel& k) { return k.kind == KernelKind::MatMul || k.kind == KernelKind::Conv; }
  static bool is_head(const Kernel& k, ValueId m) { return has_head_operands(k) && m == k.members[0]; }
  // What member m of kernel k reads whole from memory before any member runs: a MatMul or Conv
  // kernel's operands, a RowWise kernel's row op's operands (the rows, the class ids).
  std::vector<ValueId> read_whole(const Kernel& k, ValueId m) const {
    if (is_head(k, m)) return {k.a, k.b};
    if (k.kind == KernelKind::RowWise && form_of(m) == Form::Row) return g_[m].args;
    return {};
  }

  // Members in graph order, a MatMul or Conv kernel's head first (its epilogue runs after it).
  void sort_members(Kernel& k) const {
    std::sort(k.members.begin(), k.members.end());
    if (has_head_operands(k)) {
      FusionForm head = k.kind == KernelKind::MatMul ? FusionForm::Gemm : FusionForm::Conv;
      auto mm = std::find_if(k.members.begin(), k.members.end(), [&](ValueId m) { return has_form(m, head); });
      std::rotate(k.members.begin(), mm, mm + 1);
    }
  }

  bool is_candidate(ValueId id) const {
    return live_[at(id)] && g_[id].kind == NodeKind::Op && !is_view(id) && !folded_transpose(id) && !is_scalar(id);
  }

  int new_kernel(KernelKind kind, Shape domain) {
    kernels_.push_back({});
    kernels_.back().kind = kind;
    kernels_.back().domain = std::move(domain);
    return static_cast<int>(kernels_.size() - 1);
  }

  void add_member(int k, ValueId id) {
    kernels_[static_cast<size_t>(k)].members.push_back(id);
    kernel_of_[at(id)] = k;
  }

  // Every node starts as a kernel of its own.
  void place_node(ValueId id) {
    const Node& n = g_[id];
    switch (form_of(id)) {
      case Form::Row: {
        int k = new_kernel(KernelKind::RowWise, g_[n.args[0]].type.shape);
        kernels_[static_cast<size_t>(k)].rows = n.args[0];
        add_member(k, id);
        return;
      }
      case Form::MatMul: {
        int k = new_kernel(KernelKind::MatMul, n.type.shape);
        Kernel& kernel = kernels_[static_cast<size_t>(k)];
        auto operand = [&](ValueId v, ValueId& stored, bool& transposed) {
          transposed = folded_transpose(v);
          stored = transposed ? g_[v].args[0] : v;
        };
        operand(n.args[0], kernel.a, kernel.a_transposed);
        operand(n.args[1], kernel.b, kernel.b_transposed);
        add_member(k, id);
        return;
      }
      case Form::Conv: {
        int k = new_kernel(KernelKind::Conv, n.type.shape);
        kernels_[static_cast<size_t>(k)].a = n.args[0];
        kernels_[static_cast<size_t>(k)].b = n.args[1];
        add_member(k, id);
        return;
      }
      case Form::Reduction: add_member(new_kernel(KernelKind::Loop, g_[n.args[0]].type.shape), id); return;
      case Form::Scalar: add_member(new_kernel(KernelKind::Loop, n.type.shape), id); return;
      case Form::Alone: add_member(new_kernel(KernelKind::Alone, n.type.shape), id); return;
    }
  }

  // ---- Merging. While kernels merge, a kernel index names a set of members (a union-find
  // over the kernels as placed: root_at_[index], the root's index_of_); the kernels' dependence
  // graph is the quotient of the nodes' reads, kept as edge lists on each root, and a
  // topological order of it (KernelSet::pos, order_) is kept as kernels merge (after Pearce and
  // Kelly's, for contracting an edge), so that "would merging p and q make a cycle" is a search
  // bounded by the order: issue 14 found the old path search over readers_of cubic (1,000
  // chained ops ran past two minutes). The result is the old one exactly, merge for merge
  // (scripts/compare_dumps).

  struct KernelSet {
    std::vector<ValueId> members;
    std::vector<int> readers, read;                  // kernels (as placed: find() them) it feeds, it reads
    std::vector<ValueId> reductions;                 // members that are reductions
    std::unordered_set<ValueId> reads_reductions;    // the reductions its members read, through scalars and views
    int64_t pos = 0;                                 // place in the topological order
  };

  int find(int r) {
    while (parent_[static_cast<size_t>(r)] != r) {
      int up = parent_[static_cast<size_t>(parent_[static_cast<size_t>(r)])];
      parent_[static_cast<size_t>(r)] = up;
      r = up;
    }
    return r;
  }
  KernelSet& set(int root) { return sets_[static_cast<size_t>(root)]; }
  // The kernel index that holds `id` now, or -1.
  int kernel_now(ValueId id) {
    int placed = kernel_of_[at(id)];
    return placed < 0 ? -1 : index_of_[static_cast<size_t>(find(placed))];
  }

  // A depth-first search over one side of the edges from `start`, within the positions between
  // start and `target` (forward: what start reaches; backward: what reaches start), one edge a
  // step, so that two of them can run in turns. `hit`: an edge reaches target from a node other
  // than start (a path through some other kernel). A search that ends without a hit has found
  // every such node.
  struct Search {
    bool forward;
    int start, target;
    std::vector<int>* seen;  // marks: == epoch when found
    uint32_t epoch;
    std::vector<std::pair<int, size_t>> stack{};  // a root and the next entry of its list
    std::vector<int> found{};
    bool hit = false;
    bool ended() const { return hit || stack.empty(); }
  };

  void step(Search& s) {
    auto [r, i] = s.stack.back();
    std::vector<int>& list = s.forward ? set(r).readers : set(r).read;
    if (i == list.size()) {  // every entry seen: drop stale and repeated ones
      ++mark_epoch_;
      size_t kept = 0;
      for (int x : list) {
        int y = find(x);
        if (y == r || mark_[static_cast<size_t>(y)] == mark_epoch_) continue;
        mark_[static_cast<size_t>(y)] = mark_epoch_;
        list[kept++] = y;
      }
      list.resize(kept);
      s.stack.pop_back();
      return;
    }
    ++s.stack.back().second;
    int x = find(list[i]);
    list[i] = x;
    if (x == r) return;
    if (x == s.target) {
      s.hit = s.hit || r != s.start;
      return;
    }
    std::vector<int>& seen = *s.seen;
    if (seen[static_cast<size_t>(x)] == static_cast<int>(s.epoch)) return;
    int64_t limit = set(s.target).pos;
    if (s.forward ? set(x).pos >= limit : set(x).pos <= limit) return;
    seen[static_cast<size_t>(x)] = static_cast<int>(s.epoch);
    s.found.push_back(x);
    s.stack.emplace_back(x, 0);
  }

  // Is there a path from root u to root v (u before v) through some other kernel? Searches
  // forward from u and backward from v in turns, so it costs about twice the cheaper one;
  // `complete` gets the search that ended without a hit (its `found` is whole).
  bool indirect_path(int u, int v, Search* complete = nullptr) {
    ++seen_epoch_;
    Search f{true, u, v, &seen_forward_, seen_epoch_}, b{false, v, u, &seen_backward_, seen_epoch_};
    f.stack.emplace_back(u, 0);
    b.stack.emplace_back(v, 0);
    while (true) {
      for (Search* s : {&f, &b}) {
        step(*s);
        if (s->hit) return true;
        if (s->stack.empty()) {
          if (complete) *complete = std::move(*s);
          return false;
        }
      }
    }
  }

  // The values in kernels that `id` reads: itself when a kernel computes it, else (a view, a
  // folded transpose or a scalar, recomputed where it is used) what those read in turn.
  // Memoized: kernels only gain members while the kernel-less values stay kernel-less.
  const std::vector<ValueId>& placed_sources(ValueId id) {
    std::vector<ValueId>& out = placed_sources_[at(id)];
    if (placed_sources_done_[at(id)]) return out;
    placed_sources_done_[at(id)] = true;
    if (kernel_of_[at(id)] >= 0) {
      out = {id};
    } else if (g_[id].kind == NodeKind::Op) {
      std::vector<ValueId> all;
      for (ValueId a : g_[id].args) {
        const std::vector<ValueId>& from = placed_sources(a);
        all.insert(all.end(), from.begin(), from.end());
      }
      std::sort(all.begin(), all.end());
      all.erase(std::unique(all.begin(), all.end()), all.end());
      placed_sources_[at(id)] = std::move(all);
    }
    return placed_sources_[at(id)];
  }

  // Does a member of kernel k read a reduction computed in kernel `other`, directly or through
  // scalars and views (clip_norm's scale reads the sum of every gradient's squares)? A reduction
  // is whole only after its kernel's loop, so the two cannot share one loop.
  bool reads_reduction_of(int k, int other) {
    int rk = root_at_[static_cast<size_t>(k)], ro = root_at_[static_cast<size_t>(other)];
    if (rk < 0 || ro < 0) return false;
    const std::unordered_set<ValueId>& reads = set(rk).reads_reductions;
    const std::vector<ValueId>& in_other = set(ro).reductions;
    if (in_other.size() <= reads.size())
      return std::any_of(in_other.begin(), in_other.end(), [&](ValueId r) { return reads.count(r) > 0; });
    return std::any_of(reads.begin(), reads.end(), [&](ValueId r) { return kernel_now(r) == other; });
  }

  // A MatMul, Conv or RowWise kernel starts from operands in memory (its head), then runs the
  // elementwise members of the others as an epilogue.
  static bool headed(const Kernel& k) { return has_head_operands(k) || k.kind == KernelKind::RowWise; }

  // Does kernel `from` produce what kernel k's head reads?
  bool feeds_head(int from, const Kernel& k) {
    auto feeds = [&](ValueId v) {
      const std::vector<ValueId>& src = placed_sources(v);
      return std::any_of(src.begin(), src.end(), [&](ValueId s) { return kernel_now(s) == from; });
    };
    if (has_head_operands(k)) return feeds(k.a) || feeds(k.b);
    if (k.kind == KernelKind::RowWise) return feeds(k.rows);
    return false;
  }

  // Whether two kernels may become one, and if not why (as XLA's FusionDecision): the reason
  // `gradc dump --stage fused` prints beside the values a kernel reads from another.
  struct FusionDecision {
    const char* forbid = nullptr;  // null: they may fuse
    explicit operator bool() const { return forbid == nullptr; }
  };

  FusionDecision can_merge(int p, int q) {
    const Kernel &kp = kernels_[static_cast<size_t>(p)], &kq = kernels_[static_cast<size_t>(q)];
    if (kp.kind == KernelKind::Alone) return {"computed by an op that runs alone"};
    if (kq.kind == KernelKind::Alone) return {"read by an op that runs alone"};
    if (kp.domain != kq.domain) return {"the two kernels loop over different shapes"};
    bool rows_pair = kp.kind == KernelKind::RowWise && kq.kind == KernelKind::RowWise && kp.rows == kq.rows;
    if (headed(kp) && headed(kq) && !rows_pair) return {"both kernels have a head: a matmul, a conv or rows"};
    if ((headed(kp) && feeds_head(q, kp)) || (headed(kq) && feeds_head(p, kq)))
      return {"read whole by a kernel's head: a matmul, a conv or rows"};
    if (reads_reduction_of(q, p) || reads_reduction_of(p, q)) return {"one kernel reads a reduction of the other"};
    int rp = root_at_[static_cast<size_t>(p)], rq = root_at_[static_cast<size_t>(q)];
    if (rp < 0 || rq < 0) return {};  // an index emptied by an earlier merge: nothing reads or feeds it
    if (set(rp).members.size() + set(rq).members.size() > kMaxKernelMembers)
      return {"the kernel would pass kMaxKernelMembers members"};
    bool cycle = set(rp).pos < set(rq).pos ? indirect_path(rp, rq) : indirect_path(rq, rp);
    if (cycle) return {"a path between the two kernels runs through a third: one kernel would make a cycle"};
    return {};
  }

  // The order once roots u and v (u first) become one: the merged kernel takes u's place and
  // what reaches v moves just before it, or it takes v's place and what u reaches moves just
  // after it, whichever search ended first (the moved keep their order). Returns its place.
  int64_t reorder(int u, int v) {
    Search side{};
    bool cycle = indirect_path(u, v, &side);
    GRADC_ASSERT(!cycle, "fusion: merging two kernels would make a cycle");
    std::vector<int>& moved = side.found;
    std::sort(moved.begin(), moved.end(), [&](int a, int b) { return set(a).pos < set(b).pos; });
    while (true) {
      int64_t merged = set(side.forward ? v : u).pos;
      auto next = side.forward ? order_.upper_bound(merged) : order_.lower_bound(merged);
      bool none = side.forward ? next == order_.end() : next == order_.begin();
      int64_t other = none ? merged + (side.forward ? kSpacing : -kSpacing) : side.forward ? next->first : std::prev(next)->first;
      int64_t gap = side.forward ? other - merged : merged - other, n = static_cast<int64_t>(moved.size());
      if (gap <= n) {  // no room between the two: spread every position out again
        renumber();
        continue;
      }
      order_.erase(set(u).pos);
      order_.erase(set(v).pos);
      for (int r : moved) order_.erase(set(r).pos);
      int64_t lo = side.forward ? merged : other;
      for (int64_t i = 0; i < n; ++i) {
        int r = moved[static_cast<size_t>(i)];
        set(r).pos = lo + (i + 1) * gap / (n + 1);
        order_.emplace(set(r).pos, r);
      }
      return merged;
    }
  }

  void renumber() {
    std::map<int64_t, int> order;
    int64_t at = 0;
    for (auto [pos, r] : order_) {
      at += kSpacing;
      set(r).pos = at;
      order.emplace_hint(order.end(), at, r);
    }
    order_ = std::move(order);
  }

  // Moves the members of one kernel into the other (into the headed one, if either is): the
  // smaller set joins the larger, the merged kernel keeps the index it merges into, and the
  // order is repaired around it (what reaches the later of the two moves before it, what the
  // earlier one reaches moves after it; both only within the positions they held).
  void merge(int p, int q) {
    if (headed(kernels_[static_cast<size_t>(q)]) && !headed(kernels_[static_cast<size_t>(p)])) std::swap(p, q);
    int rp = root_at_[static_cast<size_t>(p)], rq = root_at_[static_cast<size_t>(q)];
    if (rq < 0) return;  // nothing to move
    root_at_[static_cast<size_t>(q)] = -1;
    if (rp < 0) {  // p was emptied before: q's members now live at p
      root_at_[static_cast<size_t>(p)] = rq;
      index_of_[static_cast<size_t>(rq)] = p;
      return;
    }
    int64_t merged_pos = reorder(set(rp).pos < set(rq).pos ? rp : rq, set(rp).pos < set(rq).pos ? rq : rp);
    int big = rp, small = rq;
    if (set(big).members.size() < set(small).members.size()) std::swap(big, small);
    parent_[static_cast<size_t>(small)] = big;
    KernelSet &into = set(big), &from = set(small);
    auto append = [](auto& to, auto& more) {
      if (to.size() < more.size()) std::swap(to, more);
      to.insert(to.end(), more.begin(), more.end());
      more.clear();
      more.shrink_to_fit();
    };
    append(into.members, from.members);
    append(into.readers, from.readers);
    append(into.read, from.read);
    append(into.reductions, from.reductions);
    if (into.reads_reductions.size() < from.reads_reductions.size()) std::swap(into.reads_reductions, from.reads_reductions);
    into.reads_reductions.insert(from.reads_reductions.begin(), from.reads_reductions.end());
    from.reads_reductions = {};
    into.pos = merged_pos;
    order_.emplace(merged_pos, big);
    root_at_[static_cast<size_t>(p)] = big;
    index_of_[static_cast<size_t>(big)] = p;
  }

  // One set per kernel as placed, its edges from what its member reads, in the order placed
  // (a topological one: operands come before their users).
  void start_merging() {
    size_t n = kernels_.size();
    parent_.resize(n);
    std::iota(parent_.begin(), parent_.end(), 0);
    index_of_ = parent_;
    root_at_ = parent_;
    sets_.assign(n, {});
    mark_.assign(n, 0);
    seen_forward_.assign(n, -1);
    seen_backward_.assign(n, -1);
    for (size_t k = 0; k < n; ++k) {
      KernelSet& s = sets_[k];
      s.members = kernels_[k].members;
      s.pos = static_cast<int64_t>(k + 1) * kSpacing;
      order_.emplace_hint(order_.end(), s.pos, static_cast<int>(k));
      for (ValueId m : s.members) {
        if (is_reduction(m)) s.reductions.push_back(m);
        for (ValueId a : g_[m].args)
          for (ValueId src : placed_sources(a)) {
            int from = kernel_of_[at(src)];
            if (is_reduction(src)) s.reads_reductions.insert(src);
            if (from == static_cast<int>(k)) continue;
            s.read.push_back(from);
            sets_[static_cast<size_t>(from)].readers.push_back(static_cast<int>(k));
          }
      }
    }
  }

  // Merges the consumer of each edge into its producer's kernel where both are loop nests over
  // the same domain: the producer is not a reduction (its result is whole only after the loop),
  // the consumer's kernel holds no matmul (its operands would have to be computed first), and
  // no path between the two leaves the pair (which would make a cycle).
  void merge_along_edges() {
    start_merging();
    std::vector<int> rowwise;  // the RowWise kernels' indices
    for (size_t k = 0; k < kernels_.size(); ++k)
      if (kernels_[k].kind == KernelKind::RowWise) rowwise.push_back(static_cast<int>(k));
    for (ValueId c = 0; c < g_.size(); ++c) {
      if (!is_candidate(c)) continue;
      Form form = form_of(c);
      if (form == Form::Row) {  // rows normalized twice (softmax and the loss): one pass over them
        for (int p : rowwise) {
          int q = kernel_now(c);
          if (p != q && kernels_[static_cast<size_t>(p)].rows == g_[c].args[0] && can_merge(p, q)) merge(p, q);
        }
        continue;
      }
      if (form != Form::Scalar && form != Form::Reduction) continue;
      for (ValueId a : g_[c].args) {
        int p = kernel_now(a), q = kernel_now(c);
        if (p < 0 || p == q) continue;
        FusionDecision d = is_reduction(a) ? FusionDecision{"a reduction, whole only after its kernel's loop"} : can_merge(p, q);
        if (d)
          merge(p, q);
        else
          refused_.emplace(std::pair{a, c}, d.forbid);
      }
    }
    std::vector<Kernel> kept;
    for (size_t k = 0; k < kernels_.size(); ++k) {
      int root = root_at_[k];
      if (root < 0) continue;
      kept.push_back(std::move(kernels_[k]));
      kept.back().members = std::move(set(root).members);
      sort_members(kept.back());
    }
    kernels_ = std::move(kept);
    for (size_t k = 0; k < kernels_.size(); ++k)
      for (ValueId m : kernels_[k].members) kernel_of_[at(m)] = static_cast<int>(k);
    sets_.clear();
  }

  // Scalars go into every Loop, MatMul, Conv or RowWise kernel with a member that reads them
  // (with the scalars they read in turn), but for the scalars its head reads whole: those the
  // kernel reads from memory, since its head runs before any other member. One kernel stores a
  // scalar that something else needs; if no kernel computes it, or a head reads it (the first
  // kernel to compute it might wait for the head's kernel), it gets a kernel of its own, which
  // waits only for what the scalar reads.
  // (Scalars are never a kernel's own members, so the scalars added to kernel k are its
  // members that are scalars: scalars_in_[k].)
  void add_scalar(size_t k, ValueId id) {
    if (!scalars_in_[k].insert(id).second) return;
    for (ValueId a : g_[id].args)
      if (is_scalar(a) && !read_whole_in(k, a)) add_scalar(k, a);
    kernels_[k].members.push_back(id);
    if (first_with_[at(id)] < 0) first_with_[at(id)] = static_cast<int>(k);
  }

  bool read_whole_in(size_t k, ValueId v) const {
    const std::vector<ValueId>& whole = read_whole_in_[k];
    return std::find(whole.begin(), whole.end(), v) != whole.end();
  }

  void place_scalars() {
    scalars_in_.assign(kernels_.size(), {});
    read_whole_in_.assign(kernels_.size(), {});
    std::vector<bool> read_whole_anywhere(g_.nodes.size(), false);
    first_with_.assign(g_.nodes.size(), -1);  // the first kernel a scalar is a member of
    for (size_t k = 0; k < kernels_.size(); ++k)
      for (ValueId m : kernels_[k].members)
        for (ValueId v : read_whole(kernels_[k], m)) {
          read_whole_in_[k].push_back(v);
          read_whole_anywhere[at(v)] = true;
        }
    for (size_t k = 0; k < kernels_.size(); ++k) {
      if (kernels_[k].kind == KernelKind::Alone) continue;
      std::vector<ValueId> members = kernels_[k].members;
      for (ValueId m : members) {
        if (!read_whole(kernels_[k], m).empty()) continue;
        for (ValueId a : g_[m].args)
          if (is_scalar(a) && !read_whole_in(k, a)) add_scalar(k, a);
      }
      sort_members(kernels_[k]);
    }
    for (ValueId id = 0; id < g_.size(); ++id) {
      if (!live_[at(id)] || !is_scalar(id) || !needs_store(id)) continue;
      int storer = first_with_[at(id)];
      if (storer < 0 || read_whole_anywhere[at(id)]) {
        storer = new_kernel(KernelKind::Loop, g_[id].type.shape);
        scalars_in_.emplace_back();
        read_whole_in_.emplace_back();
        add_scalar(static_cast<size_t>(storer), id);
        sort_members(kernels_.back());
      }
      kernel_of_[at(id)] = storer;
    }
  }

  // A scalar that an output, an assign or a node outside Loop kernels and epilogues reads.
  bool needs_store(ValueId id) const {
    if (is_result_[at(id)]) return true;
    for (ValueId u : users_[at(id)]) {
      if (is_scalar(u)) continue;
      int k = kernel_of_[at(u)];
      if (k < 0 || !scalars_in_[static_cast<size_t>(k)].count(id)) return true;
    }
    return false;
  }

  bool is_member(size_t k, ValueId v) const {
    return std::binary_search(sorted_members_[k].begin(), sorted_members_[k].end(), v);
  }

  bool stored_outside(size_t k, ValueId m) const {
    // A scalar is computed wherever it is used but stored by one kernel only.
    if (is_scalar(m)) return kernel_of_[at(m)] == static_cast<int>(k);
    // Another kernel reads it (a scalar recomputed there may read a reduction of this one; a
    // member is never an input of its own kernel).
    if (read_from_memory_[at(m)] || is_result_[at(m)]) return true;
    for (ValueId u : users_[at(m)])
      if (!is_member(k, u)) return true;
    return false;
  }

  // The values the members read from memory (no constants).
  void collect_inputs(size_t index) {
    Kernel& k = kernels_[index];
    std::unordered_set<ValueId> seen;
    auto read = [&](ValueId a) {
      ValueId r = g_.viewed(a);  // a reshaped constant is still a constant
      if (g_[r].kind != NodeKind::Constant && !is_member(index, a) && seen.insert(a).second) k.inputs.push_back(a);
    };
    for (ValueId m : k.members) {
      if (is_head(k, m)) {
        read(k.a);
        read(k.b);
        continue;
      }
      for (ValueId a : g_[m].args) read(a);
    }
  }

  // Outputs, FLOPs and bytes from the members; and the kernel's name.
  void finish(size_t index) {
    Kernel& k = kernels_[index];
    for (ValueId m : k.members)
      if (stored_outside(index, m)) k.outputs.push_back(m);
    int64_t domain = TensorType{DType::F32, k.domain}.numel();
    for (ValueId m : k.members) {
      const Node& n = g_[m];
      if (k.kind == KernelKind::Alone || is_head(k, m)) {
        std::vector<TensorType> args;
        for (ValueId a : n.args) args.push_back(g_[a].type);
        k.flops = saturating_add(k.flops, op_flops(n.op, n.type, args));
      } else if (n.type.numel() != 1 || domain == 1) {
        k.flops = saturating_add(k.flops, domain);  // an elementwise op or a reduction step per element (scalars: hoisted)
      }
    }
    for (ValueId v : k.inputs) k.bytes = saturating_add(k.bytes, saturating_bytes(g_[v].type));
    for (ValueId v : k.outputs) k.bytes = saturating_add(k.bytes, saturating_bytes(g_[v].type));
    note_unfused(index);
    ValueId named = k.outputs.empty() ? k.members.back() : k.outputs.back();
    std::string what = g_[named].name.empty() ? std::string(op_info(g_[named].op).name) : g_[named].name;
    k.name = what;
  }

  // Why each value that kernel `index` reads from another kernel was not fused into it: the
  // reason merging gave when it tried the edge, or else why it never tried.
  void note_unfused(size_t index) {
    Kernel& k = kernels_[index];
    for (ValueId v : k.inputs) {
      ValueId r = g_.viewed(v);
      if (g_[r].kind != NodeKind::Op || kernel_of_[at(r)] < 0) continue;  // a leaf: not a boundary
      ValueId reader = -1;
      for (ValueId m : k.members)
        if (std::find(g_[m].args.begin(), g_[m].args.end(), v) != g_[m].args.end() || (is_head(k, m) && (v == k.a || v == k.b))) {
          reader = m;
          break;
        }
      const char* why = "";
      if (auto it = refused_.find({v, reader}); it != refused_.end()) why = it->second;
      else if (!fuse_) why = "fusion is off";
      else if (r != v) why = "read through a reshape, which fusion does not follow";
      else if (k.kind == KernelKind::Alone) why = "read by an op that runs alone";
      else if (kernels_[static_cast<size_t>(kernel_of_[at(r)])].kind == KernelKind::Alone) why = "computed by an op that runs alone";
      else if ((has_head_operands(k) && (v == k.a || v == k.b)) || v == k.rows) why = "read whole by the kernel's head";
      else if (is_reduction(r)) why = "a reduction, whole only after its kernel's loop";
      else why = "not tried: its reader is a head or a row op";
      k.unfused.emplace_back(v, why);
    }
  }

  // Does kernel k (transitively) wait for kernel on?
  bool depends(int k, int on, const std::vector<std::set<int>>& before) {
    std::vector<int> stack(before[static_cast<size_t>(k)].begin(), before[static_cast<size_t>(k)].end());
    ++seen_epoch_;
    while (!stack.empty()) {
      int j = stack.back();
      stack.pop_back();
      if (j == on) return true;
      if (seen_[static_cast<size_t>(j)] == seen_epoch_) continue;
      seen_[static_cast<size_t>(j)] = seen_epoch_;
      stack.insert(stack.end(), before[static_cast<size_t>(j)].begin(), before[static_cast<size_t>(j)].end());
    }
    return false;
  }

  // The schedule: kernels in an order where each comes after the kernels it reads, chosen
  // to keep live memory low: greedily (of the kernels ready to run, the one that adds the fewest
  // bytes: what it writes minus the inputs it is the last to read), or the earliest ready one,
  // whichever order peaks lower.
  void order_kernels() {
    size_t n = kernels_.size();
    seen_.assign(n, 0);
    std::vector<std::set<int>> before(n);
    std::vector<int> readers(g_.nodes.size(), 0);        // kernels still to run that read a value
    std::vector<std::vector<int>> reader_list(g_.nodes.size());  // and which, in order
    std::vector<std::vector<int>> reading_root(g_.nodes.size());  // kernels reading a value through views
    for (size_t k = 0; k < n; ++k)
      for (ValueId v : kernels_[k].inputs) {
        std::set<int> from;
        sources(v, from);
        for (int s : from)
          if (s != static_cast<int>(k)) before[k].insert(s);
        ++readers[at(v)];
        reader_list[at(v)].push_back(static_cast<int>(k));
        ValueId r = g_.viewed(v);
        std::vector<int>& list = reading_root[at(r)];
        if (list.empty() || list.back() != static_cast<int>(k)) list.push_back(static_cast<int>(k));
      }
    // A param or state is best updated in place: the kernel that computes its new value waits
    // for every other kernel that reads the old one (unless one of those needs the new value).
    for (const Assign& as : g_.assigns) {
      int writer = kernel_of_[at(as.value)];
      if (writer < 0) continue;
      for (int k : reading_root[at(as.target)])
        if (k != writer && !depends(k, writer, before)) before[static_cast<size_t>(writer)].insert(k);
    }
    // No param or state changes before the loss is known, so that a step whose loss is not
    // finite can stop with everything as it was. (What the loss waits for stays the same here:
    // a kernel waits for the loss only if the loss does not wait for it.)
    if (!g_.assigns.empty() && !g_.outputs.empty() && kernel_of_[at(g_.outputs[0].value)] >= 0) {
      int loss = kernel_of_[at(g_.outputs[0].value)];
      std::vector<bool> loss_waits(n, false);
      std::vector<int> stack(before[static_cast<size_t>(loss)].begin(), before[static_cast<size_t>(loss)].end());
      while (!stack.empty()) {
        int j = stack.back();
        stack.pop_back();
        if (loss_waits[static_cast<size_t>(j)]) continue;
        loss_waits[static_cast<size_t>(j)] = true;
        stack.insert(stack.end(), before[static_cast<size_t>(j)].begin(), before[static_cast<size_t>(j)].end());
      }
      for (const Assign& as : g_.assigns) {
        int writer = kernel_of_[at(as.value)];
        if (writer >= 0 && writer != loss && !loss_waits[static_cast<size_t>(writer)])
          before[static_cast<size_t>(writer)].insert(loss);
      }
    }
    std::vector<std::vector<int>> then(n);  // the kernels that wait for each
    for (size_t k = 0; k < n; ++k)
      for (int s : before[k]) then[static_cast<size_t>(s)].push_back(static_cast<int>(k));
    auto bytes = [&](ValueId v) { return g_[v].type.numel() * dtype_bytes(g_[v].type.dtype); };
    // A topological order, greedy on memory or else the earliest ready kernel; and its peak.
    // Ready kernels wait in a heap by (growth, index), or by index; a kernel's growth only falls
    // (when it becomes the last reader of an input), and a stale entry is skipped.
    auto schedule = [&](bool greedy, int64_t& peak) {
      std::vector<int> left = readers;
      std::vector<int> order;
      std::vector<bool> done(n, false);
      std::vector<size_t> waiting(n);
      std::vector<int64_t> growth(n, 0);
      using Entry = std::pair<int64_t, int>;
      std::priority_queue<Entry, std::vector<Entry>, std::greater<>> ready;
      auto push = [&](size_t k) { ready.emplace(greedy ? growth[k] : 0, static_cast<int>(k)); };
      for (size_t k = 0; k < n; ++k) {
        for (ValueId v : kernels_[k].outputs) growth[k] += bytes(v);
        for (ValueId v : kernels_[k].inputs)
          if (g_[v].kind == NodeKind::Op && left[at(v)] == 1) growth[k] -= bytes(v);
        waiting[k] = before[k].size();
        if (waiting[k] == 0) push(k);
      }
      int64_t live = 0;
      peak = 0;
      while (order.size() < n) {
        int best = -1;
        while (!ready.empty() && best < 0) {
          auto [g, k] = ready.top();
          ready.pop();
          if (!done[static_cast<size_t>(k)] && (!greedy || g == growth[static_cast<size_t>(k)])) best = k;
        }
        GRADC_ASSERT(best >= 0, "fusion made a cycle of kernels");
        done[static_cast<size_t>(best)] = true;
        for (ValueId v : kernels_[static_cast<size_t>(best)].outputs) live += bytes(v);
        peak = std::max(peak, live);
        for (ValueId v : kernels_[static_cast<size_t>(best)].inputs) {
          int& l = left[at(v)];
          if (--l == 0 && g_[v].kind == NodeKind::Op) live -= bytes(v);
          if (l == 1 && g_[v].kind == NodeKind::Op)  // its last reader now frees it
            for (int r : reader_list[at(v)])
              if (!done[static_cast<size_t>(r)]) {
                growth[static_cast<size_t>(r)] -= bytes(v);
                if (waiting[static_cast<size_t>(r)] == 0) push(static_cast<size_t>(r));
              }
        }
        order.push_back(best);
        for (int j : then[static_cast<size_t>(best)])
          if (--waiting[static_cast<size_t>(j)] == 0) push(static_cast<size_t>(j));
      }
      return order;
    };
    int64_t greedy_peak = 0, plain_peak = 0;
    std::vector<int> greedy = schedule(true, greedy_peak), plain = schedule(false, plain_peak);
    const std::vector<int>& order = greedy_peak <= plain_peak ? greedy : plain;
    std::vector<Kernel> sorted;
    for (int k : order) sorted.push_back(std::move(kernels_[static_cast<size_t>(k)]));
    kernels_ = std::move(sorted);
  }

  Graph g_;
  bool fuse_;
  std::vector<bool> live_;
  std::vector<std::vector<ValueId>> users_;
  std::vector<int> kernel_of_;  // while merging: the kernel as placed (kernel_now() maps it)
  std::vector<Kernel> kernels_;
  std::vector<std::vector<ValueId>> placed_sources_;  // see placed_sources()
  std::vector<bool> placed_sources_done_;
  std::map<std::pair<ValueId, ValueId>, const char*> refused_;  // (operand, reader): why their kernels stayed apart
  // Merging (see merge()).
  std::vector<int> parent_, index_of_, root_at_;
  std::vector<KernelSet> sets_;
  static constexpr int64_t kSpacing = int64_t{1} << 20;  // between positions, to move kernels into
  std::map<int64_t, int> order_;                          // position -> root
  std::vector<uint32_t> mark_, seen_;
  std::vector<int> seen_forward_, seen_backward_;
  uint32_t mark_epoch_ = 0, seen_epoch_ = 0;
  // After merging.
  std::vector<std::unordered_set<ValueId>> scalars_in_;  // the scalars placed in each kernel
  std::vector<std::vector<ValueId>> read_whole_in_;      // what each kernel's head reads whole (read_whole)
  std::vector<int> first_with_;
  std::vector<bool> is_result_;                  // an output's or assign's value
  std::vector<std::vector<ValueId>> sorted_members_;
  std::vector<bool> read_from_memory_;  // every kernel's inputs
};

}  // namespace

KernelProgram fuse(Graph g, const FusionOptions& options) { return Fuser(std::move(g), options).run(); }

}  // namespace gradc
