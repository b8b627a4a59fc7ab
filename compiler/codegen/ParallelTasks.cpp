// Splits a kernel's work into tasks on the step's thread pool (see ParallelTasks.h).
#include "codegen/ParallelTasks.h"

#include <llvm/IR/IntrinsicsX86.h>

#include "gradc/StepAbi.h"

namespace gradc::codegen {

// Why flushed: an operation that meets a subnormal takes a microcode assist of a hundred cycles
// or more, and a model trained long on one batch is full of them (the seed's bench step lost 10%
// to them in one GEMM); XLA's and TensorFlow's CPU kernels flush too. The entry points and the
// task entries the pool's workers call set the mode and put the caller's back before they
// return, so every thread runs the same arithmetic.
llvm::Value* enter_fp_mode(llvm::IRBuilder<>& b) {
#if defined(__x86_64__) || defined(__i386__)
  llvm::Function* fn = b.GetInsertBlock()->getParent();
  llvm::IRBuilder<> at_entry(&fn->getEntryBlock(), fn->getEntryBlock().begin());
  llvm::Value* saved = at_entry.CreateAlloca(b.getInt32Ty(), nullptr, "mxcsr.caller");
  llvm::Value* ours = at_entry.CreateAlloca(b.getInt32Ty(), nullptr, "mxcsr.ours");
  b.CreateIntrinsic(llvm::Intrinsic::x86_sse_stmxcsr, {}, {saved});
  constexpr uint32_t kFlushToZero = 1u << 15, kDenormalsAreZero = 1u << 6;
  b.CreateStore(b.CreateOr(b.CreateLoad(b.getInt32Ty(), saved), b.getInt32(kFlushToZero | kDenormalsAreZero)), ours);
  b.CreateIntrinsic(llvm::Intrinsic::x86_sse_ldmxcsr, {}, {ours});
  return saved;
#else
  (void)b;
  return nullptr;
#endif
}

void leave_fp_mode(llvm::IRBuilder<>& b, llvm::Value* saved) {
#if defined(__x86_64__) || defined(__i386__)
  b.CreateIntrinsic(llvm::Intrinsic::x86_sse_ldmxcsr, {}, {saved});
#else
  (void)b, (void)saved;
#endif
}

std::pair<llvm::Function*, bool> ParallelTasks::task_function(const char* suffix, const Body& body) {
  llvm::LLVMContext& ctx = k_.fn->getContext();
  auto* ptr = llvm::PointerType::getUnqual(ctx);
  auto* i64 = llvm::Type::getInt64Ty(ctx);
  std::vector<llvm::Type*> params(places_ + 1, ptr);
  params.push_back(i64);
  params.push_back(i64);
  auto* f = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getInt32Ty(ctx), params, false),
                                   llvm::Function::InternalLinkage, k_.fn->getName() + suffix, *k_.fn->getParent());
  for (unsigned i = 0; i <= places_; ++i) f->addParamAttr(i, llvm::Attribute::NoAlias);
  f->addFnAttr(llvm::Attribute::NoUnwind);
  f->addFnAttr(llvm::Attribute::NoInline);  // see FunctionEmitter::emit_kernel
  KernelBuilder tk(f, k_.error_codes());
  body(tk, f->getArg(places_ + 1), f->getArg(places_ + 2));
  tk.b.CreateRet(tk.status());
  return {f, tk.can_fail()};
}

llvm::Value* ParallelTasks::run(llvm::Function* tasks, int64_t n, bool parallel) {
  auto& ir = k_.b;
  llvm::LLVMContext& ctx = k_.fn->getContext();
  auto* ptr = llvm::PointerType::getUnqual(ctx);
  auto* i64 = llvm::Type::getInt64Ty(ctx);
  auto* i32 = llvm::Type::getInt32Ty(ctx);
  std::vector<llvm::Value*> args;
  for (unsigned i = 0; i <= places_; ++i) args.push_back(k_.fn->getArg(i));
  auto all_tasks_here = [&] {
    std::vector<llvm::Value*> all = args;
    all.push_back(k_.index(0));
    all.push_back(k_.index(n));
    return ir.CreateCall(tasks, all);
  };
  if (!parallel) return all_tasks_here();
  // ctx: the pointers the tasks take; a task function unpacks them for the pool's threads.
  llvm::Value* ctx_array = k_.local(llvm::ConstantAggregateZero::get(llvm::ArrayType::get(ptr, places_ + 1)));
  for (unsigned i = 0; i <= places_; ++i) ir.CreateStore(args[i], ir.CreateConstInBoundsGEP1_64(ptr, ctx_array, i));
  auto* task_type = llvm::FunctionType::get(i32, {ptr, i64, i64}, false);
  auto* task = llvm::Function::Create(task_type, llvm::Function::InternalLinkage, tasks->getName().drop_back(1), *k_.fn->getParent());
  llvm::IRBuilder<> tb(llvm::BasicBlock::Create(ctx, "entry", task));
  std::vector<llvm::Value*> unpacked;
  for (unsigned i = 0; i <= places_; ++i) unpacked.push_back(tb.CreateLoad(ptr, tb.CreateConstInBoundsGEP1_64(ptr, task->getArg(0), i)));
  unpacked.push_back(task->getArg(1));
  unpacked.push_back(task->getArg(2));
  llvm::Value* caller_mode = enter_fp_mode(tb);
  llvm::Value* status = tb.CreateCall(tasks, unpacked);
  leave_fp_mode(tb, caller_mode);
  tb.CreateRet(status);
  return parallel_for(task, ctx_array, n, all_tasks_here);
}

void ParallelTasks::split(const char* suffix, int64_t n, bool parallel, const Body& body) {
  auto [tasks, can_fail] = task_function(suffix, body);
  llvm::Value* status = run(tasks, n, parallel);
  if (can_fail) k_.propagate(status);
}

llvm::Value* ParallelTasks::parallel_for(llvm::Function* task, llvm::Value* ctx, int64_t n,
                                         const std::function<llvm::Value*()>& serial) {
  auto& ir = k_.b;
  llvm::Value* pool = k_.fn->getArg(places_ + 1);
  llvm::Value* status = k_.local(ir.getInt32(0));
  k_.if_else(
      ir.CreateIsNull(pool), [&] { k_.set(status, serial()); },
      [&] {
        auto* p = ir.getPtrTy();
        auto* run_type = llvm::FunctionType::get(ir.getInt32Ty(), {p, p, p, ir.getInt64Ty()}, false);
        llvm::Value* run = ir.CreateLoad(p, ir.CreateConstInBoundsGEP1_64(p, pool, kParallelForRunSlot));
        llvm::Value* self = ir.CreateLoad(p, ir.CreateConstInBoundsGEP1_64(p, pool, kParallelForPoolSlot));
        k_.set(status, ir.CreateCall(run_type, run, {self, task, ctx, k_.index(n)}));
      });
  return k_.get(status);
}

}  // namespace gradc::codegen
