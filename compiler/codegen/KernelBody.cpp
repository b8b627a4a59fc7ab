// What every kind of kernel's body shares: members at one element, reductions, the epilogue of a
// MatMul or Conv kernel's results, finiteness checks, and tasks on the pool.
#include "codegen/KernelBody.h"

#include "codegen/ParallelTasks.h"

namespace gradc::codegen {

namespace {

// Strides that read an operand whose dims are the domain's leading dims (one_hot's ids).
std::vector<int64_t> leading_strides(const Shape& operand, const Shape& domain) {
  std::vector<int64_t> s = strides_of(operand);
  s.resize(domain.size(), 0);
  return s;
}

}  // namespace

// The Constant node behind `id` (through views: reshapes), or -1.
ValueId constant_root(const Graph& g, ValueId id) {
  id = g.viewed(id);
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

void KernelBody::emit() {
  switch (kernel_.kind) {
    case KernelKind::Loop: loop(); break;
    case KernelKind::MatMul: matmul(); break;
    case KernelKind::Conv: conv(); break;
    case KernelKind::RowWise: rowwise(); break;
    case KernelKind::Alone: alone(); break;
  }
  check_finite();
}

// The value of operand `a` of member `m` at the current element.
llvm::Value* KernelBody::operand(ValueId m, ValueId a, const Values& idx, llvm::Value* flat) {
  if (auto it = vals_.find(a); it != vals_.end()) return it->second;
  if (ValueId c = constant_root(g_, a); c >= 0) return constant_of(k_.fn->getContext(), g_[c]);
  if (auto it = loaded_.find(a); it != loaded_.end() && !indexed(m)) return it->second;
  const Buffer& b = buffer(a);
  if (b.numel() == 1) return k_.load(b, k_.index(0));
  if (flat) return k_.load(b, flat);
  const Shape& shape = g_[a].type.shape;
  std::vector<int64_t> s = indexed(m) ? leading_strides(shape, kernel_.domain) : broadcast_strides(shape, kernel_.domain);
  // (leading operands, one_hot's ids, are read once: the lanes run along the last dim only)
  return k_.lanes() && !indexed(m) ? k_.load_lanes(b, k_.offset(idx, s), lane_offsets(s), valid_)
                                               : k_.load(b, k_.offset(idx, s));
}

// Vector mode: lane l is the element lane_at_[l] = (rows, columns) away from the current one;
// its offset in a buffer read with strides s (the last two being the row's and the column's).
std::vector<int64_t> KernelBody::lane_offsets(const std::vector<int64_t>& s) const {
  int64_t row = s.size() >= 2 ? s[s.size() - 2] : 0, col = s.back();
  std::vector<int64_t> out;
  for (auto [dr, dc] : lane_at_) out.push_back(dr * row + dc * col);
  return out;
}

// Stores member or input-sized value v at the current element (or lanes).
void KernelBody::put(ValueId v, const Values& idx, llvm::Value* flat, llvm::Value* value) {
  if (checked_.count(v)) note_finite(v, value);
  if (!k_.lanes() || g_[v].type.numel() == 1) return k_.store(buffer(v), at(v, idx, flat), value);
  std::vector<int64_t> s = broadcast_strides(g_[v].type.shape, kernel_.domain);
  k_.store_lanes(buffer(v), k_.offset(idx, s), lane_offsets(s), valid_, value);
}

bool KernelBody::no_reductions() const {
  return std::none_of(kernel_.members.begin(), kernel_.members.end(), [&](ValueId m) { return is_reduction(m); });
}

// Can the epilogue run on vectors of consecutive columns? Only f32 values (the tile's), and no
// op that needs the element's index.
// (A RowWise kernel's own members, its row ops and losses, and one_hot's class ids are fine.)
bool KernelBody::vector_epilogue() const {
  for (ValueId m : kernel_.members) {
    if (kernel_.kind == KernelKind::RowWise && (cg(m).row || cg(m).row_loss)) continue;
    if (g_[m].type.dtype != DType::F32 || cg(m).row || cg(m).row_loss) return false;
    if (indexed(m)) continue;  // one_hot: f32 from i32 ids, read once per row
    for (ValueId a : g_[m].args)
      if (g_[a].type.dtype != DType::F32) return false;
  }
  return true;
}

llvm::Value* KernelBody::at(ValueId v, const Values& idx, llvm::Value* flat) {
  if (g_[v].type.numel() == 1) return k_.index(0);
  return flat ? flat : k_.offset(idx, broadcast_strides(g_[v].type.shape, kernel_.domain));
}

Shape KernelBody::kept_shape(ValueId r) const {
  Shape kept = g_[g_[r].args[0]].type.shape;
  for (int64_t axis : g_[r].attrs.get("axes").as_ints()) kept[static_cast<size_t>(axis)] = 1;
  return kept;
}

// A new param's value (or lanes of it) as it is stored: its flag records a NaN or an infinity.
// The flag is the largest magnitude seen, as the bits of |x| taken as an unsigned integer (NaNs
// and infinities are the largest: exponent all ones), kept per lane of the stores and reduced
// once after the loops: two integer ops per store. (A compare and a mask-or per store, or a
// reduction per store, cost the seed's step 6-9%.)
void KernelBody::note_finite(ValueId v, llvm::Value* value) {
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
llvm::Value* KernelBody::any_nonfinite(ValueId v) {
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
void KernelBody::check_finite(bool scan_unnoted) {
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

void KernelBody::start_reductions() {
  for (ValueId m : kernel_.members)
    if (is_reduction(m)) {
      const Buffer& out = buffer(m);
      llvm::Value* init = k_.real(g_[m].type.dtype, cg(m).init);
      k_.loop(out.numel(), [&](llvm::Value* i) { k_.store(out, i, init); });
    }
}

void KernelBody::finish_reductions() {
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
void KernelBody::hoist_scalars() {
  k_.set_lanes(0);
  for (ValueId m : kernel_.members) {
    const Node& n = g_[m];
    if (m == kernel_.members[0] && kernel_.kind != KernelKind::Loop) continue;  // the head
    if (n.type.numel() != 1 || n.type.dtype == DType::I32 || is_reduction(m) || cg(m).row || cg(m).row_loss || indexed(m))
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
void KernelBody::members_at(const Values& idx, llvm::Value* flat, size_t first) {
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
    if (!indexed(m)) {
      bool is_int = n.type.dtype == DType::I32;
      for (ValueId a : n.args) is_int = is_int || g_[a].type.dtype == DType::I32;
      if (is_int) fail(n.loc, "codegen: {} on i32 tensors is not supported by the JIT yet (the interpreter runs it)", op_info(n.op).name);
    }
    Values args;
    for (ValueId a : n.args) args.push_back(operand(m, a, idx, flat));
    // In vector mode a scalar (one element, from scalars) is computed once, as a scalar.
    bool one = lanes && n.type.numel() == 1;
    k_.set_lanes(one ? 0 : lanes);
    if (!indexed(m))
      for (llvm::Value*& a : args) a = k_.splat(a);
    Values index = idx;
    if (lanes && !one && indexed(m)) {  // the last index of each lane
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
void KernelBody::reduce(ValueId m, const Values& idx, llvm::Value* v) {
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

// The epilogue at one result: the head's value, then the other members. Or, with lanes, at
// that many results (a vector `value`): lane l at lane_at[l] (rows, columns) from idx, the
// first `valid` of them results. members_at stores the head (if it is an output) after it has
// loaded the inputs at this element, one of which the memory plan may have given the head's
// bytes.
void KernelBody::epilogue_at(Values idx, llvm::Value* value, const std::vector<std::pair<int64_t, int64_t>>& lane_at, int64_t valid) {
  if (kernel_.kind == KernelKind::MatMul && kernel_.domain.size() == 2) idx.erase(idx.begin());  // the GEMM's batch 0
  k_.set_lanes(static_cast<int64_t>(lane_at.size()));
  lane_at_ = lane_at;
  valid_ = valid;
  vals_.clear();
  vals_[kernel_.members[0]] = value;
  members_at(idx, nullptr, 0);
  k_.set_lanes(0);
}

// Tasks [0, n) of this kernel (codegen/ParallelTasks.h), on the pool when `parallel`: each
// task function has a KernelBody of its own (its own hoisted scalars and finiteness flags,
// checked at its end; see check_finite for `scan_unnoted`).
void KernelBody::split_tasks(const char* suffix, int64_t n, bool parallel, bool scan_unnoted, const TaskBody& body) {
  ParallelTasks(k_, places_).split(suffix, n, parallel, [&](KernelBuilder& tk, llvm::Value* begin, llvm::Value* end) {
    KernelBody inner(tk, g_, kernel_, arg_of_, places_, checked_);
    inner.hoist_scalars();
    body(inner, begin, end);
    inner.check_finite(scan_unnoted);
    for (auto& [v, flag] : inner.finite_flags_) noted_elsewhere_.insert(v);
    nonfinite_codes_.insert(nonfinite_codes_.end(), inner.nonfinite_codes_.begin(), inner.nonfinite_codes_.end());
  });
}

std::pair<llvm::Value*, llvm::Value*> KernelBody::task_units(llvm::Value* begin, llvm::Value* end, int64_t units, int64_t per_task) {
  auto& ir = k_.b;
  llvm::Value* last = ir.CreateMul(end, k_.index(per_task));
  return {ir.CreateMul(begin, k_.index(per_task)), ir.CreateSelect(ir.CreateICmpULT(last, k_.index(units)), last, k_.index(units))};
}

}  // namespace gradc::codegen
