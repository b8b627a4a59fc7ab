// Memory planning: where every value of a Kernel program lives while a step runs.
//
// Leaves stay in their slots; an output is written straight into its output slot and an
// assign's value straight into the param or state it updates when that is safe (nothing
// reads the old value later); every other stored value gets an arena buffer live from the
// kernel that writes it to the last kernel that reads it, and buffers whose lives do not
// overlap share bytes (best fit in order of first use, 64-byte aligned).
//
// plan_memory runs three steps, a file each: live ranges (LiveRanges.h), alias analysis, the
// one place the in-place rules live (AliasAnalysis.h), and arena packing (ArenaPacking.cpp,
// which defines place_buffers and check_plan below).
#pragma once

#include <string>
#include <vector>

#include "ir/Kernel.h"

namespace gradc {

void plan_memory(KernelProgram& p);

// Offsets for `buffers` (bytes, first, last given): no two whose live ranges meet overlap.
// Returns the arena size.
int64_t place_buffers(std::vector<ArenaBuffer>& buffers);

// The plan's faults: pairs of buffers live at once that share bytes, buffers past the arena,
// misaligned offsets. Empty when the plan is sound.
std::vector<std::string> check_plan(const std::vector<ArenaBuffer>& buffers, int64_t arena_bytes);

}  // namespace gradc
