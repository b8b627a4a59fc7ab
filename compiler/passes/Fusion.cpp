#include "passes/Fusion.h"

#include <algorithm>
#include <map>
#include <set>

namespace gradc {

namespace {

bool has(const std::vector<ValueId>& v, ValueId id) { return std::find(v.begin(), v.end(), id) != v.end(); }

class Fuser {
 public:
  Fuser(Graph g, const FusionOptions& o) : g_(std::move(g)), fuse_(o.fuse) {}

  KernelProgram run() {
    find_live_and_users();
    kernel_of_.assign(g_.nodes.size(), -1);
    for (ValueId id = 0; id < g_.size(); ++id)
      if (is_candidate(id)) place_node(id);
    placed_sources_.assign(g_.nodes.size(), {});
    placed_sources_done_.assign(g_.nodes.size(), false);
    if (fuse_) merge_along_edges();
    place_scalars();
    KernelProgram p;
    for (Kernel& k : kernels_) collect_inputs(k);
    for (const Kernel& k : kernels_)
      for (ValueId v : k.inputs) read_from_memory_.insert(v);
    for (Kernel& k : kernels_) finish(k);
    order_kernels();
    p.kernels = std::move(kernels_);
    p.graph = std::move(g_);
    p.locations.assign(p.graph.nodes.size(), {});
    return p;
  }

 private:
  static size_t at(ValueId id) { return static_cast<size_t>(id); }

  void find_live_and_users() {
    live_.assign(g_.nodes.size(), false);
    users_.assign(g_.nodes.size(), {});
    for (const Output& o : g_.outputs) live_[at(o.value)] = true;
    for (const Assign& a : g_.assigns) live_[at(a.value)] = live_[at(a.target)] = true;
    for (ValueId id = g_.size(); id-- > 0;)
      if (live_[at(id)])
        for (ValueId a : g_[id].args) live_[at(a)] = true;
    for (ValueId id = 0; id < g_.size(); ++id)
      if (live_[at(id)])
        for (ValueId a : g_[id].args)
          if (!has(users_[at(a)], id)) users_[at(a)].push_back(id);
  }

  bool is_op(ValueId id, OpKind op) const { return g_[id].kind == NodeKind::Op && g_[id].op == op; }
  bool is_view(ValueId id) const { return is_op(id, OpKind::Reshape); }
  // A value whole only after its kernel's loops: a reduction, or a loss over the rows.
  bool is_reduction(ValueId id) const {
    return g_[id].kind == NodeKind::Op && ((op_info(g_[id].op).traits & kReduction) || g_[id].op == OpKind::SoftmaxCrossEntropy);
  }
  // How codegen computes an op: per element (Loop kernels), as a reduction, a matmul, a
  // convolution, or alone.
  enum class Form { Scalar, Reduction, MatMul, Conv, Row, Alone };
  static Form op_codegen_kind(OpKind op) {
    uint32_t t = op_info(op).traits;
    if (op == OpKind::MatMul) return Form::MatMul;
    if (op == OpKind::Conv2d) return Form::Conv;
    if (t & kReduction) return Form::Reduction;
    if ((t & kElementwise) || op == OpKind::BroadcastTo || op == OpKind::OneHot) return Form::Scalar;
    return Form::Alone;
  }

  bool has_scalar_form(ValueId id) const { return g_[id].kind == NodeKind::Op && form_of(id) == Form::Scalar; }

  // Softmax and log_softmax along the last axis of a matrix, and cross-entropy of such rows with
  // class ids: row by row, from each row's max and log-sum-exp (RowWise kernels).
  Form form_of(ValueId id) const {
    const Node& n = g_[id];
    Form f = op_codegen_kind(n.op);
    if (!fuse_ || f != Form::Alone || g_[n.args[0]].type.rank() != 2) return f;
    if ((op_info(n.op).traits & kRowwise) && n.attrs.get("axis").as_int() == 1) return Form::Row;
    if (n.op == OpKind::SoftmaxCrossEntropy && g_[n.args[1]].type.dtype == DType::I32) return Form::Row;
    return f;
  }


  // A transpose of the last two dims that only matmuls read: they read its operand transposed.
  bool folded_transpose(ValueId id) const {
    if (!fuse_ || !is_op(id, OpKind::Transpose)) return false;
    const std::vector<int64_t>& perm = g_[id].attrs.get("perm").as_ints();
    bool swap = perm == std::vector<int64_t>{1, 0} || perm == std::vector<int64_t>{0, 2, 1};
    if (!swap || g_.outputs.end() != std::find_if(g_.outputs.begin(), g_.outputs.end(), [&](const Output& o) { return o.value == id; }))
      return false;
    for (ValueId u : users_[at(id)])
      if (!is_op(u, OpKind::MatMul)) return false;
    return !users_[at(id)].empty();
  }

  // One element, computed from scalars: recomputed in every kernel that uses it.
  bool is_scalar(ValueId id) const {
    if (!fuse_ || !has_scalar_form(id) || g_[id].type.numel() != 1 || is_op(id, OpKind::OneHot)) return false;
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

  // Members in graph order, a MatMul or Conv kernel's head first (its epilogue runs after it).
  void sort_members(Kernel& k) const {
    std::sort(k.members.begin(), k.members.end());
    if (has_head_operands(k)) {
      OpKind head = k.kind == KernelKind::MatMul ? OpKind::MatMul : OpKind::Conv2d;
      auto mm = std::find_if(k.members.begin(), k.members.end(), [&](ValueId m) { return is_op(m, head); });
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
      case Form::Alone: add_member(new_kernel(KernelKind::Op, n.type.shape), id); return;
    }
  }

  // The kernels that read kernel k's members directly.
  std::set<int> readers_of(int k) const {
    std::set<int> out;
    for (size_t j = 0; j < kernels_.size(); ++j) {
      if (static_cast<int>(j) == k || kernels_[j].members.empty()) continue;
      std::set<int> from;
      for (ValueId m : kernels_[j].members) {
        if (is_head(kernels_[j], m)) {
          sources(kernels_[j].a, from);
          sources(kernels_[j].b, from);
        } else if (kernels_[j].kind == KernelKind::RowWise && form_of(m) == Form::Row) {
          for (ValueId a : g_[m].args) sources(a, from);
        } else {
          for (ValueId a : g_[m].args) sources(a, from);
        }
      }
      if (from.count(k)) out.insert(static_cast<int>(j));
    }
    return out;
  }

  // Is there a path from kernel `from` to kernel `to` through some other kernel?
  bool indirect_path(int from, int to) const {
    std::vector<int> stack;
    std::set<int> seen;
    for (int r : readers_of(from))
      if (r != to) stack.push_back(r);
    while (!stack.empty()) {
      int k = stack.back();
      stack.pop_back();
      if (k == to) return true;
      if (!seen.insert(k).second) continue;
      for (int r : readers_of(k)) stack.push_back(r);
    }
    return false;
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

  // Does a member of `k` read a reduction computed in kernel `other`, directly or through
  // scalars and views (clip_norm's scale reads the sum of every gradient's squares)? A reduction
  // is whole only after its kernel's loop, so the two cannot share one loop.
  bool reads_reduction_of(const Kernel& k, int other) {
    for (ValueId m : k.members)
      for (ValueId a : g_[m].args)
        for (ValueId s : placed_sources(a))
          if (kernel_of_[at(s)] == other && is_reduction(s)) return true;
    return false;
  }

  // A MatMul, Conv or RowWise kernel starts from operands in memory (its head), then runs the
  // elementwise members of the others as an epilogue.
  static bool headed(const Kernel& k) { return has_head_operands(k) || k.kind == KernelKind::RowWise; }

  // Does kernel `from` produce what kernel k's head reads?
  bool feeds_head(int from, const Kernel& k) const {
    std::set<int> src;
    if (has_head_operands(k)) sources(k.a, src), sources(k.b, src);
    if (k.kind == KernelKind::RowWise) sources(k.rows, src);
    return src.count(from) > 0;
  }

  bool can_merge(int p, int q) {
    const Kernel &kp = kernels_[static_cast<size_t>(p)], &kq = kernels_[static_cast<size_t>(q)];
    if (kp.kind == KernelKind::Op || kq.kind == KernelKind::Op || kp.domain != kq.domain) return false;
    bool rows_pair = kp.kind == KernelKind::RowWise && kq.kind == KernelKind::RowWise && kp.rows == kq.rows;
    if (headed(kp) && headed(kq) && !rows_pair) return false;
    if ((headed(kp) && feeds_head(q, kp)) || (headed(kq) && feeds_head(p, kq))) return false;
    return !reads_reduction_of(kq, p) && !reads_reduction_of(kp, q) && !indirect_path(p, q) && !indirect_path(q, p);
  }

  // Moves the members of one kernel into the other (into the headed one, if either is).
  void merge(int p, int q) {
    if (headed(kernels_[static_cast<size_t>(q)]) && !headed(kernels_[static_cast<size_t>(p)])) std::swap(p, q);
    Kernel &into = kernels_[static_cast<size_t>(p)], &from = kernels_[static_cast<size_t>(q)];
    for (ValueId m : from.members) kernel_of_[at(m)] = p;
    into.members.insert(into.members.end(), from.members.begin(), from.members.end());
    sort_members(into);
    from.members.clear();
  }

  // Merges the consumer of each edge into its producer's kernel where both are loop nests over
  // the same domain: the producer is not a reduction (its result is whole only after the loop),
  // the consumer's kernel holds no matmul (its operands would have to be computed first), and
  // no path between the two leaves the pair (which would make a cycle).
  void merge_along_edges() {
    for (ValueId c = 0; c < g_.size(); ++c) {
      if (!is_candidate(c)) continue;
      Form form = form_of(c);
      if (form == Form::Row) {  // rows normalized twice (softmax and the loss): one pass over them
        for (size_t k = 0; k < kernels_.size(); ++k) {
          int p = static_cast<int>(k), q = kernel_of_[at(c)];
          if (p != q && kernels_[k].kind == KernelKind::RowWise && kernels_[k].rows == g_[c].args[0] && can_merge(p, q))
            merge(p, q);
        }
        continue;
      }
      if (form != Form::Scalar && form != Form::Reduction) continue;
      for (ValueId a : g_[c].args) {
        int p = kernel_of_[at(a)], q = kernel_of_[at(c)];
        if (p < 0 || p == q || is_reduction(a) || !can_merge(p, q)) continue;
        merge(p, q);
      }
    }
    std::vector<Kernel> kept;
    for (Kernel& k : kernels_)
      if (!k.members.empty()) kept.push_back(std::move(k));
    kernels_ = std::move(kept);
    for (size_t k = 0; k < kernels_.size(); ++k)
      for (ValueId m : kernels_[k].members) kernel_of_[at(m)] = static_cast<int>(k);
  }

  // Scalars go into every Loop, MatMul or Conv kernel with a member that reads them (with the scalars
  // they read in turn). One kernel stores a scalar that something else needs; if no kernel
  // computes it, it gets a kernel of its own.
  void add_scalar(Kernel& k, ValueId id) {
    if (has(k.members, id)) return;
    for (ValueId a : g_[id].args)
      if (is_scalar(a)) add_scalar(k, a);
    k.members.push_back(id);
  }

  void place_scalars() {
    for (Kernel& k : kernels_) {
      if (k.kind == KernelKind::Op) continue;
      std::vector<ValueId> members = k.members;
      for (ValueId m : members)
        for (ValueId a : g_[m].args)
          if (is_scalar(a) && !is_head(k, m)) add_scalar(k, a);
      sort_members(k);
    }
    for (ValueId id = 0; id < g_.size(); ++id) {
      if (!live_[at(id)] || !is_scalar(id) || !needs_store(id)) continue;
      int storer = -1;
      for (size_t k = 0; k < kernels_.size() && storer < 0; ++k)
        if (has(kernels_[k].members, id)) storer = static_cast<int>(k);
      if (storer < 0) {
        storer = new_kernel(KernelKind::Loop, g_[id].type.shape);
        add_scalar(kernels_[static_cast<size_t>(storer)], id);
        sort_members(kernels_.back());
      }
      kernel_of_[at(id)] = storer;
    }
  }

  // A scalar that an output, an assign or a node outside Loop kernels and epilogues reads.
  bool needs_store(ValueId id) const {
    for (const Output& o : g_.outputs)
      if (o.value == id) return true;
    for (const Assign& a : g_.assigns)
      if (a.value == id) return true;
    for (ValueId u : users_[at(id)]) {
      if (is_scalar(u)) continue;
      int k = kernel_of_[at(u)];
      if (k < 0 || !has(kernels_[static_cast<size_t>(k)].members, id)) return true;
    }
    return false;
  }

  bool stored_outside(const Kernel& k, ValueId m) const {
    // A scalar is computed wherever it is used but stored by one kernel only.
    if (is_scalar(m)) return kernel_of_[at(m)] >= 0 && &kernels_[static_cast<size_t>(kernel_of_[at(m)])] == &k;
    // Another kernel reads it (a scalar recomputed there may read a reduction of this one).
    if (read_from_memory_.count(m) && !has(k.inputs, m)) return true;
    for (const Output& o : g_.outputs)
      if (o.value == m) return true;
    for (const Assign& a : g_.assigns)
      if (a.value == m) return true;
    for (ValueId u : users_[at(m)])
      if (!has(k.members, u)) return true;
    return false;
  }

  // The values the members read from memory (no constants).
  void collect_inputs(Kernel& k) const {
    auto read = [&](ValueId a) {
      ValueId r = a;  // a reshaped constant is still a constant
      while (is_view(r)) r = g_[r].args[0];
      if (g_[r].kind != NodeKind::Constant && !has(k.members, a) && !has(k.inputs, a)) k.inputs.push_back(a);
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
  void finish(Kernel& k) {
    for (ValueId m : k.members)
      if (stored_outside(k, m)) k.outputs.push_back(m);
    int64_t domain = TensorType{DType::F32, k.domain}.numel();
    for (ValueId m : k.members) {
      const Node& n = g_[m];
      if (k.kind == KernelKind::MatMul && m == k.members[0]) {
        const Shape& as = g_[n.args[0]].type.shape;
        k.flops = saturating_add(k.flops, saturating_mul(2 * n.type.numel(), as.back()));
      } else if (k.kind == KernelKind::Op || is_head(k, m)) {
        k.flops = saturating_add(k.flops, op_flops(n));
      } else if (n.type.numel() != 1 || domain == 1) {
        k.flops = saturating_add(k.flops, domain);  // an elementwise op or a reduction step per element (scalars: hoisted)
      }
    }
    for (ValueId v : k.inputs) k.bytes = saturating_add(k.bytes, saturating_bytes(g_[v].type));
    for (ValueId v : k.outputs) k.bytes = saturating_add(k.bytes, saturating_bytes(g_[v].type));
    ValueId named = k.outputs.empty() ? k.members.back() : k.outputs.back();
    std::string what = g_[named].name.empty() ? std::string(op_info(g_[named].op).name) : g_[named].name;
    k.name = what;
  }

  int64_t op_flops(const Node& n) const {
    switch (n.op) {
      case OpKind::Conv2d: {
        const Shape& w = g_[n.args[1]].type.shape;
        return saturating_mul(saturating_mul(2 * n.type.numel(), w[1]), w[2] * w[3]);
      }
      case OpKind::Conv2dInputGrad: {
        const Shape& w = g_[n.args[1]].type.shape;
        return saturating_mul(saturating_mul(2 * g_[n.args[0]].type.numel(), w[1]), w[2] * w[3]);
      }
      case OpKind::Conv2dWeightGrad: return saturating_mul(2 * g_[n.args[1]].type.numel(), n.type.numel() / n.type.shape[0]);
      default: {
        int64_t most = n.type.numel();
        for (ValueId a : n.args) most = std::max(most, g_[a].type.numel());
        return most;
      }
    }
  }

  // Does kernel k (transitively) wait for kernel on?
  static bool depends(int k, int on, const std::vector<std::set<int>>& before) {
    std::vector<int> stack(before[static_cast<size_t>(k)].begin(), before[static_cast<size_t>(k)].end());
    std::set<int> seen;
    while (!stack.empty()) {
      int j = stack.back();
      stack.pop_back();
      if (j == on) return true;
      if (!seen.insert(j).second) continue;
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
    std::vector<std::set<int>> before(n);
    std::map<ValueId, int> readers;  // kernels still to run that read a value
    for (size_t k = 0; k < n; ++k)
      for (ValueId v : kernels_[k].inputs) {
        std::set<int> from;
        sources(v, from);
        for (int s : from)
          if (s != static_cast<int>(k)) before[k].insert(s);
        ++readers[v];
      }
    // A param or state is best updated in place: the kernel that computes its new value waits
    // for every other kernel that reads the old one (unless one of those needs the new value).
    for (const Assign& as : g_.assigns) {
      int writer = kernel_of_[at(as.value)];
      if (writer < 0) continue;
      for (size_t k = 0; k < n; ++k) {
        if (static_cast<int>(k) == writer) continue;
        bool reads = false;
        for (ValueId v : kernels_[k].inputs) {
          ValueId r = v;
          while (is_view(r)) r = g_[r].args[0];
          reads = reads || r == as.target;
        }
        if (reads && !depends(static_cast<int>(k), writer, before)) before[static_cast<size_t>(writer)].insert(static_cast<int>(k));
      }
    }
    // No param or state changes before the loss is known, so that a step whose loss is not
    // finite can stop with everything as it was.
    if (!g_.assigns.empty() && !g_.outputs.empty() && kernel_of_[at(g_.outputs[0].value)] >= 0) {
      int loss = kernel_of_[at(g_.outputs[0].value)];
      for (const Assign& as : g_.assigns) {
        int writer = kernel_of_[at(as.value)];
        if (writer >= 0 && writer != loss && !depends(loss, writer, before)) before[static_cast<size_t>(writer)].insert(loss);
      }
    }
    auto bytes = [&](ValueId v) { return g_[v].type.numel() * dtype_bytes(g_[v].type.dtype); };
    // A topological order, greedy on memory or else the earliest ready kernel; and its peak.
    auto schedule = [&](bool greedy, int64_t& peak) {
      std::map<ValueId, int> left = readers;
      std::vector<int> order;
      std::vector<bool> done(n, false);
      int64_t live = 0;
      peak = 0;
      while (order.size() < n) {
        int best = -1;
        int64_t best_growth = 0;
        for (size_t k = 0; k < n; ++k) {
          if (done[k] || !std::all_of(before[k].begin(), before[k].end(), [&](int s) { return done[static_cast<size_t>(s)]; }))
            continue;
          int64_t growth = 0;
          for (ValueId v : kernels_[k].outputs) growth += bytes(v);
          for (ValueId v : kernels_[k].inputs)
            if (g_[v].kind == NodeKind::Op && left[v] == 1) growth -= bytes(v);
          if (best < 0 || (greedy && growth < best_growth)) best = static_cast<int>(k), best_growth = growth;
        }
        GRADC_ASSERT(best >= 0, "fusion made a cycle of kernels");
        for (ValueId v : kernels_[static_cast<size_t>(best)].outputs) live += bytes(v);
        peak = std::max(peak, live);
        for (ValueId v : kernels_[static_cast<size_t>(best)].inputs)
          if (--left[v] == 0 && g_[v].kind == NodeKind::Op) live -= bytes(v);
        order.push_back(best);
        done[static_cast<size_t>(best)] = true;
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
  std::vector<int> kernel_of_;
  std::vector<Kernel> kernels_;
  std::vector<std::vector<ValueId>> placed_sources_;  // see placed_sources()
  std::vector<bool> placed_sources_done_;
  std::set<ValueId> read_from_memory_;  // every kernel's inputs
};

}  // namespace

KernelProgram fuse(Graph g, const FusionOptions& options) { return Fuser(std::move(g), options).run(); }

}  // namespace gradc
