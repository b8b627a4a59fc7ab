// Alias analysis, the memory plan's in-place rules, all of them here: where a value may be
// written other than a buffer of its own (as XLA's can_share_buffer decides for its buffer
// assignment). A leaf lives in its slot; a value that is one output and nothing else is
// written straight into the output's slot; an assign's value into the param or state it
// updates, and a kernel's output over the buffer of one of its inputs, when the kernel may
// write over those bytes; a view has its root's bytes. Each saves a buffer, and the first two
// a final copy as well.
#pragma once

#include "ir/Kernel.h"
#include "passes/LiveRanges.h"

namespace gradc {

// Sets p.locations: the slot each value is written into (Leaf, Output, Assigned), None for the
// rest. A value that a kernel stores and that gets None here needs a buffer.
void place_in_slots(KernelProgram& p, const ValueUses& uses);

// With p.buffers holding each stored value's own buffer: lets kernel outputs take over the
// buffers of their inputs (dropping their own, widening the live range of the one they
// take), and records each such value with the value that names its buffer in p.shared.
void share_in_place(KernelProgram& p, const ValueUses& uses);

// After packing: a value in p.shared takes its holder's location, a view its root's.
void locate_aliases(KernelProgram& p);

}  // namespace gradc
