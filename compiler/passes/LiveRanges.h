// Live ranges, the memory plan's first step: which kernel stores each value and which kernels
// read it, by schedule index (the final copies count as index kernels.size()). A buffer must
// hold its value from the kernel that stores it to the last one that reads it; the alias
// analysis (AliasAnalysis.h) asks the same uses whether anything reads a value after a kernel
// that would write over it. A kernel that reads a view reads its root's bytes, so reads are
// counted at the root (Graph::viewed).
#pragma once

#include <cstdint>
#include <vector>

#include "ir/Kernel.h"

namespace gradc {

struct ValueUses {
  int32_t end = 0;                            // the final copies' index
  std::vector<int32_t> writer;                // per value: the kernel that stores it, or -1
  std::vector<int32_t> last_read;             // per view root: the last kernel that reads it, or -1
  std::vector<std::vector<int32_t>> readers;  // per view root: the kernels that read it, in order
  std::vector<bool> read_by_copy;             // per view root: an output or an assign copies it at the end

  // The live range of a stored value's own buffer: from its writer to its last reader, or to
  // the final copies when one of them reads it.
  int32_t first(ValueId v) const { return writer[static_cast<size_t>(v)]; }
  int32_t last(ValueId v) const;
};

ValueUses find_uses(const KernelProgram& p);

}  // namespace gradc
