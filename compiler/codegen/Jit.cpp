#include "codegen/Jit.h"

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <optional>

#include <llvm/ADT/StringExtras.h>
#include <llvm/Bitcode/BitcodeWriter.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/ExecutionEngine/Orc/CompileUtils.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
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
constexpr const char* kCacheFormat = "gradc object cache 2";  // 2: a bundle of the parts' objects
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

// Times consecutive phases into a report.
class Stopwatch {
 public:
  explicit Stopwatch(JitReport& report) : report_(report) {}
  void lap(std::string phase) {
    auto now = std::chrono::steady_clock::now();
    report_.phases.emplace_back(std::move(phase), std::chrono::duration<double, std::milli>(now - last_).count());
    last_ = now;
  }

 private:
  JitReport& report_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

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
    int fd = -1;
    llvm::SmallString<256> temp;
    if (llvm::sys::fs::createUniqueFile(path_ + ".tmp-%%%%%%%%", fd, temp)) return;
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

struct Linked {
  std::unique_ptr<llvm::orc::LLJIT> jit;
  EntryPoint train_step = nullptr, predict = nullptr;
};

// A JIT holding the object, and its entry points.
llvm::Expected<Linked> link(std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects, const llvm::DataLayout& layout, bool trains) {
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
  // A failed link says why (a symbol not found, say) to the session's reporter, and only "failed
  // to materialize" to the lookup: keep the why for the lookup's error instead of printing it.
  auto reported = std::make_shared<std::string>();
  (*jit)->getExecutionSession().setErrorReporter([reported](llvm::Error e) { *reported += "; " + message(std::move(e)); });
  for (auto& object : objects)
    if (llvm::Error e = (*jit)->addObjectFile(std::move(object))) return e;
  Linked linked;
  for (auto [symbol, entry] : {std::pair{kTrainStepSymbol, &linked.train_step}, std::pair{kPredictSymbol, &linked.predict}}) {
    if (entry == &linked.train_step && !trains) continue;
    auto address = (*jit)->lookup(symbol);
    if (!address)
      return llvm::createStringError(fmt::format("looking up {}: {}{}", symbol, message(address.takeError()), *reported));
    *entry = address->toPtr<EntryPoint>();
  }
  linked.jit = std::move(*jit);
  return linked;
}

Program finish(Program p, Linked linked) {
  p.train_step = linked.train_step;
  p.predict = linked.predict;
  p.code = std::shared_ptr<const llvm::orc::LLJIT>(std::move(linked.jit));
  return p;
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
  Stopwatch watch(r);
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
      llvm::Expected<Linked> linked = objects.empty() ? llvm::createStringError("not a bundle of the parts' objects")
                                                      : link(std::move(objects), layout, trains);
      watch.lap("link");
      if (linked) {
        r.cached = true;
        return finish(std::move(m.program), std::move(*linked));
      }
      llvm::consumeError(linked.takeError());  // an object we cannot use: make it afresh
      cache->drop();
    }
  }

  // Each part (the step, predict) on a thread of its own, with its own target machine: the
  // step is callable after the longer of the two rather than after both.
  std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects(m.parts.size());
  std::vector<JitReport> part_reports(m.parts.size());
  auto compile_part = [&](size_t i) {
    Stopwatch part_watch(part_reports[i]);
    std::unique_ptr<llvm::TargetMachine> part_tm = i == 0 ? std::move(tm) : target_machine();
    optimize(*m.parts[i].module, *part_tm);
    part_watch.lap("O3");
    objects[i] = compile_object(*m.parts[i].module, *part_tm);
    part_watch.lap("codegen");
  };
  std::vector<std::future<void>> others;
  for (size_t i = 1; i < m.parts.size(); ++i) others.push_back(std::async(std::launch::async, compile_part, i));
  compile_part(0);
  for (std::future<void>& f : others) f.get();  // rethrows a part's error
  watch.lap(fmt::format("O3 + codegen of {} parts in parallel", m.parts.size()));
  for (size_t i = 0; i < m.parts.size(); ++i)
    for (const auto& [phase, ms] : part_reports[i].phases)
      r.phases.emplace_back(i == 0 ? phase : fmt::format("{} ({})", phase, m.parts[i].module->getModuleIdentifier()), ms);
  if (cache) {
    cache->store(bundle(objects));
    watch.lap("cache write");
  }
  llvm::Expected<Linked> linked = link(std::move(objects), layout, trains);
  if (!linked) {
    if (cache) cache->drop();
    fail({}, "JIT: linking the step: {}", message(linked.takeError()));
  }
  watch.lap("link");
  return finish(std::move(m.program), std::move(*linked));
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
