#include "codegen/KernelBuilder.h"

#include <llvm/IR/Module.h>

namespace gradc::codegen {

KernelBuilder::KernelBuilder(llvm::Function* f, std::function<int32_t(std::string)> error_code)
    : b(llvm::BasicBlock::Create(f->getContext(), "entry", f)), fn(f), error_code_(std::move(error_code)) {
  status_ = local(b.getInt32(0));
}

llvm::Type* KernelBuilder::elem(DType dt) {
  switch (dt) {
    case DType::F32: return b.getFloatTy();
    case DType::F64: return b.getDoubleTy();
    case DType::I32: return b.getInt32Ty();
  }
  return nullptr;
}

llvm::Value* KernelBuilder::real(DType dt, double v) {
  llvm::Type* t = elem(dt);
  return llvm::ConstantFP::get(lanes_ ? llvm::FixedVectorType::get(t, static_cast<unsigned>(lanes_)) : t, v);
}

llvm::Value* KernelBuilder::splat(llvm::Value* v) {
  return lanes_ && !v->getType()->isVectorTy() ? b.CreateVectorSplat(static_cast<unsigned>(lanes_), v) : v;
}

llvm::Constant* KernelBuilder::lane_mask(int64_t valid, int64_t lanes) {
  std::vector<llvm::Constant*> bits;
  for (int64_t l = 0; l < lanes; ++l) bits.push_back(b.getInt1(l < valid));
  return llvm::ConstantVector::get(bits);
}

namespace {
enum class Lanes { Consecutive, Same, Scattered };
Lanes lanes_kind(const std::vector<int64_t>& offsets, int64_t valid) {
  bool consecutive = true, same = true;
  for (int64_t l = 0; l < valid; ++l) {
    consecutive = consecutive && offsets[static_cast<size_t>(l)] == offsets[0] + l;
    same = same && offsets[static_cast<size_t>(l)] == offsets[0];
  }
  return valid > 1 && consecutive ? Lanes::Consecutive : same ? Lanes::Same : Lanes::Scattered;
}
}  // namespace

llvm::Value* KernelBuilder::lane_pointers(llvm::Type* t, llvm::Value* ptr, const std::vector<int64_t>& offsets) {
  std::vector<llvm::Constant*> c;
  for (int64_t l = 0; l < lanes_; ++l) c.push_back(b.getInt64(static_cast<uint64_t>(offsets[static_cast<size_t>(l)])));
  return b.CreateInBoundsGEP(t, ptr, llvm::ConstantVector::get(c));
}

llvm::Value* KernelBuilder::load_lanes(const Buffer& buf, llvm::Value* first, const std::vector<int64_t>& offsets, int64_t valid) {
  Lanes kind = lanes_kind(offsets, valid);
  if (buf.constant || kind == Lanes::Same) return splat(load(buf, b.CreateAdd(first, index(offsets[0]))));
  llvm::Type* t = elem(buf.type.dtype);
  auto* vt = llvm::FixedVectorType::get(t, static_cast<unsigned>(lanes_));
  llvm::Align align(t->getPrimitiveSizeInBits() / 8);
  llvm::Value* ptr = b.CreateInBoundsGEP(t, buf.ptr, b.CreateAdd(first, index(offsets[0])));
  llvm::Value* zeros = llvm::Constant::getNullValue(vt);
  if (kind == Lanes::Consecutive && valid == lanes_) return b.CreateAlignedLoad(vt, ptr, align);
  if (kind == Lanes::Consecutive) return b.CreateMaskedLoad(vt, ptr, align, lane_mask(valid), zeros);
  std::vector<int64_t> rel(offsets.size());
  for (size_t l = 0; l < offsets.size(); ++l) rel[l] = offsets[l] - offsets[0];
  return b.CreateMaskedGather(vt, lane_pointers(t, ptr, rel), align, lane_mask(valid), zeros);
}

void KernelBuilder::store_lanes(const Buffer& buf, llvm::Value* first, const std::vector<int64_t>& offsets, int64_t valid,
                                llvm::Value* v) {
  GRADC_ASSERT(buf.ptr, "a store into a constant");
  Lanes kind = lanes_kind(offsets, valid);
  llvm::Type* t = elem(buf.type.dtype);
  llvm::Align align(t->getPrimitiveSizeInBits() / 8);
  llvm::Value* ptr = b.CreateInBoundsGEP(t, buf.ptr, b.CreateAdd(first, index(offsets[0])));
  v = splat(v);
  if (kind == Lanes::Same) {
    GRADC_ASSERT(valid == 1, "several lanes stored to one element");
    b.CreateAlignedStore(b.CreateExtractElement(v, uint64_t{0}), ptr, align);
  } else if (kind == Lanes::Consecutive && valid == lanes_) {
    b.CreateAlignedStore(v, ptr, align);
  } else if (kind == Lanes::Consecutive) {
    b.CreateMaskedStore(v, ptr, align, lane_mask(valid));
  } else {
    std::vector<int64_t> rel(offsets.size());
    for (size_t l = 0; l < offsets.size(); ++l) rel[l] = offsets[l] - offsets[0];
    b.CreateMaskedScatter(v, lane_pointers(t, ptr, rel), align, lane_mask(valid));
  }
}

llvm::Value* KernelBuilder::load(const Buffer& buf, llvm::Value* flat) {
  if (buf.constant) return buf.constant;
  llvm::Type* t = elem(buf.type.dtype);
  return b.CreateLoad(t, b.CreateInBoundsGEP(t, buf.ptr, flat));
}

void KernelBuilder::store(const Buffer& buf, llvm::Value* flat, llvm::Value* v) {
  GRADC_ASSERT(buf.ptr, "a store into a constant");
  llvm::Type* t = elem(buf.type.dtype);
  b.CreateStore(v, b.CreateInBoundsGEP(t, buf.ptr, flat));
}

void KernelBuilder::loop(int64_t n, const std::function<void(llvm::Value*)>& body) {
  if (n <= 0) return;
  llvm::LLVMContext& ctx = fn->getContext();
  llvm::BasicBlock* before = b.GetInsertBlock();
  llvm::BasicBlock* header = llvm::BasicBlock::Create(ctx, "loop", fn);
  llvm::BasicBlock* after = llvm::BasicBlock::Create(ctx, "after", fn);
  b.CreateBr(header);
  b.SetInsertPoint(header);
  llvm::PHINode* i = b.CreatePHI(b.getInt64Ty(), 2, "i");
  i->addIncoming(index(0), before);
  body(i);
  // Bottom-tested: n > 0 is known, and the counter never wraps (nuw, nsw).
  llvm::Value* next = b.CreateAdd(i, index(1), "", true, true);
  i->addIncoming(next, b.GetInsertBlock());
  b.CreateCondBr(b.CreateICmpEQ(next, index(n)), after, header);
  b.SetInsertPoint(after);
}

void KernelBuilder::rolled_loop(int64_t n, const std::function<void(llvm::Value*)>& body) {
  if (n <= 0) return;
  loop(n, body);
  llvm::BasicBlock* latch = b.GetInsertBlock()->getSinglePredecessor();
  GRADC_ASSERT(latch, "a loop whose end has more than one predecessor");
  keep_rolled(latch->getTerminator());
}

void KernelBuilder::rolled_loop(llvm::Value* begin, llvm::Value* end, const std::function<void(llvm::Value*)>& body) {
  keep_rolled(range_loop(begin, end, body));
}

void KernelBuilder::keep_rolled(llvm::Instruction* latch_branch) {
  llvm::LLVMContext& ctx = fn->getContext();
  llvm::MDNode* no_unroll = llvm::MDNode::get(ctx, {llvm::MDString::get(ctx, "llvm.loop.unroll.disable")});
  auto self = llvm::MDNode::getTemporary(ctx, {});
  llvm::MDNode* id = llvm::MDNode::getDistinct(ctx, {self.get(), no_unroll});
  id->replaceOperandWith(0, id);
  latch_branch->setMetadata(llvm::LLVMContext::MD_loop, id);
}

void KernelBuilder::loop(llvm::Value* begin, llvm::Value* end, const std::function<void(llvm::Value*)>& body) {
  range_loop(begin, end, body);
}

llvm::Instruction* KernelBuilder::range_loop(llvm::Value* begin, llvm::Value* end, const std::function<void(llvm::Value*)>& body) {
  llvm::LLVMContext& ctx = fn->getContext();
  llvm::BasicBlock* before = b.GetInsertBlock();
  llvm::BasicBlock* header = llvm::BasicBlock::Create(ctx, "loop", fn);
  llvm::BasicBlock* inside = llvm::BasicBlock::Create(ctx, "body", fn);
  llvm::BasicBlock* after = llvm::BasicBlock::Create(ctx, "after", fn);
  b.CreateBr(header);
  b.SetInsertPoint(header);
  llvm::PHINode* i = b.CreatePHI(b.getInt64Ty(), 2, "i");
  i->addIncoming(begin, before);
  b.CreateCondBr(b.CreateICmpSLT(i, end), inside, after);
  b.SetInsertPoint(inside);
  body(i);
  i->addIncoming(b.CreateAdd(i, index(1), "", true, true), b.GetInsertBlock());
  llvm::Instruction* back = b.CreateBr(header);
  b.SetInsertPoint(after);
  return back;
}

void KernelBuilder::loops(const Shape& shape, const std::function<void(const std::vector<llvm::Value*>&)>& body) {
  std::vector<llvm::Value*> idx;
  std::function<void(size_t)> level = [&](size_t d) {
    if (d == shape.size()) return body(idx);
    loop(shape[d], [&](llvm::Value* i) {
      idx.push_back(i);
      level(d + 1);
      idx.pop_back();
    });
  };
  level(0);
}

void KernelBuilder::if_then(llvm::Value* cond, const std::function<void()>& body) { if_else(cond, body, [] {}); }

void KernelBuilder::if_else(llvm::Value* cond, const std::function<void()>& then, const std::function<void()>& otherwise) {
  llvm::LLVMContext& ctx = fn->getContext();
  llvm::BasicBlock* yes = llvm::BasicBlock::Create(ctx, "then", fn);
  llvm::BasicBlock* no = llvm::BasicBlock::Create(ctx, "else", fn);
  llvm::BasicBlock* done = llvm::BasicBlock::Create(ctx, "endif", fn);
  b.CreateCondBr(cond, yes, no);
  b.SetInsertPoint(yes);
  then();
  b.CreateBr(done);
  b.SetInsertPoint(no);
  otherwise();
  b.CreateBr(done);
  b.SetInsertPoint(done);
}

llvm::Value* KernelBuilder::offset(const std::vector<llvm::Value*>& idx, const std::vector<int64_t>& strides) {
  llvm::Value* sum = index(0);
  for (size_t d = 0; d < idx.size(); ++d)
    if (strides[d] != 0) sum = b.CreateAdd(sum, b.CreateMul(idx[d], index(strides[d]), "", true, true), "", true, true);
  return sum;
}

llvm::Value* KernelBuilder::local(llvm::Value* init) {
  llvm::BasicBlock& entry = fn->getEntryBlock();
  llvm::IRBuilder<> at_entry(&entry, entry.begin());
  llvm::AllocaInst* slot = at_entry.CreateAlloca(init->getType());
  local_types_[slot] = init->getType();
  b.CreateStore(init, slot);
  return slot;
}

llvm::Value* KernelBuilder::entry_local(llvm::Value* init) {
  llvm::BasicBlock& entry = fn->getEntryBlock();
  llvm::IRBuilder<> at_entry(&entry, entry.begin());
  llvm::AllocaInst* slot = at_entry.CreateAlloca(init->getType());
  at_entry.CreateStore(init, slot);
  local_types_[slot] = init->getType();
  return slot;
}

int32_t KernelBuilder::fail_if(llvm::Value* cond, std::string message) {
  int32_t code = error_code_(std::move(message));
  can_fail_ = true;
  llvm::Value* first = b.CreateAnd(cond, b.CreateICmpEQ(status(), b.getInt32(0)));  // the first failure wins
  set(status_, b.CreateSelect(first, b.getInt32(static_cast<uint32_t>(code)), status()));
  return code;
}

void KernelBuilder::propagate(llvm::Value* code) {
  can_fail_ = true;
  llvm::Value* take = b.CreateAnd(b.CreateICmpNE(code, b.getInt32(0)), b.CreateICmpEQ(status(), b.getInt32(0)));
  set(status_, b.CreateSelect(take, code, status()));
}

// a > c || isnan(a) ? a : c, as the interpreter's max_nan.
llvm::Value* KernelBuilder::max_nan(llvm::Value* a, llvm::Value* c) {
  return b.CreateSelect(b.CreateOr(b.CreateFCmpOGT(a, c), b.CreateFCmpUNO(a, a)), a, c);
}
llvm::Value* KernelBuilder::min_nan(llvm::Value* a, llvm::Value* c) {
  return b.CreateSelect(b.CreateOr(b.CreateFCmpOLT(a, c), b.CreateFCmpUNO(a, a)), a, c);
}

llvm::Value* KernelBuilder::exp(llvm::Value* x) {
  llvm::Type* t = x->getType();
  if (!t->getScalarType()->isFloatTy()) return unary(llvm::Intrinsic::exp, x);
  auto c = [&](double v) { return llvm::ConstantFP::get(t, v); };
  auto fma = [&](llvm::Value* a, llvm::Value* m, llvm::Value* add) {
    return b.CreateIntrinsic(llvm::Intrinsic::fmuladd, {t}, {a, m, add});
  };
  // x = n ln2 + r, |r| <= ln2 / 2, with ln2 in two parts so that r is exact.
  llvm::Value *lo = c(-87.33654475), *hi = c(88.3);  // (e^88.3 = 2.2e38; libm overflows past 88.72)
  llvm::Value* clamped = b.CreateMinNum(b.CreateMaxNum(x, lo), hi);
  llvm::Value* n = unary(llvm::Intrinsic::floor, fma(clamped, c(1.44269504088896341), c(0.5)));
  llvm::Value* r = fma(n, c(-0.693359375), clamped);
  r = fma(n, c(2.12194440e-4), r);
  llvm::Value* p = c(1.9875691500e-4);
  for (double coefficient : {1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1})
    p = fma(p, r, c(coefficient));
  llvm::Value* e_r = b.CreateFAdd(fma(p, b.CreateFMul(r, r), r), c(1.0));
  // 2^n from its exponent bits (n is in [-126, 127] after the clamp).
  llvm::Type* i32 = t->isVectorTy() ? static_cast<llvm::Type*>(llvm::VectorType::get(b.getInt32Ty(), llvm::cast<llvm::VectorType>(t)->getElementCount()))
                                    : b.getInt32Ty();
  llvm::Value* bits = b.CreateShl(b.CreateAdd(b.CreateFPToSI(n, i32), llvm::ConstantInt::get(i32, 127)), llvm::ConstantInt::get(i32, 23));
  llvm::Value* y = b.CreateFMul(e_r, b.CreateBitCast(bits, t));
  y = b.CreateSelect(b.CreateFCmpOLT(x, lo), c(0.0), y);
  y = b.CreateSelect(b.CreateFCmpOGT(x, hi), llvm::ConstantFP::getInfinity(t), y);
  return b.CreateSelect(b.CreateFCmpUNO(x, x), x, y);
}

// p(x²) by Horner's rule, coefficients from the highest power down.
static llvm::Value* horner(KernelBuilder& k, llvm::Value* x2, std::initializer_list<double> coefficients) {
  llvm::Type* t = x2->getType();
  llvm::Value* p = nullptr;
  for (double c : coefficients) {
    llvm::Value* cv = llvm::ConstantFP::get(t, c);
    p = p ? k.b.CreateIntrinsic(llvm::Intrinsic::fmuladd, {t}, {p, x2, cv}) : cv;
  }
  return p;
}

// tanh and erf in f32 without libm, so that they vectorize. tanh: below 0.625 in magnitude
// x + x³ P(x²), P a degree-5 least-squares fit of (tanh x - x) / x³ at Chebyshev points (0.6 ulp
// at most, and unbiased: a chain of 2,000 tanh stays within 1e-4 of libm's), beyond it
// 1 - 2 / (e^2|x| + 1) with its sign, whose absolute error stays near libm's where tanh saturates
// (its gradient 1 - y² needs that). erf: Eigen's rational function, as XLA emits it. Checked
// against libm's double over 240,000 points from 1e-8 to 10 and a dense grid (tests/test_session);
// f64 calls libm.
llvm::Value* KernelBuilder::tanh(llvm::Value* x) {
  llvm::Type* t = x->getType();
  if (!t->getScalarType()->isFloatTy()) return call_libm("tanhf", "tanh", x);
  auto c = [&](double v) { return llvm::ConstantFP::get(t, v); };
  llvm::Value* ax = unary(llvm::Intrinsic::fabs, x);
  llvm::Value* small = b.CreateMinNum(b.CreateMaxNum(x, c(-0.625)), c(0.625));
  llvm::Value* x2 = b.CreateFMul(small, small);
  llvm::Value* p = horner(*this, x2, {0.002153614327396418, -0.008189970836506853, 0.021706261313582595,
                                      -0.05394789002136997, 0.1333321614999477, -0.33333331108468534});
  llvm::Value* near = b.CreateIntrinsic(llvm::Intrinsic::fmuladd, {t}, {b.CreateFMul(small, x2), p, small});
  llvm::Value* far = b.CreateFSub(c(1.0), b.CreateFDiv(c(2.0), b.CreateFAdd(exp(b.CreateFMul(ax, c(2.0))), c(1.0))));
  far = b.CreateBinaryIntrinsic(llvm::Intrinsic::copysign, far, x);
  llvm::Value* y = b.CreateSelect(b.CreateFCmpOLT(ax, c(0.625)), near, far);
  return b.CreateSelect(b.CreateFCmpUNO(x, x), x, y);
}

llvm::Value* KernelBuilder::erf(llvm::Value* x) {
  llvm::Type* t = x->getType();
  if (!t->getScalarType()->isFloatTy()) return call_libm("erff", "erf", x);
  auto c = [&](double v) { return llvm::ConstantFP::get(t, v); };
  llvm::Value* clamped = b.CreateMinNum(b.CreateMaxNum(x, c(-4.0)), c(4.0));
  llvm::Value* x2 = b.CreateFMul(clamped, clamped);
  llvm::Value* p = b.CreateFMul(clamped, horner(*this, x2, {-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                                                            -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                                                            -1.60960333262415e-02}));
  llvm::Value* q = horner(*this, x2, {-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                                      -7.37332916720468e-03, -1.42647390514189e-02});
  return b.CreateSelect(b.CreateFCmpUNO(x, x), x, b.CreateFDiv(p, q));
}

llvm::Value* KernelBuilder::call_libm(const char* f32_name, const char* f64_name, llvm::Value* x) {
  auto* vt = llvm::dyn_cast<llvm::FixedVectorType>(x->getType());
  llvm::Type* t = vt ? vt->getElementType() : x->getType();
  llvm::FunctionCallee f =
      fn->getParent()->getOrInsertFunction(t->isFloatTy() ? f32_name : f64_name, llvm::FunctionType::get(t, {t}, false));
  if (!vt) return b.CreateCall(f, {x});
  llvm::Value* out = llvm::PoisonValue::get(vt);  // lane by lane: libm has no vector entry points
  for (unsigned l = 0; l < vt->getNumElements(); ++l) out = b.CreateInsertElement(out, b.CreateCall(f, {b.CreateExtractElement(x, l)}), l);
  return out;
}

std::vector<int64_t> strides_of(const Shape& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) s[d - 1] = s[d] * shape[d];
  return s;
}

std::vector<int64_t> broadcast_strides(const Shape& operand, const Shape& to) {
  std::vector<int64_t> own = strides_of(operand), s(to.size(), 0);
  size_t lead = to.size() - operand.size();
  for (size_t d = 0; d < operand.size(); ++d) s[lead + d] = operand[d] == 1 ? 0 : own[d];
  return s;
}

static const OpCodegen* const kCodegen[] = {
#define OP(Id, spelling, arity, traits, schema, infer, eval, grad, emit, ...) &emit,
#include "gradc/Ops.def"
};

const OpCodegen& op_codegen(OpKind op) { return *kCodegen[static_cast<size_t>(op)]; }

}  // namespace gradc::codegen
