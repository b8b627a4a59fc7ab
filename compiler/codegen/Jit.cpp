#include "codegen/Jit.h"

#include <mutex>

#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>

namespace gradc::codegen {

namespace {

std::string message(llvm::Error e) { return llvm::toString(std::move(e)); }

template <typename T>
T unwrap(llvm::Expected<T> v, std::string_view what) {
  if (!v) fail({}, "JIT: {}: {}", what, message(v.takeError()));
  return std::move(*v);
}

llvm::orc::JITTargetMachineBuilder host_machine() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
  llvm::orc::JITTargetMachineBuilder jtmb = unwrap(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host CPU");
  jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  return jtmb;
}

// LLVM's O3 pipeline with the host's cost model, so the loop vectorizer uses its widest vectors.
void optimize(llvm::Module& m, llvm::TargetMachine& tm) {
  m.setDataLayout(tm.createDataLayout());
  m.setTargetTriple(tm.getTargetTriple().str());
  for (llvm::Function& f : m) {
    if (f.isDeclaration()) continue;
    f.addFnAttr("target-cpu", tm.getTargetCPU());
    f.addFnAttr("target-features", tm.getTargetFeatureString());
  }
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(&tm);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(m, mam);
}

std::unique_ptr<llvm::TargetMachine> target_machine(llvm::orc::JITTargetMachineBuilder& jtmb) {
  return unwrap(jtmb.createTargetMachine(), "creating the target machine");
}

}  // namespace

Program jit(EmittedModule m) {
  llvm::orc::JITTargetMachineBuilder jtmb = host_machine();
  optimize(*m.module, *target_machine(jtmb));
  llvm::DataLayout layout = m.module->getDataLayout();
  std::unique_ptr<llvm::orc::LLJIT> jit =
      unwrap(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(std::move(jtmb)).create(), "creating the JIT");
  // The kernels call libm (expf, tanhf, ...) from this process.
  jit->getMainJITDylib().addGenerator(unwrap(
      llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(layout.getGlobalPrefix()), "finding libm"));
  if (llvm::Error e = jit->addIRModule(llvm::orc::ThreadSafeModule(std::move(m.module), std::move(m.context))))
    fail({}, "JIT: adding the module: {}", message(std::move(e)));

  Program p = std::move(m.program);
  auto lookup = [&](const char* symbol) {
    return unwrap(jit->lookup(symbol), fmt::format("looking up {}", symbol)).toPtr<EntryPoint>();
  };
  if (p.loss_slot >= 0) p.train_step = lookup(kTrainStepSymbol);
  p.predict = lookup(kPredictSymbol);
  p.code = std::shared_ptr<const llvm::orc::LLJIT>(std::move(jit));
  return p;
}

std::string print_module(const EmittedModule& m) {
  std::string text;
  llvm::raw_string_ostream os(text);
  m.module->print(os, nullptr);
  return text;
}

std::string optimized_ir(EmittedModule m) {
  llvm::orc::JITTargetMachineBuilder jtmb = host_machine();
  optimize(*m.module, *target_machine(jtmb));
  return print_module(m);
}

std::string host_assembly(EmittedModule m) {
  llvm::orc::JITTargetMachineBuilder jtmb = host_machine();
  std::unique_ptr<llvm::TargetMachine> tm = target_machine(jtmb);
  optimize(*m.module, *tm);
  llvm::SmallString<0> text;
  llvm::raw_svector_ostream os(text);
  llvm::legacy::PassManager pm;
  if (tm->addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::AssemblyFile))
    fail({}, "JIT: the host target cannot emit assembly");
  pm.run(*m.module);
  return std::string(text.str());
}

}  // namespace gradc::codegen
