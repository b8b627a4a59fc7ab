// What the command reports about itself: gradc's and LLVM's versions, the host CPU.
#include <llvm/ADT/StringRef.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/TargetParser/Host.h>

#include "gradc/gradc.h"
#include "runtime/Format.h"

namespace gradc {

std::string version_string() {
  return fmt::format("gradc {} (LLVM {}, host CPU {})", GRADC_VERSION, LLVM_VERSION_STRING,
                     llvm::sys::getHostCPUName().str());
}

}  // namespace gradc
