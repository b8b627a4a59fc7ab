#include "codegen/ModuleEmitter.h"

#include <map>

#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include "codegen/KernelBuilder.h"

namespace gradc::codegen {

namespace {

constexpr int64_t kAlign = 64;  // every arena buffer starts on a cache line

InitSpec init_spec(const Node& n) {
  if (!n.init) return {"zeros", {}};
  InitSpec s{n.init->kind, {}};
  for (const NamedAttr& a : n.init->args) s.args.emplace_back(a.name, a.value.as_number());
  return s;
}

// Where a node's value lives while an entry point runs.
struct Place {
  enum Kind { Arena, InSlot, Constant } kind = Arena;
  int64_t offset = 0;                 // Arena
  int32_t slot = -1;                  // InSlot
  llvm::Constant* constant = nullptr;  // Constant: a scalar
};

class FunctionEmitter {
 public:
  FunctionEmitter(llvm::Module& m, Program& p, const Graph& g, uint8_t use, std::string prefix)
      : m_(m), p_(p), g_(g), use_(use), prefix_(std::move(prefix)) {}

  void emit(const char* symbol) {
    llvm::LLVMContext& ctx = m_.getContext();
    auto* ptr = llvm::PointerType::getUnqual(ctx);
    auto* type = llvm::FunctionType::get(llvm::Type::getInt32Ty(ctx), {ptr, ptr}, false);
    entry_ = llvm::Function::Create(type, llvm::Function::ExternalLinkage, symbol, m_);
    entry_->getArg(0)->setName("slots");
    entry_->getArg(1)->setName("arena");
    entry_->addParamAttr(1, llvm::Attribute::NoAlias);
    b_ = std::make_unique<llvm::IRBuilder<>>(llvm::BasicBlock::Create(ctx, "entry", entry_));
    fail_ = llvm::BasicBlock::Create(ctx, "fail", entry_);

    std::vector<bool> live = live_nodes();
    places_.resize(g_.nodes.size());
    // Every param and state has a slot, used or not, so that checkpoints hold all the spec declares.
    for (ValueId id = 0; id < g_.size(); ++id)
      if (live[static_cast<size_t>(id)] || g_[id].kind == NodeKind::Param || g_[id].kind == NodeKind::State) place(id);
    for (ValueId id = 0; id < g_.size(); ++id)
      if (live[static_cast<size_t>(id)] && g_[id].kind == NodeKind::Op && g_[id].op != OpKind::Reshape) call_op(id);

    // Outputs show the values of this step (params before their update); then every assign
    // takes effect at once: a param or state assigned from another one is staged first.
    for (const Output& o : g_.outputs) {
      const Node& n = g_[o.value];
      int32_t slot = add_slot(n.name, SlotKind::Output, n.type, {});
      if (use_ == kUsedByTrainStep && p_.loss_slot < 0) p_.loss_slot = slot;
      if (use_ == kUsedByPredict) p_.predict_outputs.push_back(slot);
      copy_place(fmt::format("{}output.{}", prefix_, n.name), n.type, slot_place(slot), places_[static_cast<size_t>(o.value)]);
    }
    std::vector<Place> sources;
    for (const Assign& a : g_.assigns) {
      Place src = places_[static_cast<size_t>(a.value)];
      if (src.kind == Place::InSlot && p_.slots[static_cast<size_t>(src.slot)].kind != SlotKind::Input) {
        Place staged{Place::Arena, arena(g_[a.value].type), -1, nullptr};
        copy_place(fmt::format("{}stage.{}", prefix_, g_[a.target].name), g_[a.value].type, staged, src);
        src = staged;
      }
      sources.push_back(src);
    }
    for (size_t i = 0; i < g_.assigns.size(); ++i) {
      const Assign& a = g_.assigns[i];
      copy_place(fmt::format("{}assign.{}", prefix_, g_[a.target].name), g_[a.target].type,
                 places_[static_cast<size_t>(a.target)], sources[i]);
    }
    b_->CreateRet(b_->getInt32(0));
    if (failures_.empty()) {
      fail_->eraseFromParent();
      p_.arena_bytes = std::max(p_.arena_bytes, arena_end_);
      return;
    }
    // A kernel that failed: return its code before any assign has changed a param.
    b_->SetInsertPoint(fail_);
    llvm::PHINode* code = b_->CreatePHI(b_->getInt32Ty(), static_cast<unsigned>(failures_.size()));
    for (auto [block, status] : failures_) code->addIncoming(status, block);
    b_->CreateRet(code);
    p_.arena_bytes = std::max(p_.arena_bytes, arena_end_);
  }

 private:
  // Nodes that the outputs and assigns need.
  std::vector<bool> live_nodes() const {
    std::vector<bool> live(g_.nodes.size(), false);
    for (const Output& o : g_.outputs) live[static_cast<size_t>(o.value)] = true;
    for (const Assign& a : g_.assigns) live[static_cast<size_t>(a.value)] = live[static_cast<size_t>(a.target)] = true;
    for (ValueId id = g_.size(); id-- > 0;)
      if (live[static_cast<size_t>(id)])
        for (ValueId a : g_[id].args) live[static_cast<size_t>(a)] = true;
    return live;
  }

  int64_t arena(const TensorType& t) {
    int64_t at = arena_end_;
    int64_t bytes = t.numel() * dtype_bytes(t.dtype);
    arena_end_ += (bytes + kAlign - 1) / kAlign * kAlign;
    return at;
  }

  int32_t add_slot(const std::string& name, SlotKind kind, const TensorType& type, InitSpec init) {
    for (size_t i = 0; i < p_.slots.size(); ++i) {
      Slot& s = p_.slots[i];
      if (s.name == name && s.kind == kind) {
        GRADC_ASSERT(s.type == type, "slot '{}' is {} in one entry point and {} in the other", name, s.type, type);
        s.uses |= use_;
        return static_cast<int32_t>(i);
      }
    }
    p_.slots.push_back({name, kind, type, std::move(init), use_});
    return static_cast<int32_t>(p_.slots.size() - 1);
  }

  Place slot_place(int32_t slot) { return {Place::InSlot, 0, slot, nullptr}; }

  void place(ValueId id) {
    const Node& n = g_[id];
    Place& p = places_[static_cast<size_t>(id)];
    switch (n.kind) {
      case NodeKind::Input: p = slot_place(add_slot(n.name, SlotKind::Input, n.type, {})); break;
      case NodeKind::Param: p = slot_place(add_slot(n.name, SlotKind::Param, n.type, init_spec(n))); break;
      case NodeKind::State: p = slot_place(add_slot(n.name, SlotKind::State, n.type, init_spec(n))); break;
      case NodeKind::Constant: {
        llvm::LLVMContext& ctx = m_.getContext();
        p.kind = Place::Constant;
        p.constant = n.type.dtype == DType::I32
                         ? llvm::ConstantInt::get(llvm::Type::getInt32Ty(ctx), static_cast<uint64_t>(static_cast<int64_t>(n.constant)))
                     : n.type.dtype == DType::F32
                         ? llvm::ConstantFP::get(llvm::Type::getFloatTy(ctx), static_cast<double>(static_cast<float>(n.constant)))
                         : llvm::ConstantFP::get(llvm::Type::getDoubleTy(ctx), n.constant);
        break;
      }
      case NodeKind::Op:
        // A reshape reads its operand's elements where they are; everything else gets its own
        // arena buffer (the memory planner of the fusion issue shares them).
        if (n.op == OpKind::Reshape) p = places_[static_cast<size_t>(n.args[0])];
        else p = {Place::Arena, arena(n.type), -1, nullptr};
        break;
    }
  }

  llvm::Value* pointer(const Place& p) {
    if (p.kind == Place::Arena) return b_->CreateConstInBoundsGEP1_64(b_->getInt8Ty(), entry_->getArg(1), static_cast<uint64_t>(p.offset));
    auto it = slot_ptrs_.find(p.slot);
    if (it != slot_ptrs_.end()) return it->second;
    // Loaded once, in the entry block, so that every use sees the same pointer.
    llvm::IRBuilder<> at_entry(&entry_->getEntryBlock(), entry_->getEntryBlock().begin());
    llvm::Value* slot_ptr = at_entry.CreateConstInBoundsGEP1_64(at_entry.getPtrTy(), entry_->getArg(0), static_cast<uint64_t>(p.slot));
    llvm::Value* v = at_entry.CreateLoad(at_entry.getPtrTy(), slot_ptr, p_.slots[static_cast<size_t>(p.slot)].name);
    return slot_ptrs_[p.slot] = v;
  }

  // Emits `i32 @name(ptr noalias operands..., ptr noalias out)` with `body`, and its call.
  // Operands that are constants are folded into the body instead of passed.
  void kernel(const std::string& name, const std::vector<std::pair<TensorType, Place>>& operands,
              const TensorType& out_type, const Place& out_place,
              const std::function<void(KernelBuilder&, const std::vector<Buffer>&, const Buffer&)>& body) {
    llvm::LLVMContext& ctx = m_.getContext();
    std::vector<llvm::Type*> params;
    std::vector<llvm::Value*> call_args;
    for (const auto& [type, place] : operands)
      if (place.kind != Place::Constant) {
        params.push_back(llvm::PointerType::getUnqual(ctx));
        call_args.push_back(pointer(place));
      }
    params.push_back(llvm::PointerType::getUnqual(ctx));
    call_args.push_back(pointer(out_place));
    auto* fn = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getInt32Ty(ctx), params, false),
                                      llvm::Function::InternalLinkage, name, m_);
    // Operands and result never share memory: every op writes a buffer of its own.
    for (unsigned i = 0; i < params.size(); ++i) fn->addParamAttr(i, llvm::Attribute::NoAlias);
    fn->addFnAttr(llvm::Attribute::NoUnwind);

    KernelBuilder k(fn, [this](std::string message) {
      p_.errors.push_back(std::move(message));
      return static_cast<int32_t>(p_.errors.size());
    });
    std::vector<Buffer> args;
    unsigned next = 0;
    for (const auto& [type, place] : operands) {
      if (place.kind == Place::Constant) args.push_back({type, nullptr, place.constant});
      else args.push_back({type, fn->getArg(next++), nullptr});
    }
    body(k, args, {out_type, fn->getArg(next), nullptr});
    k.b.CreateRet(k.status());

    llvm::Value* status = b_->CreateCall(fn, call_args);
    if (!k.can_fail()) return;
    llvm::BasicBlock* ok = llvm::BasicBlock::Create(ctx, "ok", entry_);
    failures_.emplace_back(b_->GetInsertBlock(), status);
    b_->CreateCondBr(b_->CreateICmpNE(status, b_->getInt32(0)), fail_, ok);
    b_->SetInsertPoint(ok);
  }

  void call_op(ValueId id) {
    const Node& n = g_[id];
    std::vector<std::pair<TensorType, Place>> operands;
    for (ValueId a : n.args) operands.emplace_back(g_[a].type, places_[static_cast<size_t>(a)]);
    std::string label = n.name.empty() ? fmt::format("t{}", id) : n.name;
    kernel(fmt::format("{}{}.{}", prefix_, label, op_info(n.op).name), operands, n.type, places_[static_cast<size_t>(id)],
           [&](KernelBuilder& k, const std::vector<Buffer>& args, const Buffer& out) { op_emitter(n.op)(k, n, args, out); });
  }

  void copy_place(const std::string& name, const TensorType& type, const Place& dst, const Place& src) {
    kernel(name, {{type, src}}, type, dst, [](KernelBuilder& k, const std::vector<Buffer>& args, const Buffer& out) {
      k.loop(out.numel(), [&](llvm::Value* i) { k.store(out, i, k.load(args[0], i)); });
    });
  }

  llvm::Module& m_;
  Program& p_;
  const Graph& g_;
  uint8_t use_;
  std::string prefix_;
  llvm::Function* entry_ = nullptr;
  std::unique_ptr<llvm::IRBuilder<>> b_;
  llvm::BasicBlock* fail_ = nullptr;
  std::vector<std::pair<llvm::BasicBlock*, llvm::Value*>> failures_;
  std::vector<Place> places_;
  std::map<int32_t, llvm::Value*> slot_ptrs_;
  int64_t arena_end_ = 0;
};

}  // namespace

EmittedModule emit_module(const Graph* train, const Graph& predict) {
  EmittedModule out;
  out.context = std::make_unique<llvm::LLVMContext>();
  out.module = std::make_unique<llvm::Module>(predict.name.empty() ? "gradc" : predict.name, *out.context);
  out.program.name = predict.name;
  if (train) FunctionEmitter(*out.module, out.program, *train, kUsedByTrainStep, "step.").emit(kTrainStepSymbol);
  FunctionEmitter(*out.module, out.program, predict, kUsedByPredict, "predict.").emit(kPredictSymbol);
  std::string problems;
  llvm::raw_string_ostream os(problems);
  if (llvm::verifyModule(*out.module, &os)) fail({}, "codegen: the emitted LLVM module is invalid (a gradc bug):\n{}", problems);
  return out;
}

}  // namespace gradc::codegen
