#include "codegen/Jit.h"

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>

#include <unistd.h>

#include <llvm/ADT/StringExtras.h>
#include <llvm/Bitcode/BitcodeWriter.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/ExecutionEngine/Orc/CompileUtils.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/Endian.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/Path.h>
#include <llvm/Support/SHA256.h>
#include <llvm/Support/SmallVectorMemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>

namespace gradc::codegen {

namespace {

// The cache's format: bump it whenever what jit() makes of a module changes other than through
// the key's other parts (the pipeline below, the attributes optimize() adds, the trailer).
constexpr const char* kCacheFormat = "gradc object cache 3";  // 2: a bundle of the parts' objects; 3: predict a part of its own
constexpr llvm::CodeGenOptLevel kCodeGenLevel = llvm::CodeGenOptLevel::Aggressive;
constexpr char kMagic[8] = {'g', 'r', 'a', 'd', 'c', 'o', 'b', 'j'};
using Key = std::array<uint8_t, 32>;
constexpr size_t kTrailerBytes = sizeof(kMagic) + 8 + 8 + std::tuple_size_v<Key>;

std::string message(llvm::Error e) { return llvm::toString(std::move(e)); }

template <typename T>
T unwrap(llvm::Expected<T> v, std::string_view what) {
  if (!v) fail({}, "JIT: {}: {}", what, message(v.takeError()));
  return std::move(*v);
}

// The host CPU, its features and our code generation level, detected once per process.
const llvm::orc::JITTargetMachineBuilder& host_machine() {
  static const llvm::orc::JITTargetMachineBuilder host = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::orc::JITTargetMachineBuilder jtmb =
        unwrap(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host CPU");
    jtmb.setCodeGenOptLevel(kCodeGenLevel);
    return jtmb;
  }();
  return host;
}

std::unique_ptr<llvm::TargetMachine> target_machine() {
  llvm::orc::JITTargetMachineBuilder host = host_machine();
  return unwrap(host.createTargetMachine(), "creating the target machine");
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

// Instruction selection for the host: the optimized module as a relocatable object in memory.
std::unique_ptr<llvm::MemoryBuffer> compile_object(llvm::Module& m, llvm::TargetMachine& tm) {
  llvm::SmallVector<char, 0> object;
  llvm::raw_svector_ostream os(object);
  llvm::legacy::PassManager pm;
  if (tm.addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::ObjectFile))
    fail({}, "JIT: the host target cannot emit object files");
  pm.run(m);
  return std::make_unique<llvm::SmallVectorMemoryBuffer>(std::move(object), m.getModuleIdentifier(), false);
}

// Everything the object compiled from `m` depends on: the module as gradc emitted it (before O3)
// and how it is compiled, for which CPU, by which LLVM.
Key cache_key(const std::vector<ModulePart>& parts, const llvm::TargetMachine& tm) {
  llvm::SHA256 hash;
  auto field = [&](llvm::StringRef s) {
    hash.update(s);
    hash.update(llvm::StringRef("\0", 1));
  };
  field(kCacheFormat);
  field(LLVM_VERSION_STRING);
  field(tm.getTargetTriple().str());
  field(tm.getTargetCPU());
  field(tm.getTargetFeatureString());
  field(fmt::format("O3 codegen={} code-model={} reloc={}", static_cast<int>(kCodeGenLevel),
                    static_cast<int>(tm.getCodeModel()), static_cast<int>(tm.getRelocationModel())));
  // The modules' bitcode: deterministic, and several times quicker to write than their text.
  for (const ModulePart& part : parts) {
    llvm::SmallVector<char, 0> bitcode;
    llvm::BitcodeWriter writer(bitcode);
    writer.writeModule(*part.module);
    writer.writeSymtab();
    writer.writeStrtab();
    field(llvm::StringRef(bitcode.data(), bitcode.size()));
  }
  return hash.final();
}

// The parts' objects as the one blob a cache file holds: per object, its size (u64, little-endian),
// then its bytes.
std::string bundle(const std::vector<std::unique_ptr<llvm::MemoryBuffer>>& objects) {
  std::string out;
  for (const auto& o : objects) {
    char size[8];
    llvm::support::endian::write64le(size, o->getBufferSize());
    out.append(size, 8);
    out.append(o->getBufferStart(), o->getBufferSize());
  }
  return out;
}

// The objects of a blob, or none if it does not split into `count` of them exactly.
std::vector<std::unique_ptr<llvm::MemoryBuffer>> unbundle(llvm::StringRef blob, size_t count) {
  std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects;
  while (blob.size() >= 8 && objects.size() < count) {
    uint64_t size = llvm::support::endian::read64le(blob.data());
    blob = blob.drop_front(8);
    if (size > blob.size()) return {};
    objects.push_back(llvm::MemoryBuffer::getMemBufferCopy(blob.take_front(size), "cached object"));
    blob = blob.drop_front(size);
  }
  if (!blob.empty() || objects.size() != count) return {};
  return objects;
}

// FNV-1a, 64 bits: catches a cache file damaged after it was written.
uint64_t checksum(llvm::StringRef bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// One object in the cache directory: `<dir>/<key in hex>.o` (the layout is in Jit.h). Reading
// and writing it never fails; a file that is not what was written under its key is deleted.
class CachedObject {
 public:
  CachedObject(const std::string& dir, const Key& key) : dir_(dir), key_(key) {
    path_ = dir;
    llvm::sys::path::append(path_, llvm::toHex(key, /*LowerCase=*/true) + ".o");
  }

  // The object, or null when there is none (or it was damaged, and is now deleted).
  std::unique_ptr<llvm::MemoryBuffer> load() const {
    // Only a regular file is ours to read or delete: a FIFO would block the read.
    if (!ours()) return nullptr;
    auto file = llvm::MemoryBuffer::getFile(path_, /*IsText=*/false, /*RequiresNullTerminator=*/false);
    if (!file) return nullptr;
    llvm::StringRef bytes = (*file)->getBuffer();
    if (bytes.size() < kTrailerBytes) return drop();
    llvm::StringRef object = bytes.drop_back(kTrailerBytes);
    const char* trailer = object.end();
    if (std::memcmp(trailer, kMagic, sizeof(kMagic)) != 0 ||
        llvm::support::endian::read64le(trailer + 8) != object.size() ||
        llvm::support::endian::read64le(trailer + 16) != checksum(object) ||
        std::memcmp(trailer + 24, key_.data(), key_.size()) != 0)
      return drop();
    return llvm::MemoryBuffer::getMemBufferCopy(object, path_);
  }

  // Writes the object under a temporary name in the same directory, then renames it, so that
  // a reader sees the whole file or none.
  void store(llvm::StringRef object) const {
    if (llvm::sys::fs::create_directories(dir_)) return;
    if (llvm::sys::fs::exists(path_) && !ours()) return;  // never renamed over a FIFO, device or directory
    int fd = -1;
    llvm::SmallString<256> temp;
    if (llvm::sys::fs::createUniqueFile(path_ + ".gradc-tmp-%%%%%%%%", fd, temp)) return;
    char trailer[kTrailerBytes];
    std::memcpy(trailer, kMagic, sizeof(kMagic));
    llvm::support::endian::write64le(trailer + 8, object.size());
    llvm::support::endian::write64le(trailer + 16, checksum(object));
    std::memcpy(trailer + 24, key_.data(), key_.size());
    bool written;
    {
      llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
      os << object << llvm::StringRef(trailer, sizeof(trailer));
      os.close();
      written = !os.has_error();
      os.clear_error();  // a cache that cannot be written is no error
    }
    if (!written || llvm::sys::fs::rename(temp, path_)) llvm::sys::fs::remove(temp);
  }

  bool ours() const {
    llvm::sys::fs::file_status st;
    return !llvm::sys::fs::status(path_, st) && llvm::sys::fs::is_regular_file(st);
  }

  std::nullptr_t drop() const {
    llvm::sys::fs::remove(path_);
    return nullptr;
  }

 private:
  std::string dir_;
  Key key_;
  llvm::SmallString<256> path_;
};

// The symbols generated code calls but does not define, in the JIT's process-symbols dylib that
// the step links against: libm's (expf, tanhf, ...) from this process, and gradc's runtime
// functions. A runtime function is one more line in `runtime`, e.g.
//   runtime[jit.mangleAndIntern("gradc_parallel_for")] =
//       {llvm::orc::ExecutorAddr::fromPtr(&gradc_parallel_for), llvm::JITSymbolFlags::Exported};
llvm::Expected<llvm::orc::JITDylibSP> external_symbols(llvm::orc::LLJIT& jit) {
  llvm::orc::JITDylib& jd = jit.getExecutionSession().createBareJITDylib("<gradc runtime and process>");
  llvm::orc::SymbolMap runtime;
  if (!runtime.empty())
    if (llvm::Error e = jd.define(llvm::orc::absoluteSymbols(std::move(runtime)))) return e;
  auto process = llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(jit.getDataLayout().getGlobalPrefix());
  if (!process) return process.takeError();
  jd.addGenerator(std::move(*process));
  return llvm::orc::JITDylibSP(&jd);
}

// GRADC_PERF_MAP=1: every function the JIT links is listed in /tmp/perf-<pid>.map (the format
// `perf report` and `perf script` read), so a profile of a step names its kernels. The names are
// taken before JITLink prunes them (calls within a section need no relocation, so a called kernel
// looks unreferenced and loses its symbol, not its code) and written once addresses are known.
class PerfMap : public llvm::orc::ObjectLinkingLayer::Plugin {
 public:
  static bool wanted() {
    const char* v = std::getenv("GRADC_PERF_MAP");
    return v && *v && std::string_view(v) != "0";
  }
  void modifyPassConfig(llvm::orc::MaterializationResponsibility&, llvm::jitlink::LinkGraph&,
                        llvm::jitlink::PassConfiguration& config) override {
    auto functions = std::make_shared<std::vector<Function>>();
    config.PrePrunePasses.emplace_back(Collect{functions});
    config.PostFixupPasses.emplace_back(Write{functions});
  }
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility&) override { return llvm::Error::success(); }
  llvm::Error notifyRemovingResources(llvm::orc::JITDylib&, llvm::orc::ResourceKey) override { return llvm::Error::success(); }
  void notifyTransferringResources(llvm::orc::JITDylib&, llvm::orc::ResourceKey, llvm::orc::ResourceKey) override {}

 private:
  struct Function {
    llvm::jitlink::Block* block;
    uint64_t offset, size;
    std::string name;
  };
  struct Collect {
    std::shared_ptr<std::vector<Function>> functions;
    llvm::Error operator()(llvm::jitlink::LinkGraph& g) const {
      for (llvm::jitlink::Symbol* s : g.defined_symbols())
        if (s->isCallable() && s->hasName() && s->getSize() > 0)
          functions->push_back({&s->getBlock(), s->getOffset(), s->getSize(), s->getName().str()});
      return llvm::Error::success();
    }
  };
  struct Write {
    std::shared_ptr<std::vector<Function>> functions;
    llvm::Error operator()(llvm::jitlink::LinkGraph&) const {
      std::error_code error;
      llvm::raw_fd_ostream os(fmt::format("/tmp/perf-{}.map", ::getpid()), error, llvm::sys::fs::OF_Append);
      if (error) return llvm::Error::success();  // a profiling aid: no map, no harm
      for (const Function& f : *functions)
        os << fmt::format("{:x} {:x} {}\n", f.block->getAddress().getValue() + f.offset, f.size, f.name);
      return llvm::Error::success();
    }
  };
};

// A JIT holding a program's objects (the step's, then predict's as they come), and their symbols.
class LinkedCode {
 public:
  static llvm::Expected<std::shared_ptr<LinkedCode>> create(const llvm::DataLayout& layout) {
    auto jit = llvm::orc::LLJITBuilder()
                   .setJITTargetMachineBuilder(host_machine())
                   .setDataLayout(layout)  // or LLJIT makes a target machine to learn it
                   .setProcessSymbolsJITDylibSetup(external_symbols)
                   // We add objects, never IR: this compiler, unlike the default one, makes no
                   // target machine unless it is used.
                   .setCompileFunctionCreator([](llvm::orc::JITTargetMachineBuilder jtmb)
                                                  -> llvm::Expected<std::unique_ptr<llvm::orc::IRCompileLayer::IRCompiler>> {
                     return std::make_unique<llvm::orc::ConcurrentIRCompiler>(std::move(jtmb));
                   })
                   .create();
    if (!jit) return jit.takeError();
    if (PerfMap::wanted())
      if (auto* linker = llvm::dyn_cast<llvm::orc::ObjectLinkingLayer>(&(*jit)->getObjLinkingLayer()))
        linker->addPlugin(std::make_unique<PerfMap>());
    auto code = std::make_shared<LinkedCode>();
    // A failed link says why (a symbol not found, say) to the session's reporter, and only
    // "failed to materialize" to the lookup: keep the why for the lookup's error.
    (*jit)->getExecutionSession().setErrorReporter([reported = code->reported_](llvm::Error e) {
      std::lock_guard lock(reported->mutex);
      reported->text += "; " + message(std::move(e));
    });
    code->jit_ = std::move(*jit);
    return code;
  }

  llvm::Error add(std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects) {
    for (auto& object : objects)
      if (llvm::Error e = jit_->addObjectFile(std::move(object))) return e;
    return llvm::Error::success();
  }

  llvm::Expected<EntryPoint> entry(const char* symbol) {
    auto address = jit_->lookup(symbol);
    if (address) return address->toPtr<EntryPoint>();
    std::lock_guard lock(reported_->mutex);
    return llvm::createStringError(fmt::format("looking up {}: {}{}", symbol, message(address.takeError()), reported_->text));
  }

 private:
  struct Reported {
    std::mutex mutex;
    std::string text;
  };
  std::unique_ptr<llvm::orc::LLJIT> jit_;
  std::shared_ptr<Reported> reported_ = std::make_shared<Reported>();
};

std::shared_future<EntryPoint> ready(EntryPoint entry) {
  std::promise<EntryPoint> p;
  p.set_value(entry);
  return p.get_future().share();
}

// A new JIT with `objects` linked into it, as p's code, and the step's entry point in p (when
// the spec trains).
llvm::Expected<std::shared_ptr<LinkedCode>> link_step(Program& p, std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects,
                                                      const llvm::DataLayout& layout, bool trains) {
  auto code = LinkedCode::create(layout);
  if (!code) return code.takeError();
  if (llvm::Error e = (*code)->add(std::move(objects))) return e;
  if (trains) {
    auto step = (*code)->entry(kTrainStepSymbol);
    if (!step) return step.takeError();
    p.train_step = *step;
  }
  p.code = *code;
  return code;
}

// link_step, when predict's code is among the objects too: both entry points in p.
llvm::Error link_all(Program& p, std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects, const llvm::DataLayout& layout, bool trains) {
  auto code = link_step(p, std::move(objects), layout, trains);
  if (!code) return code.takeError();
  auto predict = (*code)->entry(kPredictSymbol);
  if (!predict) return predict.takeError();
  p.predict = ready(*predict);
  return llvm::Error::success();
}

// O3 and instruction selection of one part, on the calling thread (with `tm`, or a target
// machine of its own).
std::unique_ptr<llvm::MemoryBuffer> compile_part(ModulePart& part, JitReport& report, std::unique_ptr<llvm::TargetMachine> tm = nullptr) {
  Stopwatch watch(&report.phases);
  if (!tm) tm = target_machine();
  optimize(*part.module, *tm);
  watch.lap("O3");
  std::unique_ptr<llvm::MemoryBuffer> object = compile_object(*part.module, *tm);
  watch.lap("codegen");
  return object;
}

}  // namespace

std::string cache_dir_from_environment() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  std::string enabled = llvm::StringRef(env("GRADC_CACHE")).lower();
  if (enabled == "0" || enabled == "off" || enabled == "false" || enabled == "no") return "";
  if (std::string dir = env("GRADC_CACHE_DIR"); !dir.empty()) return dir;
  if (std::string xdg = env("XDG_CACHE_HOME"); !xdg.empty()) return xdg + "/gradc";
  if (std::string home = env("HOME"); !home.empty()) return home + "/.cache/gradc";
  return "";
}

Program jit(EmittedModule m, const JitOptions& options, JitReport* report) {
  JitReport local;
  JitReport& r = report ? *report : local;
  Stopwatch watch(&r.phases);
  std::unique_ptr<llvm::TargetMachine> tm = target_machine();
  llvm::DataLayout layout = tm->createDataLayout();
  bool trains = m.program.loss_slot >= 0;
  watch.lap("target machine");

  std::optional<CachedObject> cache;
  if (!options.cache_dir.empty()) {
    cache.emplace(options.cache_dir, cache_key(m.parts, *tm));
    watch.lap("cache key");
    if (std::unique_ptr<llvm::MemoryBuffer> blob = cache->load()) {
      watch.lap("cache read");
      std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects = unbundle(blob->getBuffer(), m.parts.size());
      llvm::Error linked = objects.empty() ? llvm::createStringError("not a bundle of the parts' objects")
                                           : link_all(m.program, std::move(objects), layout, trains);
      watch.lap("link");
      if (!linked) {
        r.cached = true;
        return std::move(m.program);
      }
      llvm::consumeError(std::move(linked));  // an object we cannot use: make it afresh
      cache->drop();
    }
  }

  // The parts the step needs, each on a thread of its own; the step is callable after the
  // longest. Predict's part (`later`) then compiles on a thread of its own while the caller goes on.
  size_t now = 0;
  while (now < m.parts.size() && !m.parts[now].later) ++now;
  std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects(now);
  std::vector<JitReport> part_reports(now);
  std::vector<std::future<void>> others;
  for (size_t i = 1; i < now; ++i)
    others.push_back(std::async(std::launch::async, [&, i] { objects[i] = compile_part(m.parts[i], part_reports[i]); }));
  objects[0] = compile_part(m.parts[0], part_reports[0], std::move(tm));
  for (std::future<void>& f : others) f.get();  // rethrows a part's error
  watch.lap(fmt::format("O3 + codegen of {} parts in parallel", now));
  for (size_t i = 0; i < now; ++i)
    for (const auto& [phase, ms] : part_reports[i].phases)
      r.phases.emplace_back(i == 0 ? phase : fmt::format("{} ({})", phase, m.parts[i].module->getModuleIdentifier()), ms);

  std::string blob = cache ? bundle(objects) : std::string();
  if (now == m.parts.size()) {
    if (cache) {
      cache->store(blob);
      watch.lap("cache write");
    }
    if (llvm::Error e = link_all(m.program, std::move(objects), layout, trains)) {
      if (cache) cache->drop();
      fail({}, "JIT: linking the step: {}", message(std::move(e)));
    }
    watch.lap("link");
    return std::move(m.program);
  }
  std::shared_ptr<LinkedCode> code = unwrap(link_step(m.program, std::move(objects), layout, trains), "linking the step");
  watch.lap("link");
  std::vector<ModulePart> later(std::make_move_iterator(m.parts.begin() + static_cast<ptrdiff_t>(now)),
                                std::make_move_iterator(m.parts.end()));
  m.program.predict = std::async(std::launch::async, [code, later = std::move(later), cache, blob = std::move(blob)]() mutable {
                        JitReport unused;
                        std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects;
                        for (ModulePart& part : later) objects.push_back(compile_part(part, unused));
                        if (cache) cache->store(blob + bundle(objects));
                        if (llvm::Error e = code->add(std::move(objects))) fail({}, "JIT: linking predict: {}", message(std::move(e)));
                        return unwrap(code->entry(kPredictSymbol), "linking predict");
                      }).share();
  return std::move(m.program);
}

std::string print_module(const EmittedModule& m) {
  std::string text;
  llvm::raw_string_ostream os(text);
  for (const ModulePart& p : m.parts) p.module->print(os, nullptr);
  return text;
}

std::string optimized_ir(EmittedModule m) {
  std::unique_ptr<llvm::TargetMachine> tm = target_machine();
  for (ModulePart& p : m.parts) optimize(*p.module, *tm);
  return print_module(m);
}

std::string host_assembly(EmittedModule m) {
  std::unique_ptr<llvm::TargetMachine> tm = target_machine();
  llvm::SmallString<0> text;
  llvm::raw_svector_ostream os(text);
  for (ModulePart& p : m.parts) {
    optimize(*p.module, *tm);
    llvm::legacy::PassManager pm;
    if (tm->addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::AssemblyFile))
      fail({}, "JIT: the host target cannot emit assembly");
    pm.run(*p.module);
  }
  return std::string(text.str());
}

}  // namespace gradc::codegen
