#include "codegen/ModuleEmitter.h"

#include <cstdlib>
#include <map>
#include <numeric>
#include <set>
#include <unordered_map>

#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include "codegen/ConvEmitters.h"
#include "codegen/Gemm.h"
#include "codegen/KernelBuilder.h"
#include "codegen/ParallelTasks.h"

namespace gradc::codegen {

namespace {

using Values = std::vector<llvm::Value*>;

InitSpec init_spec(const Node& n) {
  if (!n.init) return {"zeros", {}};
  InitSpec s{n.init->kind, {}};
  for (const NamedAttr& a : n.init->args) s.args.emplace_back(a.name, a.value.as_number());
  return s;
}

bool contains(const std::vector<ValueId>& v, ValueId id) { return std::find(v.begin(), v.end(), id) != v.end(); }

// Strides that read an operand whose dims are the domain's leading dims (one_hot's ids).
std::vector<int64_t> leading_strides(const Shape& operand, const Shape& domain) {
  std::vector<int64_t> s = strides_of(operand);
  s.resize(domain.size(), 0);
  return s;
}

// The Constant node behind `id` (through reshapes), or -1.
ValueId constant_root(const Graph& g, ValueId id) {
  while (g[id].kind == NodeKind::Op && g[id].op == OpKind::Reshape) id = g[id].args[0];
  return g[id].kind == NodeKind::Constant ? id : -1;
}

llvm::Constant* constant_of(llvm::LLVMContext& ctx, const Node& n) {
  switch (n.type.dtype) {
    case DType::I32: return llvm::ConstantInt::get(llvm::Type::getInt32Ty(ctx), static_cast<uint64_t>(static_cast<int64_t>(n.constant)));
    case DType::F32: return llvm::ConstantFP::get(llvm::Type::getFloatTy(ctx), static_cast<double>(static_cast<float>(n.constant)));
    case DType::F64: return llvm::ConstantFP::get(llvm::Type::getDoubleTy(ctx), n.constant);
  }
  return nullptr;
}

// The body of one kernel: its members' code over the buffers it was given.
class KernelBody {
 public:
  // k's function takes the kernel's places (arg_of numbers them), then the scratch pointer,
  // then the pool (a kernel) or the range of tasks (a kernel's tasks).
  // `checked`: the values this step assigns to params (with the param's name), which the
  // kernel checks for NaN and infinities as it stores them.
  KernelBody(KernelBuilder& k, const Graph& g, const Kernel& kernel, const std::map<ValueId, unsigned>& arg_of, unsigned places,
             const std::map<ValueId, std::string>& checked)
      : k_(k), g_(g), kernel_(kernel), arg_of_(arg_of), places_(places), checked_(checked) {
    for (auto [v, i] : arg_of) buf_[v] = Buffer{g_[v].type, k.fn->getArg(i), nullptr};
  }

  int64_t scratch_bytes() const { return scratch_bytes_; }
  // The error codes of non-finite params: the step stops after changing params.
  const std::vector<int32_t>& nonfinite_codes() const { return nonfinite_codes_; }

  void emit() {
    switch (kernel_.kind) {
      case KernelKind::Loop: loop(); break;
      case KernelKind::MatMul: matmul(); break;
      case KernelKind::Conv: conv(); break;
      case KernelKind::RowWise: rowwise(); break;
      case KernelKind::Op: op(); break;
    }
    check_finite();
  }

 private:
  const OpCodegen& cg(ValueId m) const { return op_codegen(g_[m].op); }
  bool is_reduction(ValueId m) const { return cg(m).combine != nullptr; }
  const Buffer& buffer(ValueId v) const { return buf_.at(v); }

  // The value of operand `a` of member `m` at the current element.
  llvm::Value* operand(ValueId m, ValueId a, const Values& idx, llvm::Value* flat) {
    if (auto it = vals_.find(a); it != vals_.end()) return it->second;
    if (ValueId c = constant_root(g_, a); c >= 0) return constant_of(k_.fn->getContext(), g_[c]);
    if (auto it = loaded_.find(a); it != loaded_.end() && !cg(m).leading_operands) return it->second;
    const Buffer& b = buffer(a);
    if (b.numel() == 1) return k_.load(b, k_.index(0));
    if (flat) return k_.load(b, flat);
    const Shape& shape = g_[a].type.shape;
    std::vector<int64_t> s = cg(m).leading_operands ? leading_strides(shape, kernel_.domain) : broadcast_strides(shape, kernel_.domain);
    // (leading operands, one_hot's ids, are read once: the lanes run along the last dim only)
    return k_.lanes() && !cg(m).leading_operands ? k_.load_lanes(b, k_.offset(idx, s), lane_offsets(s), valid_)
                                                 : k_.load(b, k_.offset(idx, s));
  }

  // Vector mode: lane l is the element lane_at_[l] = (rows, columns) away from the current one;
  // its offset in a buffer read with strides s (the last two being the row's and the column's).
  std::vector<int64_t> lane_offsets(const std::vector<int64_t>& s) const {
    int64_t row = s.size() >= 2 ? s[s.size() - 2] : 0, col = s.back();
    std::vector<int64_t> out;
    for (auto [dr, dc] : lane_at_) out.push_back(dr * row + dc * col);
    return out;
  }

  // Stores member or input-sized value v at the current element (or lanes).
  void put(ValueId v, const Values& idx, llvm::Value* flat, llvm::Value* value) {
    if (checked_.count(v)) note_finite(v, value);
    if (!k_.lanes() || g_[v].type.numel() == 1) return k_.store(buffer(v), at(v, idx, flat), value);
    std::vector<int64_t> s = broadcast_strides(g_[v].type.shape, kernel_.domain);
    k_.store_lanes(buffer(v), k_.offset(idx, s), lane_offsets(s), valid_, value);
  }

  bool no_reductions() const {
    return std::none_of(kernel_.members.begin(), kernel_.members.end(), [&](ValueId m) { return is_reduction(m); });
  }

  // Can the epilogue run on vectors of consecutive columns? Only f32 values (the tile's), and no
  // op that needs the element's index.
  // (A RowWise kernel's own members, its row ops and losses, and one_hot's class ids are fine.)
  bool vector_epilogue() const {
    for (ValueId m : kernel_.members) {
      if (kernel_.kind == KernelKind::RowWise && (cg(m).row || cg(m).row_loss)) continue;
      if (g_[m].type.dtype != DType::F32 || cg(m).row || cg(m).row_loss) return false;
      if (g_[m].op == OpKind::OneHot) continue;  // f32 from i32 ids, read once per row
      if (cg(m).leading_operands) return false;
      for (ValueId a : g_[m].args)
        if (g_[a].type.dtype != DType::F32) return false;
    }
    return true;
  }

  llvm::Value* at(ValueId v, const Values& idx, llvm::Value* flat) {
    if (g_[v].type.numel() == 1) return k_.index(0);
    return flat ? flat : k_.offset(idx, broadcast_strides(g_[v].type.shape, kernel_.domain));
  }

  Shape kept_shape(ValueId r) const {
    Shape kept = g_[g_[r].args[0]].type.shape;
    for (int64_t axis : g_[r].attrs.get("axes").as_ints()) kept[static_cast<size_t>(axis)] = 1;
    return kept;
  }

  // A new param's value (or lanes of it) as it is stored: its flag records a NaN or an infinity.
  // The flag is the largest magnitude seen, as the bits of |x| taken as an unsigned integer (NaNs
  // and infinities are the largest: exponent all ones), kept per lane of the stores and reduced
  // once after the loops: two integer ops per store. (A compare and a mask-or per store, or a
  // reduction per store, cost the seed's step 6-9%.)
  void note_finite(ValueId v, llvm::Value* value) {
    auto& ir = k_.b;
    llvm::Type* t = value->getType();
    unsigned width = t->getScalarSizeInBits();
    llvm::Type* bits_type = ir.getIntNTy(width);
    if (auto* vt = llvm::dyn_cast<llvm::FixedVectorType>(t)) bits_type = llvm::FixedVectorType::get(bits_type, vt->getNumElements());
    llvm::Value* magnitude = ir.CreateAnd(ir.CreateBitCast(value, bits_type),
                                          llvm::ConstantInt::get(bits_type, llvm::APInt::getSignedMaxValue(width)));
    if (auto* vt = llvm::dyn_cast<llvm::FixedVectorType>(t)) {
      int64_t lanes = static_cast<int64_t>(vt->getNumElements());
      if (valid_ < lanes)  // lanes past the tile hold no result
        magnitude = ir.CreateSelect(k_.lane_mask(valid_, lanes), magnitude, llvm::Constant::getNullValue(bits_type));
    }
    std::vector<llvm::Value*>& flags = finite_flags_[v];  // one per width of store
    auto same = std::find_if(flags.begin(), flags.end(), [&](llvm::Value* f) { return k_.type_of(f) == bits_type; });
    if (same == flags.end()) same = flags.insert(flags.end(), k_.entry_local(llvm::Constant::getNullValue(bits_type)));
    k_.set(*same, ir.CreateBinaryIntrinsic(llvm::Intrinsic::umax, k_.get(*same), magnitude));
  }

  // Whether any element noted for v was not finite: its magnitude's exponent bits are all ones.
  llvm::Value* any_nonfinite(ValueId v) {
    auto& ir = k_.b;
    llvm::Value* any = ir.getFalse();
    for (llvm::Value* f : finite_flags_.at(v)) {
      llvm::Value* largest = k_.get(f);
      if (largest->getType()->isVectorTy()) largest = ir.CreateUnaryIntrinsic(llvm::Intrinsic::vector_reduce_umax, largest);
      unsigned width = largest->getType()->getIntegerBitWidth();
      uint64_t infinity = width == 32 ? 0x7f800000u : 0x7ff0000000000000u;
      any = ir.CreateOr(any, ir.CreateICmpUGE(largest, llvm::ConstantInt::get(largest->getType(), infinity)));
    }
    return any;
  }

  // After the kernel's loops: fails with a code of its own for each param that went non-finite.
  // A value no epilogue stored element by element (an op's own loop nest wrote it) is scanned,
  // unless `scan_unnoted` is false (a task's part: the kernel scans after all its tasks).
  void check_finite(bool scan_unnoted = true) {
    for (ValueId v : kernel_.outputs) {
      auto checked = checked_.find(v);
      if (checked == checked_.end() || noted_elsewhere_.count(v)) continue;
      if (!finite_flags_.count(v) && !scan_unnoted) continue;
      if (!finite_flags_.count(v)) {
        const Buffer& out = buffer(v);
        k_.loop(out.numel(), [&](llvm::Value* i) { note_finite(v, k_.load(out, i)); });
      }
      nonfinite_codes_.push_back(k_.fail_if(
          any_nonfinite(v),
          fmt::format("param '{}' is not finite after this step's update (a NaN or an infinity in its gradient or its "
                      "update); params and state are partly updated",
                      checked->second)));
    }
  }

  void start_reductions() {
    for (ValueId m : kernel_.members)
      if (is_reduction(m)) {
        const Buffer& out = buffer(m);
        llvm::Value* init = k_.real(g_[m].type.dtype, cg(m).init);
        k_.loop(out.numel(), [&](llvm::Value* i) { k_.store(out, i, init); });
      }
  }

  void finish_reductions() {
    for (ValueId m : kernel_.members)
      if (is_reduction(m) && cg(m).mean) {
        const Buffer& out = buffer(m);
        double count = static_cast<double>(g_[g_[m].args[0]].type.numel() / std::max<int64_t>(out.numel(), 1));
        llvm::Value* c = k_.real(g_[m].type.dtype, count);
        k_.loop(out.numel(), [&](llvm::Value* i) { k_.store(out, i, k_.b.CreateFDiv(k_.load(out, i), c)); });
      }
  }

  // Scalars computed from scalars alone (Adam's bias corrections: powers of beta by the step
  // count, their square root, lr over one of them) do not change from element to element: they
  // are computed once, where the builder stands (before the kernel's loops), and every element
  // uses them. Their stores, if they are outputs, stay with the elements: an output may share an
  // input's bytes, and must not be written before that input has been read.
  void hoist_scalars() {
    k_.set_lanes(0);
    for (ValueId m : kernel_.members) {
      const Node& n = g_[m];
      if (m == kernel_.members[0] && kernel_.kind != KernelKind::Loop) continue;  // the head
      if (n.type.numel() != 1 || n.type.dtype == DType::I32 || is_reduction(m) || cg(m).row || cg(m).row_loss || cg(m).leading_operands)
        continue;
      bool from_scalars = true;
      for (ValueId a : n.args)
        from_scalars = from_scalars && g_[a].type.numel() == 1 && g_[a].type.dtype != DType::I32 &&
                       (hoisted_.count(a) || constant_root(g_, a) >= 0 || (buf_.count(a) && contains(kernel_.inputs, a)));
      if (!from_scalars) continue;
      Values args;
      for (ValueId a : n.args) args.push_back(hoisted_.count(a) ? hoisted_[a] : operand(m, a, {}, nullptr));
      hoisted_[m] = cg(m).scalar(k_, n, args, {});
    }
  }

  // Every member at one element of the domain (idx, or flat in a flat loop), in graph order.
  void members_at(const Values& idx, llvm::Value* flat, size_t first) {
    // Inputs read at this very element are loaded before anything is stored: an output may
    // share an input's bytes (the memory plan updates in place).
    loaded_.clear();
    for (ValueId a : kernel_.inputs)
      if (constant_root(g_, a) < 0 && g_[a].type.shape == kernel_.domain && g_[a].type.numel() > 1) {
        llvm::Value* o = flat ? flat : k_.offset(idx, strides_of(kernel_.domain));
        loaded_[a] = k_.lanes() ? k_.load_lanes(buffer(a), o, lane_offsets(strides_of(kernel_.domain)), valid_) : k_.load(buffer(a), o);
      }
    int64_t lanes = k_.lanes();
    for (size_t i = first; i < kernel_.members.size(); ++i) {
      ValueId m = kernel_.members[i];
      const Node& n = g_[m];
      if (auto h = hoisted_.find(m); h != hoisted_.end()) vals_[m] = h->second;
      if (vals_.count(m)) {  // computed by the kernel's head, or hoisted
        if (contains(kernel_.outputs, m)) put(m, idx, flat, vals_[m]);
        continue;
      }
      if (cg(m).row_loss) continue;  // accumulated row by row
      if (is_reduction(m)) {
        reduce(m, idx, operand(m, n.args[0], idx, flat));
        continue;
      }
      if (!cg(m).leading_operands) {
        bool is_int = n.type.dtype == DType::I32;
        for (ValueId a : n.args) is_int = is_int || g_[a].type.dtype == DType::I32;
        if (is_int) fail(n.loc, "codegen: {} on i32 tensors is not supported by the JIT yet (the interpreter runs it)", op_info(n.op).name);
      }
      Values args;
      for (ValueId a : n.args) args.push_back(operand(m, a, idx, flat));
      // In vector mode a scalar (one element, from scalars) is computed once, as a scalar.
      bool one = lanes && n.type.numel() == 1;
      k_.set_lanes(one ? 0 : lanes);
      if (!cg(m).leading_operands)
        for (llvm::Value*& a : args) a = k_.splat(a);
      Values index = idx;
      if (lanes && !one && cg(m).leading_operands) {  // the last index of each lane
        std::vector<llvm::Constant*> along;
        for (auto [dr, dc] : lane_at_) along.push_back(k_.b.getInt64(static_cast<uint64_t>(dc)));
        index.back() = k_.b.CreateAdd(k_.splat(idx.back()), llvm::ConstantVector::get(along));
      }
      llvm::Value* v = cg(m).scalar(k_, n, args, index);
      vals_[m] = v;
      if (contains(kernel_.outputs, m)) put(m, idx, flat, v);
      k_.set_lanes(lanes);
    }
  }

  // Folds v into reduction m's accumulator for this element. In vector mode the lanes go into
  // consecutive accumulators, or one after the other into the same one (the order of the loop).
  void reduce(ValueId m, const Values& idx, llvm::Value* v) {
    const Buffer& out = buffer(m);
    std::vector<int64_t> s = broadcast_strides(kept_shape(m), kernel_.domain);
    llvm::Value* o = k_.offset(idx, s);
    int64_t lanes = k_.lanes();
    if (!lanes) return k_.store(out, o, cg(m).combine(k_, k_.load(out, o), v));
    v = k_.splat(v);
    std::vector<int64_t> offsets = lane_offsets(s);
    if (offsets[0] != offsets[1])  // lanes to lanes (vector_epilogue: then every lane has its own)
      return k_.store_lanes(out, o, offsets, valid_, cg(m).combine(k_, k_.load_lanes(out, o, offsets, valid_), v));
    k_.set_lanes(0);
    llvm::Value* acc = k_.load(out, o);
    for (int64_t l = 0; l < valid_; ++l) acc = cg(m).combine(k_, acc, k_.b.CreateExtractElement(v, static_cast<uint64_t>(l)));
    k_.store(out, o, acc);
    k_.set_lanes(lanes);
  }

  void loop() {
    const Shape& d = kernel_.domain;
    int64_t count = TensorType{DType::F32, d}.numel();
    bool flat = true;
    for (ValueId m : kernel_.members) flat = flat && !is_reduction(m) && !cg(m).leading_operands;
    for (ValueId v : kernel_.inputs) flat = flat && (g_[v].type.numel() == count || g_[v].type.numel() == 1);
    start_reductions();
    if (int64_t axis = loop_split_axis(flat); axis >= 0) {
      // Tasks of whole slices along `axis` (flat: runs of elements), about kTaskElements each.
      int64_t units = flat ? count : d[static_cast<size_t>(axis)];
      int64_t per_unit = count / units;
      int64_t per_task = std::max<int64_t>(1, kTaskElements / per_unit);
      if (flat) per_task = (per_task + 63) / 64 * 64;  // whole vectors, but for the last task
      split_tasks(".tasks", tasks_of(units, per_task), true, /*scan_unnoted=*/false, [&](KernelBody& task, llvm::Value* begin, llvm::Value* end) {
        auto [first, last] = task.task_units(begin, end, units, per_task);
        task.loop_range(flat, static_cast<size_t>(axis), first, last);
      });
      finish_reductions();
      return;
    }
    hoist_scalars();
    if (flat) {
      k_.loop(count, [&](llvm::Value* i) {
        vals_.clear();
        members_at({}, i, 0);
      });
    } else {
      k_.loops(d, [&](const Values& idx) {
        vals_.clear();
        members_at(idx, nullptr, 0);
      });
    }
    finish_reductions();
  }

  // The axis a Loop kernel's tasks split (0 for a flat loop), or -1 for one thread: the kernel
  // is large, and no reduction sums along the axis (each element's sum then runs in its order
  // in one task). The first axis that no reduction reduces; those before it loop whole in each
  // task.
  int64_t loop_split_axis(bool flat) const {
    const Shape& d = kernel_.domain;
    if (TensorType{DType::F32, d}.numel() < kParallelElements) return -1;
    if (flat) return 0;
    std::vector<bool> reduced(d.size(), false);
    for (ValueId m : kernel_.members) {
      if (!is_reduction(m)) continue;
      if (g_[g_[m].args[0]].type.shape != d) return -1;
      for (int64_t axis : g_[m].attrs.get("axes").as_ints()) reduced[static_cast<size_t>(axis)] = true;
    }
    for (size_t axis = 0; axis < d.size(); ++axis)
      if (!reduced[axis] && d[axis] > 1) return static_cast<int64_t>(axis);
    return -1;
  }

  // A task's part of a Loop kernel: elements [first, last) of a flat loop, else the slices
  // [first, last) along `axis` (every index of the axes before it and after it).
  void loop_range(bool flat, size_t axis, llvm::Value* first, llvm::Value* last) {
    if (flat) {
      k_.loop(first, last, [&](llvm::Value* i) {
        vals_.clear();
        members_at({}, i, 0);
      });
      return;
    }
    const Shape& d = kernel_.domain;
    Shape before(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(axis)), after(d.begin() + static_cast<std::ptrdiff_t>(axis) + 1, d.end());
    k_.loops(before, [&](const Values& outer) {
      k_.loop(first, last, [&](llvm::Value* i) {
        k_.loops(after, [&](const Values& inner) {
          Values idx = outer;
          idx.push_back(i);
          idx.insert(idx.end(), inner.begin(), inner.end());
          vals_.clear();
          members_at(idx, nullptr, 0);
        });
      });
    });
  }

  struct MatMulShape {
    int64_t batches, m, n, k;
  };
  MatMulShape matmul_shape() const {
    const Shape& d = kernel_.domain;
    const Shape& as = g_[kernel_.a].type.shape;
    return {d.size() == 3 ? d[0] : 1, d[d.size() - 2], d.back(), kernel_.a_transposed ? as[as.size() - 2] : as.back()};
  }

  // The epilogue at one result: the head's value, then the other members. Or, with lanes, at
  // that many results (a vector `value`): lane l at lane_at[l] (rows, columns) from idx, the
  // first `valid` of them results. members_at stores the head (if it is an output) after it has
  // loaded the inputs at this element, one of which the memory plan may have given the head's
  // bytes.
  void epilogue_at(Values idx, llvm::Value* value, const std::vector<std::pair<int64_t, int64_t>>& lane_at = {}, int64_t valid = 0) {
    if (kernel_.kind == KernelKind::MatMul && kernel_.domain.size() == 2) idx.erase(idx.begin());  // the GEMM's batch 0
    k_.set_lanes(static_cast<int64_t>(lane_at.size()));
    lane_at_ = lane_at;
    valid_ = valid;
    vals_.clear();
    vals_[kernel_.members[0]] = value;
    members_at(idx, nullptr, 0);
    k_.set_lanes(0);
  }

  // The epilogue of one finished tile of C (rows x cols from (row0, col0), its results in `tile`
  // as the plan lays them out): on tile rows as vectors when they are whole vectors, else on
  // vectors of `lanes` results in row-major order (flat), else element by element.
  void tile_epilogue(const GemmPlan& plan, bool vector, bool flat_vectors, llvm::Value* batch, llvm::Value* row0, int64_t rows,
                     llvm::Value* col0, int64_t cols, llvm::Value* tile) {
    auto& ir = k_.b;
    auto* f32 = ir.getFloatTy();
    int64_t lanes = plan.lanes;
    // The tile's element (r, c) of C, from (row0, col0), is at tile[at(r, c)].
    auto at = [&](int64_t r, int64_t c) { return plan.swapped ? c * plan.nr + r : r * plan.nr + c; };
    if (plan.swapped) {
      std::swap(row0, col0);
      std::swap(rows, cols);
    }
    if (vector && !plan.swapped && cols % lanes == 0) {  // each tile row as the vectors it was in registers
      std::vector<std::pair<int64_t, int64_t>> along_row;
      for (int64_t l = 0; l < lanes; ++l) along_row.emplace_back(0, l);
      k_.rolled_loop(rows, [&](llvm::Value* r) {
        for (int64_t c = 0; c < cols; c += lanes) {
          auto* vt = llvm::FixedVectorType::get(f32, static_cast<unsigned>(lanes));
          llvm::Value* at = ir.CreateInBoundsGEP(f32, tile, ir.CreateAdd(ir.CreateMul(r, k_.index(plan.nr)), k_.index(c)));
          llvm::Value* v = ir.CreateAlignedLoad(vt, at, llvm::Align(static_cast<uint64_t>(lanes * 4)));
          epilogue_at({batch, ir.CreateAdd(row0, r), ir.CreateAdd(col0, k_.index(c))}, v, along_row, lanes);
        }
      });
    } else if (flat_vectors) {
      // Narrow tiles (the seed's 10 columns): the tile's results in row-major order,
      // `lanes` at a time, so that no vector is mostly masked off and a masked store
      // at the end of one row does not stall the loads of the next.
      Buffer tile_buffer{TensorType{DType::F32, {plan.mr * plan.nr}}, tile, nullptr};
      // The vector of results e0.. (valid of them) from tile row `shift` on.
      auto results = [&](int64_t e0, int64_t valid, llvm::Value* shift) {
        int64_t r0 = e0 / cols, c0 = e0 % cols;
        std::vector<std::pair<int64_t, int64_t>> lane_at;
        std::vector<int64_t> in_tile;
        for (int64_t l = 0; l < lanes; ++l) {
          int64_t e = e0 + std::min(l, valid - 1);
          lane_at.emplace_back(e / cols - r0, e % cols - c0);
          in_tile.push_back(at(e / cols, e % cols));
        }
        k_.set_lanes(lanes);
        llvm::Value* v = k_.load_lanes(tile_buffer, ir.CreateMul(shift, k_.index(at(1, 0))), in_tile, valid);
        llvm::Value* row = ir.CreateAdd(ir.CreateAdd(row0, shift), k_.index(r0));
        epilogue_at({batch, row, ir.CreateAdd(col0, k_.index(c0))}, v, lane_at, valid);
      };
      // Lanes fall on the same (row, column) pattern every lcm(lanes, cols) results:
      // whole periods in a rolled loop, the rest unrolled.
      int64_t period = std::lcm(lanes, cols), periods = rows * cols / period;
      if (periods < 2) periods = 0;
      k_.rolled_loop(periods, [&](llvm::Value* g) {
        for (int64_t e0 = 0; e0 < period; e0 += lanes) results(e0, lanes, ir.CreateMul(g, k_.index(period / cols)));
      });
      for (int64_t e0 = periods * period; e0 < rows * cols; e0 += lanes)
        results(e0, std::min(lanes, rows * cols - e0), k_.index(0));
    } else {
      k_.rolled_loop(rows, [&](llvm::Value* r) {
        k_.loop(cols, [&](llvm::Value* c) {
          llvm::Value* v = ir.CreateLoad(f32, ir.CreateInBoundsGEP(f32, tile, k_.offset({r, c}, {at(1, 0), at(0, 1)})));
          epilogue_at({batch, ir.CreateAdd(row0, r), ir.CreateAdd(col0, c)}, v);
        });
      });
    }
  }

  // f32: our tiled GEMM (codegen/Gemm.cpp), its tasks in a function of their own that the
  // kernel runs itself or splits over the pool's threads; the epilogue runs on each finished
  // tile. Other dtypes: the scalar loops below.
  void matmul() {
    if (g_[kernel_.members[0]].type.dtype != DType::F32) return matmul_scalar();
    auto [batches, m, n, kk] = matmul_shape();
    GemmPlan plan = plan_gemm(batches, m, n, kk, kernel_.a_transposed, kernel_.b_transposed, host_vector_lanes());
    scratch_bytes_ = plan.scratch_bytes();
    start_reductions();
    bool parallel = parallel_safe(plan) && plan.tasks() > 1 && kernel_.flops >= kParallelFlops;
    // The shared copies first (on the pool too, so that a second thread is not idle for them),
    // then the tasks: the pool's run returns only when all its tasks have. Copies cannot fail.
    if (plan.pack_units() > 0) {
      llvm::Function* pack = ParallelTasks(k_, places_).task_function(".pack.tasks", [&](KernelBuilder& tk, llvm::Value* begin, llvm::Value* end) {
        llvm::Function* f = tk.fn;
        emit_gemm_pack(tk, plan, f->getArg(arg_of_.at(kernel_.a)), f->getArg(arg_of_.at(kernel_.b)), f->getArg(places_), begin, end);
      }).first;
      ParallelTasks(k_, places_).run(pack, plan.pack_units(), parallel && plan.pack_units() > 1);
    }

    split_tasks(".tasks", plan.tasks(), parallel, /*scan_unnoted=*/true, [&](KernelBody& inner, llvm::Value* begin, llvm::Value* end) {
      KernelBuilder& tk = inner.k_;
      // Tile rows of whole vectors are the epilogue's vectors. Other tiles are taken `lanes` results
      // at a time in row-major order (a masked store at the end of one row, then loads of the next
      // row that overlap its 64 bytes, would wait for the store to retire: measured 20% slower on the
      // seed's 10 columns than LLVM's gathers down the columns); then reductions, whose lanes could
      // meet in one element, leave the epilogue to scalars.
      bool vector = inner.vector_epilogue();
      bool flat_vectors = vector && inner.no_reductions();
      llvm::Function* f = tk.fn;
      emit_gemm_tasks(tk, plan, f->getArg(arg_of_.at(kernel_.a)), f->getArg(arg_of_.at(kernel_.b)), f->getArg(places_), begin, end,
                      [&](llvm::Value* batch, llvm::Value* row0, int64_t rows, llvm::Value* col0, int64_t cols, llvm::Value* tile) {
                        inner.tile_epilogue(plan, vector, flat_vectors, batch, row0, rows, col0, cols, tile);
                      });
    });
    finish_reductions();
  }

  using TaskBody = std::function<void(KernelBody& task, llvm::Value* begin, llvm::Value* end)>;
  // Tasks [0, n) of this kernel (codegen/ParallelTasks.h), on the pool when `parallel`: each
  // task function has a KernelBody of its own (its own hoisted scalars and finiteness flags,
  // checked at its end; see check_finite for `scan_unnoted`).
  void split_tasks(const char* suffix, int64_t n, bool parallel, bool scan_unnoted, const TaskBody& body) {
    ParallelTasks(k_, places_).split(suffix, n, parallel, [&](KernelBuilder& tk, llvm::Value* begin, llvm::Value* end) {
      KernelBody inner(tk, g_, kernel_, arg_of_, places_, checked_);
      inner.hoist_scalars();
      body(inner, begin, end);
      inner.check_finite(scan_unnoted);
      for (auto& [v, flag] : inner.finite_flags_) noted_elsewhere_.insert(v);
      nonfinite_codes_.insert(nonfinite_codes_.end(), inner.nonfinite_codes_.begin(), inner.nonfinite_codes_.end());
    });
  }

  // Tasks of `per_task` units each over `units` units: the units [begin·per_task, min(end·per_task, units))
  // of tasks [begin, end).
  static int64_t tasks_of(int64_t units, int64_t per_task) { return (units + per_task - 1) / per_task; }
  std::pair<llvm::Value*, llvm::Value*> task_units(llvm::Value* begin, llvm::Value* end, int64_t units, int64_t per_task) {
    auto& ir = k_.b;
    llvm::Value* last = ir.CreateMul(end, k_.index(per_task));
    return {ir.CreateMul(begin, k_.index(per_task)), ir.CreateSelect(ir.CreateICmpULT(last, k_.index(units)), last, k_.index(units))};
  }

  // Tasks split over columns (and batches) only: every reduction in the epilogue must keep
  // them, so that no two tasks add into one element. (A swapped plan's tasks split C's rows.)
  bool parallel_safe(const GemmPlan& plan) const {
    size_t rank = kernel_.domain.size();
    for (ValueId m : kernel_.members) {
      if (!is_reduction(m)) continue;
      if (plan.swapped) return false;
      if (g_[g_[m].args[0]].type.shape != kernel_.domain) return false;
      std::vector<int64_t> axes = g_[m].attrs.get("axes").as_ints();
      if (axes != std::vector<int64_t>{static_cast<int64_t>(rank - 2)}) return false;
    }
    return true;
  }

  // out[b, i, :] row by row: the products summed in p order (as the interpreter), then the
  // epilogue members at each element of the row.
  void matmul_scalar() {
    bool batched = kernel_.domain.size() == 3;
    auto [batches, m, n, kk] = matmul_shape();
    const Buffer &a = buffer(kernel_.a), &b = buffer(kernel_.b);
    DType dt = g_[kernel_.members[0]].type.dtype;
    if (dt == DType::I32) fail(g_[kernel_.members[0]].loc, "codegen: matmul on i32 tensors is not supported by the JIT yet");
    llvm::Type* t = k_.elem(dt);
    llvm::Value* acc;
    {
      llvm::BasicBlock& entry = k_.fn->getEntryBlock();
      llvm::IRBuilder<> at_entry(&entry, entry.begin());
      acc = at_entry.CreateAlloca(llvm::ArrayType::get(t, static_cast<uint64_t>(n)));
    }
    Buffer row{TensorType{dt, {n}}, acc, nullptr};
    start_reductions();
    auto& ir = k_.b;
    k_.loops({batches, m}, [&](const Values& bi) {
      llvm::Value *bb = bi[0], *i = bi[1];
      auto a_at = [&](llvm::Value* p) {
        llvm::Value* inner = kernel_.a_transposed ? k_.offset({p, i}, {m, 1}) : k_.offset({i, p}, {kk, 1});
        return ir.CreateAdd(ir.CreateMul(bb, k_.index(m * kk)), inner);
      };
      llvm::Value* b_base = ir.CreateMul(bb, k_.index(kk * n));
      if (!kernel_.b_transposed) {
        k_.loop(n, [&](llvm::Value* j) { k_.store(row, j, k_.real(dt, 0)); });
        k_.loop(kk, [&](llvm::Value* p) {
          llvm::Value* av = k_.load(a, a_at(p));
          llvm::Value* b_row = ir.CreateAdd(b_base, ir.CreateMul(p, k_.index(n)));
          k_.loop(n, [&](llvm::Value* j) {
            k_.store(row, j, ir.CreateFAdd(k_.load(row, j), ir.CreateFMul(av, k_.load(b, ir.CreateAdd(b_row, j)))));
          });
        });
      } else {
        k_.loop(n, [&](llvm::Value* j) {
          llvm::Value* sum = k_.local(k_.real(dt, 0));
          llvm::Value* b_row = ir.CreateAdd(b_base, ir.CreateMul(j, k_.index(kk)));
          k_.loop(kk, [&](llvm::Value* p) {
            k_.set(sum, ir.CreateFAdd(k_.get(sum), ir.CreateFMul(k_.load(a, a_at(p)), k_.load(b, ir.CreateAdd(b_row, p)))));
          });
          k_.store(row, j, k_.get(sum));
        });
      }
      k_.loop(n, [&](llvm::Value* j) {
        Values idx = batched ? Values{bb, i, j} : Values{i, j};
        vals_.clear();
        vals_[kernel_.members[0]] = k_.load(row, j);
        members_at(idx, nullptr, 0);  // stores the product after loading the inputs (see epilogue_at)
      });
    });
    finish_reductions();
  }

  // Each row of the matrix: its max and log-sum-exp once; the losses take their row's term;
  // then every element: softmax and log_softmax from the row's numbers, and the epilogue.
  void rowwise() {
    const Buffer& x = buffer(kernel_.rows);
    int64_t rows = kernel_.domain[0], cols = kernel_.domain[1];
    std::vector<ValueId> losses;
    for (ValueId m : kernel_.members)
      if (cg(m).row_loss) {
        losses.push_back(m);
        k_.store(buffer(m), k_.index(0), k_.real(g_[m].type.dtype, 0));
      }
    start_reductions();
    auto& ir = k_.b;
    bool vector = g_[kernel_.rows].type.dtype == DType::F32 && vector_epilogue();
    int64_t lanes = host_vector_lanes();
    lane_at_.clear();
    for (int64_t l = 0; l < lanes; ++l) lane_at_.emplace_back(0, l);
    k_.loop(rows, [&](llvm::Value* r) {
      llvm::Value* base = ir.CreateMul(r, k_.index(cols));
      auto [max, log_sum] = row_max_and_log_sum(k_, x, cols, base);
      for (ValueId m : losses) {
        const Node& n = g_[m];
        llvm::Value* id = checked_class_id(k_, n, k_.load(buffer(n.args[1]), r), cols);
        llvm::Value* log_p = ir.CreateFSub(ir.CreateFSub(k_.load(x, ir.CreateAdd(base, id)), max), log_sum);
        const Buffer& out = buffer(m);
        k_.store(out, k_.index(0), ir.CreateFSub(k_.load(out, k_.index(0)), log_p));
      }
      if (!vector) {
        k_.loop(cols, [&](llvm::Value* c) {
          vals_.clear();
          llvm::Value* xv = k_.load(x, ir.CreateAdd(base, c));
          for (ValueId m : kernel_.members)
            if (cg(m).row) vals_[m] = cg(m).row(k_, xv, max, log_sum);
          members_at({r, c}, nullptr, 0);
        });
        return;
      }
      // The row a vector at a time (the last one masked), every member on lanes.
      for (int64_t c = 0; c < cols; c += lanes) {
        valid_ = std::min(lanes, cols - c);
        k_.set_lanes(lanes);
        vals_.clear();
        llvm::Value* xv = k_.load_lanes(x, ir.CreateAdd(base, k_.index(c)), lane_offsets({cols, 1}), valid_);
        for (ValueId m : kernel_.members)
          if (cg(m).row) vals_[m] = cg(m).row(k_, xv, k_.splat(max), k_.splat(log_sum));
        members_at({r, k_.index(c)}, nullptr, 0);
        k_.set_lanes(0);
      }
    });
    for (ValueId m : losses) {
      const Buffer& out = buffer(m);
      k_.store(out, k_.index(0), ir.CreateFDiv(k_.load(out, k_.index(0)), k_.real(g_[m].type.dtype, static_cast<double>(rows))));
    }
    finish_reductions();
  }

  // The operands of an op that reads whole buffers (a constant as a Buffer that holds it).
  std::vector<Buffer> op_args(const Node& n) const {
    std::vector<Buffer> args;
    for (ValueId a : n.args)
      args.push_back(constant_root(g_, a) >= 0 ? Buffer{g_[a].type, nullptr, constant_of(k_.fn->getContext(), g_[constant_root(g_, a)])}
                                               : buffer(a));
    return args;
  }

  void op() {
    ValueId m = kernel_.members[0];
    const Node& n = g_[m];
    GRADC_ASSERT(cg(m).loops, "{} has no loop nest of its own", op_info(n.op).name);
    bool parallel = worth_tasks();
    if (parallel && n.op == OpKind::Conv2dWeightGrad) {
      // Units of whole weights (ConvEmitters.h), one task each.
      require_float_image_op(n);
      int64_t units = conv2d_weight_grad_units(n.type.shape);
      if (units > 1)
        return split_tasks(".tasks", units, true, /*scan_unnoted=*/false, [&](KernelBody& task, llvm::Value* begin, llvm::Value* end) {
          vector_conv2d_weight_grad(task.k_, n, task.op_args(n), task.buffer(m), {begin, end});
        });
    }
    if (parallel && image_op(n.op) && n.type.shape[0] > 1)
      return split_tasks(".tasks", n.type.shape[0], true, /*scan_unnoted=*/false, [&](KernelBody& task, llvm::Value* begin, llvm::Value* end) {
        task.each_image(begin, end, [&](const std::vector<Buffer>& args, const Buffer& out, llvm::Value*) { cg(m).loops(task.k_, n, args, out); });
      });
    cg(m).loops(k_, n, op_args(n), buffer(m));
  }

  // Whether a kernel that splits is worth the threads' wake-up (a few µs).
  bool worth_tasks() const { return kernel_.flops >= kParallelFlops || kernel_.bytes >= kParallelBytes; }

  // Ops on NCHW images whose every image's result is computed from that image alone (and the
  // weights): their tasks are images.
  static bool image_op(OpKind op) {
    switch (op) {
      case OpKind::Conv2d:
      case OpKind::Conv2dInputGrad:
      case OpKind::MaxPool2d:
      case OpKind::AvgPool2d:
      case OpKind::MaxPool2dGrad:
      case OpKind::AvgPool2dGrad: return true;
      default: return false;
    }
  }

  // OpEmitters.cpp's check before it calls ConvEmitters.cpp's weight gradient, which this calls itself.
  void require_float_image_op(const Node& n) const {
    for (ValueId a : n.args)
      if (g_[a].type.dtype == DType::I32)
        fail(n.loc, "codegen: {} on i32 tensors is not supported by the JIT yet (the interpreter runs it)", op_info(n.op).name);
  }

  // For each image i in [first, last) of an image op (the kernel's head): `body` with its
  // operands and result as buffers of that image alone (the weights of conv2d and its input
  // gradient whole), and i.
  void each_image(llvm::Value* first, llvm::Value* last,
                  const std::function<void(const std::vector<Buffer>& args, const Buffer& out, llvm::Value* image)>& body) {
    ValueId m = kernel_.members[0];
    const Node& n = g_[m];
    auto& ir = k_.b;
    auto one_image = [&](Buffer b, llvm::Value* i) {
      int64_t per_image = b.numel() / b.type.shape[0];
      b.type.shape[0] = 1;
      if (b.ptr) b.ptr = ir.CreateInBoundsGEP(k_.elem(b.type.dtype), b.ptr, ir.CreateMul(i, k_.index(per_image)));
      return b;
    };
    bool weights = n.op == OpKind::Conv2d || n.op == OpKind::Conv2dInputGrad;  // args[1]
    Buffer out = contains(kernel_.outputs, m) ? buffer(m) : Buffer{n.type, nullptr, nullptr};
    std::vector<Buffer> whole = op_args(n);
    k_.rolled_loop(first, last, [&](llvm::Value* i) {
      std::vector<Buffer> args;
      for (size_t a = 0; a < whole.size(); ++a) args.push_back(weights && a == 1 ? whole[a] : one_image(whole[a], i));
      body(args, one_image(out, i), i);
    });
  }

  // The vector convolution (codegen/ConvEmitters.cpp) with the other members as the epilogue of
  // each result; the raw conv is stored only if it is an output of the kernel. Without an
  // epilogue it is the conv2d op's own loop nest.
  void conv() {
    if (kernel_.members.size() == 1) return op();
    ValueId m = kernel_.members[0];
    const Node& n = g_[m];
    if (n.type.dtype == DType::I32 || g_[n.args[0]].type.dtype == DType::I32 || g_[n.args[1]].type.dtype == DType::I32)
      fail(n.loc, "codegen: conv2d on i32 tensors is not supported by the JIT yet (the interpreter runs it)");
    // Images on tasks, each image's results through the epilogue at their place in the batch,
    // unless the epilogue sums over images.
    if (worth_tasks() && no_reductions() && n.type.shape[0] > 1)
      return split_tasks(".tasks", n.type.shape[0], true, /*scan_unnoted=*/false, [&](KernelBody& task, llvm::Value* begin, llvm::Value* end) {
        task.each_image(begin, end, [&](const std::vector<Buffer>& args, const Buffer& out, llvm::Value* image) {
          vector_conv2d(task.k_, n, args, out, task.conv_epilogue(image));
        });
      });
    Buffer out = contains(kernel_.outputs, m) ? buffer(m) : Buffer{n.type, nullptr, nullptr};
    start_reductions();
    vector_conv2d(k_, n, op_args(n), out, conv_epilogue(nullptr));
    finish_reductions();
  }

  // A Conv kernel's other members on its sums: on the registers of sums as they are when they
  // can take vectors, else on each sum. `image`: the sums are of that image alone (their index
  // 0 is its index in the batch).
  ConvEpilogue conv_epilogue(llvm::Value* image) {
    DType dt = g_[kernel_.members[0]].type.dtype;
    auto in_batch = [image](Values idx) {
      if (image) idx[0] = image;
      return idx;
    };
    ConvEpilogue epilogue;
    if (dt == DType::F32 && vector_epilogue()) {
      std::vector<std::pair<int64_t, int64_t>> along_row;  // lane l: column l of the register's row
      for (int64_t l = 0; l < conv_vector_lanes(dt); ++l) along_row.emplace_back(0, l);
      epilogue.lanes = [this, in_batch, along_row](const Values& idx, llvm::Value* sums, int64_t valid) {
        epilogue_at(in_batch(idx), sums, along_row, valid);
      };
    } else {
      epilogue.each = [this, in_batch](const Values& idx, llvm::Value* sum) { epilogue_at(in_batch(idx), sum); };
    }
    return epilogue;
  }

  // A kernel this large is worth the threads' wake-up (a few µs).
  static constexpr int64_t kParallelFlops = 1 << 21;
  // Or one that moves this many bytes (pooling, elementwise kernels: memory-bound, but a second
  // core brings bandwidth of its own).
  static constexpr int64_t kParallelBytes = 1 << 20;
  // A Loop kernel this large splits, into tasks of about this many elements.
  static constexpr int64_t kParallelElements = 1 << 16, kTaskElements = 1 << 14;

  KernelBuilder& k_;
  const Graph& g_;
  const Kernel& kernel_;
  const std::map<ValueId, unsigned>& arg_of_;
  unsigned places_;
  int64_t scratch_bytes_ = 0;
  int64_t valid_ = 0;  // vector mode: the lanes that are elements of the domain
  std::vector<std::pair<int64_t, int64_t>> lane_at_;
  std::map<ValueId, Buffer> buf_;
  std::map<ValueId, llvm::Value*> vals_;
  std::map<ValueId, llvm::Value*> loaded_;
  std::map<ValueId, llvm::Value*> hoisted_;  // see hoist_scalars
  const std::map<ValueId, std::string>& checked_;
  std::map<ValueId, std::vector<llvm::Value*>> finite_flags_;  // see note_finite
  std::set<ValueId> noted_elsewhere_;             // checked in the function of a GEMM's tasks
  std::vector<int32_t> nonfinite_codes_;
};

class FunctionEmitter {
 public:
  // The entry point goes into parts[0], its kernels into whichever of `parts` has least code.
  FunctionEmitter(std::vector<ModulePart*> parts, Program& p, const KernelProgram& kp, uint8_t use, std::string prefix,
                  bool check_finite)
      : m_(*parts.at(0)->module), parts_(std::move(parts)), p_(p), kp_(kp), g_(kp.graph), use_(use), prefix_(std::move(prefix)) {
    for (const Assign& a : g_.assigns)
      if (check_finite && g_[a.target].kind == NodeKind::Param && g_[a.value].type.dtype != DType::I32) checked_[a.value] = g_[a.target].name;
  }

  void emit(const char* symbol) {
    llvm::LLVMContext& ctx = m_.getContext();
    auto* ptr = llvm::PointerType::getUnqual(ctx);
    entry_ = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getInt32Ty(ctx), {ptr, ptr, ptr}, false),
                                    llvm::Function::ExternalLinkage, symbol, m_);
    entry_->getArg(0)->setName("slots");
    entry_->getArg(1)->setName("arena");
    entry_->getArg(2)->setName("pool");
    entry_->addParamAttr(1, llvm::Attribute::NoAlias);
    // The entry point only computes pointers and calls kernels: nothing for O3 to gain, while
    // LLVM's code generation for it grew faster than linearly (X86 Domain Reassignment took 10.8
    // of 14 s on a 10,000-op chain's 193 calls of 500 pointers each). optnone compiles it as -O0
    // (it requires noinline); the seed's step time is unchanged (34.4 µs median either way).
    entry_->addFnAttr(llvm::Attribute::OptimizeNone);
    entry_->addFnAttr(llvm::Attribute::NoInline);
    b_ = std::make_unique<llvm::IRBuilder<>>(llvm::BasicBlock::Create(ctx, "entry", entry_));
    fail_ = llvm::BasicBlock::Create(ctx, "fail", entry_);
    llvm::Value* caller_mode = enter_fp_mode(*b_);

    // Every param and state has a slot, used or not, so that checkpoints hold all the spec declares.
    for (const Node& n : g_.nodes)
      if (n.kind == NodeKind::Param || n.kind == NodeKind::State) leaf_slot(n);
    // Inputs the step does not read still have slots (unused), so a caller may feed every input.
    for (const Node& n : g_.nodes)
      if (n.kind == NodeKind::Input) add_slot(n.name, SlotKind::Input, n.type, {}, /*used=*/false);
    for (const Output& o : g_.outputs) {
      int32_t slot = add_slot(g_[o.value].name, SlotKind::Output, g_[o.value].type, {});
      if (use_ == kUsedByTrainStep && p_.loss_slot < 0) p_.loss_slot = slot;
      if (use_ == kUsedByPredict) p_.predict_outputs.push_back(slot);
    }
    for (size_t i = 0; i < kp_.kernels.size(); ++i) {
      emit_kernel(fmt::format("{}k{}.{}", prefix_, i, kp_.kernels[i].name), kp_.kernels[i]);
      if (use_ == kUsedByTrainStep && !g_.assigns.empty() && contains(kp_.kernels[i].outputs, g_.outputs[0].value))
        check_loss(g_.outputs[0].value);
    }
    for (const FinalCopy& c : kp_.copies) emit_copy(c);

    leave_fp_mode(*b_, caller_mode);
    b_->CreateRet(b_->getInt32(0));
    p_.arena_bytes = std::max(p_.arena_bytes, scratch_offset() + scratch_bytes_);
    if (failures_.empty()) {
      fail_->eraseFromParent();
      return;
    }
    // A kernel that failed: return its code before any assign has changed a param.
    b_->SetInsertPoint(fail_);
    llvm::PHINode* code = b_->CreatePHI(b_->getInt32Ty(), static_cast<unsigned>(failures_.size()));
    for (auto [block, status] : failures_) code->addIncoming(status, block);
    leave_fp_mode(*b_, caller_mode);
    b_->CreateRet(code);
  }

 private:
  int32_t add_slot(const std::string& name, SlotKind kind, const TensorType& type, InitSpec init, bool used = true) {
    uint8_t use = used ? use_ : 0;
    for (; slots_indexed_ < p_.slots.size(); ++slots_indexed_)  // slots the other entry point added
      slot_index_.emplace(std::pair(p_.slots[slots_indexed_].name, p_.slots[slots_indexed_].kind), slots_indexed_);
    if (auto it = slot_index_.find(std::pair(name, kind)); it != slot_index_.end()) {
      Slot& s = p_.slots[it->second];
      GRADC_ASSERT(s.type == type, "slot '{}' is {} in one entry point and {} in the other", name, s.type, type);
      s.uses |= use;
      return static_cast<int32_t>(it->second);
    }
    p_.slots.push_back({name, kind, type, std::move(init), use});
    slot_index_.emplace(std::pair(name, kind), slots_indexed_++);
    return static_cast<int32_t>(p_.slots.size() - 1);
  }

  int32_t leaf_slot(const Node& n) {
    SlotKind kind = n.kind == NodeKind::Input ? SlotKind::Input : n.kind == NodeKind::Param ? SlotKind::Param : SlotKind::State;
    return add_slot(n.name, kind, n.type, kind == SlotKind::Input ? InitSpec{} : init_spec(n));
  }

  llvm::Value* slot_pointer(int32_t slot) {
    if (auto it = slot_ptrs_.find(slot); it != slot_ptrs_.end()) return it->second;
    // Loaded once, in the entry block, so that every use sees the same pointer.
    llvm::IRBuilder<> at_entry(&entry_->getEntryBlock(), entry_->getEntryBlock().begin());
    llvm::Value* at = at_entry.CreateConstInBoundsGEP1_64(at_entry.getPtrTy(), entry_->getArg(0), static_cast<uint64_t>(slot));
    llvm::Value* loaded = at_entry.CreateLoad(at_entry.getPtrTy(), at, p_.slots[static_cast<size_t>(slot)].name);
    slot_instructions_ += llvm::isa<llvm::Instruction>(at) + llvm::isa<llvm::Instruction>(loaded);  // see entry_size
    return slot_ptrs_[slot] = loaded;
  }

  llvm::Value* pointer(const Location& l) {
    switch (l.kind) {
      case Location::Arena:
        return b_->CreateConstInBoundsGEP1_64(b_->getInt8Ty(), entry_->getArg(1), static_cast<uint64_t>(l.offset));
      case Location::Leaf:
      case Location::Assigned: return slot_pointer(leaf_slot(g_[l.node]));
      case Location::Output: return slot_pointer(add_slot(g_[l.node].name, SlotKind::Output, g_[l.node].type, {}));
      case Location::None: break;
    }
    GRADC_ASSERT(false, "a value without a place in memory");
    return nullptr;
  }

  // Scratch (packed GEMM operands) lives past the planned buffers; a kernel uses it only while
  // it runs, so all share it.
  int64_t scratch_offset() const { return (kp_.arena_bytes + 63) / 64 * 64; }

  // `i32 @name(ptr noalias ..., ptr noalias scratch, ptr pool)`: one argument per distinct place
  // the kernel reads or writes (an update in place reads and writes one), so no two arguments
  // share memory.
  void emit_kernel(const std::string& name, const Kernel& kernel) {
    std::vector<Location> places;
    std::map<ValueId, unsigned> arg_of;
    auto add = [&](ValueId v) {
      Location l = kp_.locations[static_cast<size_t>(v)];
      if (l.kind == Location::Assigned) l.kind = Location::Leaf;  // one slot: a param read and updated here
      auto it = std::find(places.begin(), places.end(), l);
      arg_of[v] = static_cast<unsigned>(it - places.begin());
      if (it == places.end()) places.push_back(l);
    };
    for (ValueId v : kernel.inputs) add(v);
    for (ValueId v : kernel.outputs) add(v);
    // The kernel goes to the part with the least code so far (its own context): the parts then
    // compile on their threads in about the same time. The entry point calls it by name.
    llvm::Module& home = lightest_part();
    llvm::LLVMContext& ctx = m_.getContext();
    auto kernel_type = [&](llvm::LLVMContext& c) {
      std::vector<llvm::Type*> params(places.size() + 2, llvm::PointerType::getUnqual(c));
      return llvm::FunctionType::get(llvm::Type::getInt32Ty(c), params, false);
    };
    bool here = &home == &m_;
    auto* fn = llvm::Function::Create(kernel_type(home.getContext()), here ? llvm::Function::InternalLinkage : llvm::Function::ExternalLinkage,
                                      name, home);
    for (unsigned i = 0; i <= places.size(); ++i) fn->addParamAttr(i, llvm::Attribute::NoAlias);
    fn->addFnAttr(llvm::Attribute::NoUnwind);
    // Kept out of the entry point: a call per kernel costs nothing next to its loops, while O3's
    // passes grow faster than linearly with a function's size (inlined, the seed's O3 time doubles).
    fn->addFnAttr(llvm::Attribute::NoInline);
    KernelBuilder k(fn, [this](std::string message) {
      p_.errors.push_back(std::move(message));
      return static_cast<int32_t>(p_.errors.size());
    });
    KernelBody body(k, g_, kernel, arg_of, static_cast<unsigned>(places.size()), checked_);
    body.emit();
    p_.errors_after_update.resize(p_.errors.size(), false);
    for (int32_t code : body.nonfinite_codes()) p_.errors_after_update[static_cast<size_t>(code - 1)] = true;
    k.b.CreateRet(k.status());
    scratch_bytes_ = std::max(scratch_bytes_, body.scratch_bytes());
    if (llvm::Function* same = emitted_before(fn, kernel, k.can_fail())) {
      fn = same;
      here = fn->getParent() == &m_;
    }

    std::vector<llvm::Value*> call_args;
    for (const Location& l : places) call_args.push_back(pointer(l));
    call_args.push_back(b_->CreateConstInBoundsGEP1_64(b_->getInt8Ty(), entry_->getArg(1), static_cast<uint64_t>(scratch_offset())));
    call_args.push_back(entry_->getArg(2));
    llvm::FunctionCallee callee = here ? llvm::FunctionCallee(fn) : m_.getOrInsertFunction(fn->getName(), kernel_type(ctx));
    llvm::Value* status = b_->CreateCall(callee, call_args);
    if (!k.can_fail()) return;
    llvm::BasicBlock* ok = llvm::BasicBlock::Create(ctx, "ok", entry_);
    failures_.emplace_back(b_->GetInsertBlock(), status);
    b_->CreateCondBr(b_->CreateICmpNE(status, b_->getInt32(0)), fail_, ok);
    b_->SetInsertPoint(ok);
  }

  // A kernel whose code is the same as an earlier one's, names aside (a deep MLP's layers of one
  // width, their backward GEMMs), is not compiled twice: its function and helpers are erased and
  // the entry point calls the earlier one, so O3 runs once per distinct kernel. (Kernels that
  // can fail return codes of their own, so they never match; conv kernels keep their constants
  // in globals and are not compared.)
  llvm::Function* emitted_before(llvm::Function* fn, const Kernel& kernel, bool can_fail) {
    if (kernel.kind == KernelKind::Conv || can_fail || !dedupe_kernels()) return nullptr;
    Emitted e{fn, {}, {}};
    uint64_t instructions = 0, blocks = 0;
    for (auto it = fn->getIterator(); it != fn->getParent()->end(); ++it)
      if (it->getName().starts_with(fn->getName())) {
        e.made.push_back(&*it);
        instructions += it->getInstructionCount();
        blocks += it->size();
      }
    // Printed only when an earlier kernel has as many instructions and blocks.
    std::vector<Emitted>& alike = emitted_[{instructions, blocks}];
    if (!alike.empty()) {
      code_text(e);
      for (Emitted& earlier : alike)
        if (code_text(earlier) == e.text) {
          for (auto f = e.made.rbegin(); f != e.made.rend(); ++f) (*f)->eraseFromParent();
          return earlier.fn;
        }
    }
    alike.push_back(std::move(e));
    return nullptr;
  }

  // GRADC_KERNEL_DEDUPE=0 emits every kernel's code (scripts/compare_dumps then proves the
  // rest of emission unchanged).
  static bool dedupe_kernels() {
    const char* flag = std::getenv("GRADC_KERNEL_DEDUPE");
    return !flag || std::string_view(flag) != "0";
  }

  struct Emitted {
    llvm::Function* fn;
    std::vector<llvm::Function*> made;  // fn and the helpers emitted with it (its tasks)
    std::string text;                   // their code, fn's name set aside (once asked for)
  };

  const std::string& code_text(Emitted& e) {
    if (!e.text.empty()) return e.text;
    std::string printed;
    llvm::raw_string_ostream os(printed);
    for (llvm::Function* f : e.made) f->print(os);
    os.flush();
    std::string_view name = e.fn->getName(), rest = printed;
    e.text.reserve(printed.size());
    for (size_t at; (at = rest.find(name)) != std::string_view::npos; rest.remove_prefix(at + name.size()))
      e.text.append(rest.substr(0, at)).append("K");
    e.text.append(rest);
    for (size_t at = e.text.find("define internal "); at != std::string::npos; at = e.text.find("define internal ", at))
      e.text.replace(at, 16, "define ");  // a kernel in the entry point's part is internal
    return e.text;
  }

  // Stops the step before any param or state changes (the schedule puts the loss first) when
  // the loss is NaN or infinite.
  void check_loss(ValueId loss) {
    const Node& n = g_[loss];
    if (n.type.numel() != 1 || n.type.dtype == DType::I32) return;
    llvm::Value* v = b_->CreateLoad(n.type.dtype == DType::F32 ? b_->getFloatTy() : b_->getDoubleTy(),
                                    pointer(kp_.locations[static_cast<size_t>(loss)]));
    llvm::Value* finite = b_->CreateFCmpOLT(b_->CreateUnaryIntrinsic(llvm::Intrinsic::fabs, v),
                                            llvm::ConstantFP::getInfinity(v->getType()));
    p_.errors.push_back(fmt::format("the loss '{}' is not finite (NaN or infinite)", n.name));
    llvm::Value* code = b_->getInt32(static_cast<uint32_t>(p_.errors.size()));
    llvm::BasicBlock* ok = llvm::BasicBlock::Create(m_.getContext(), "loss_ok", entry_);
    failures_.emplace_back(b_->GetInsertBlock(), code);
    b_->CreateCondBr(finite, ok, fail_);
    b_->SetInsertPoint(ok);
  }

  void emit_copy(const FinalCopy& c) {
    const Node& n = g_[c.value];
    llvm::LLVMContext& ctx = m_.getContext();
    bool constant = c.from.kind == Location::None;
    GRADC_ASSERT(!constant || constant_root(g_, c.value) >= 0, "copy of a value without a place in memory");
    std::vector<llvm::Type*> params(constant ? 1 : 2, llvm::PointerType::getUnqual(ctx));
    auto* fn = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), params, false),
                                      llvm::Function::InternalLinkage, fmt::format("{}copy.{}", prefix_, n.name), m_);
    for (unsigned i = 0; i < params.size(); ++i) fn->addParamAttr(i, llvm::Attribute::NoAlias);
    KernelBuilder k(fn, [](std::string) { return 0; });
    Buffer to{n.type, fn->getArg(constant ? 0 : 1), nullptr};
    Buffer from = constant ? Buffer{n.type, nullptr, constant_of(ctx, g_[constant_root(g_, c.value)])}
                           : Buffer{n.type, fn->getArg(0), nullptr};
    k.loop(n.type.numel(), [&](llvm::Value* i) { k.store(to, i, k.load(from, i)); });
    k.b.CreateRetVoid();
    std::vector<llvm::Value*> args;
    if (!constant) args.push_back(pointer(c.from));
    args.push_back(pointer(c.to));
    b_->CreateCall(fn, args);
  }

  // Counting every module's instructions for each kernel made emission quadratic: a function is
  // counted once, when it is finished (each kernel's are, before the next is chosen), and the
  // entry point, which grows a call per kernel, is counted afresh (without the per-instruction
  // filter of getInstructionCount: gradc emits no debug records).
  uint64_t code_size(llvm::Module& m) {
    Counted& c = counted_[&m];
    auto next = c.last ? std::next(c.last->getIterator()) : m.begin();
    for (; next != m.end(); ++next) {
      c.last = &*next;
      if (c.last != entry_) c.instructions += c.last->getInstructionCount();
    }
    uint64_t n = c.instructions;
    if (entry_ && entry_->getParent() == &m) {
      n += entry_size();
#ifndef NDEBUG
      uint64_t all = 0;
      for (const llvm::BasicBlock& bb : *entry_) all += bb.size();
      GRADC_ASSERT(all == entry_size(), "the entry point has {} instructions, counted {}", all, entry_size());
#endif
    }
    return n;
  }

  // The entry point's instructions, counted as it grows: a block the builder has left is
  // finished (counted once), but for the entry block, which gains each slot's pointer
  // (slot_instructions_) when it is first used, and the fail block, empty until the end.
  uint64_t entry_size() {
    llvm::BasicBlock* current = b_->GetInsertBlock();
    llvm::BasicBlock* first = &entry_->getEntryBlock();
    auto next = entry_scanned_ ? std::next(entry_scanned_->getIterator()) : entry_->begin();
    for (; next != entry_->end() && &*next != current; ++next) {
      entry_scanned_ = &*next;
      if (entry_scanned_ == first) {
        first_size_ = first->size();
        first_slots_ = slot_instructions_;
      } else if (entry_scanned_ != fail_) {
        entry_finished_ += entry_scanned_->size();
      }
    }
    if (current == first) return first->size();
    return entry_finished_ + first_size_ + (slot_instructions_ - first_slots_) + current->size();
  }

  llvm::Module& lightest_part() {
    llvm::Module* best = &m_;
    uint64_t best_size = 0;
    for (ModulePart* part : parts_) {
      uint64_t size = code_size(*part->module);
      if (part->module.get() == &m_) best_size = size;
      else if (size < best_size) best = part->module.get(), best_size = size;
    }
    return *best;
  }

  llvm::Module& m_;
  std::vector<ModulePart*> parts_;  // the modules this entry point's code may go into (m_ first)
  Program& p_;
  const KernelProgram& kp_;
  const Graph& g_;
  uint8_t use_;
  std::string prefix_;
  llvm::Function* entry_ = nullptr;
  std::unique_ptr<llvm::IRBuilder<>> b_;
  llvm::BasicBlock* fail_ = nullptr;
  std::vector<std::pair<llvm::BasicBlock*, llvm::Value*>> failures_;
  std::map<int32_t, llvm::Value*> slot_ptrs_;
  int64_t scratch_bytes_ = 0;
  std::map<ValueId, std::string> checked_;  // new values of params: checked for NaN and infinities
  struct Counted {
    llvm::Function* last = nullptr;  // functions up to it are counted
    uint64_t instructions = 0;       // theirs, the entry point's aside
  };
  std::map<const llvm::Module*, Counted> counted_;  // see code_size
  std::map<std::pair<std::string, SlotKind>, size_t> slot_index_;  // p_.slots by name and kind,
  size_t slots_indexed_ = 0;                                        // up to this one
  std::map<std::pair<uint64_t, uint64_t>, std::vector<Emitted>> emitted_;  // by instructions and blocks: see emitted_before
  uint64_t slot_instructions_ = 0, entry_finished_ = 0, first_size_ = 0, first_slots_ = 0;  // see entry_size
  llvm::BasicBlock* entry_scanned_ = nullptr;
};

}  // namespace

EmittedModule emit_module(const KernelProgram* train, const KernelProgram& predict, bool check_finite) {
  EmittedModule out;
  const std::string& name = predict.graph.name;
  out.program.name = name;
  // Two parts for two compile threads: the step's entry point in one, its kernels in whichever
  // has less code. Predict has a third part of its own, which the JIT compiles after the step is
  // callable (a spec that trains nothing: predict's code in the first two).
  auto part = [&](bool later) {
    ModulePart p{std::make_unique<llvm::LLVMContext>(), nullptr, later};
    p.module = std::make_unique<llvm::Module>(fmt::format("{}.part{}", name.empty() ? "gradc" : name, out.parts.size()), *p.context);
    out.parts.push_back(std::move(p));
  };
  part(false);
  part(false);
  if (train) part(true);
  std::vector<ModulePart*> now{&out.parts[0], &out.parts[1]};
  if (train) FunctionEmitter(now, out.program, *train, kUsedByTrainStep, "step.", check_finite).emit(kTrainStepSymbol);
  FunctionEmitter(train ? std::vector<ModulePart*>{&out.parts[2]} : now, out.program, predict, kUsedByPredict, "predict.", check_finite).emit(kPredictSymbol);
  for (const ModulePart& p : out.parts) {
    std::string problems;
    llvm::raw_string_ostream os(problems);
    if (llvm::verifyModule(*p.module, &os)) fail({}, "codegen: the emitted LLVM module is invalid (a gradc bug):\n{}", problems);
  }
  return out;
}

}  // namespace gradc::codegen
