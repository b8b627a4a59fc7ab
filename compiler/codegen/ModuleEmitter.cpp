// The step's and predict's entry points: slots, the calls of every kernel (each kernel's body
// is KernelBody's, codegen/KernelBody.h), failures, final copies, and the modules they go in.
#include "codegen/ModuleEmitter.h"

#include <cstdlib>
#include <map>
#include <numeric>
#include <set>
#include <unordered_map>

#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include "codegen/KernelBody.h"
#include "codegen/ParallelTasks.h"

namespace gradc::codegen {

namespace {

InitSpec init_spec(const Node& n) {
  if (!n.init) return {"zeros", {}};
  InitSpec s{n.init->kind, {}};
  for (const NamedAttr& a : n.init->args) s.args.emplace_back(a.name, a.value.as_number());
  return s;
}

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
