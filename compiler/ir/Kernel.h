// The Kernel program: the second IR level, between the training graph and LLVM.
//
// A kernel is one loop nest that computes some nodes of a Graph (its members) from buffers in
// memory (its inputs) and stores the members that others need (its outputs):
//   - Loop:   elementwise members over one index domain (the shape they share), plus
//             reductions of such members (sum, mean, max over axes), which end the chain;
//             scalar members are recomputed in every kernel that uses them.
//   - MatMul: a matmul whose operands may be read transposed (a transpose folded into the
//             operand's layout, never materialized), then an epilogue of Loop members over the
//             result's domain (bias, activation, the activation's mask, a column sum).
//   - Conv:   a conv2d (its vector loop nest, codegen/ConvEmitters.cpp), then an epilogue of
//             Loop members over the result's domain [N, O, OH, OW] (the bias, the activation,
//             its mask) run on each finished tile of sums, so that the raw conv is stored only
//             when something outside the kernel reads it.
//   - RowWise: softmax, log_softmax and cross-entropy with class ids over the rows of one
//             matrix in memory, each row's max and log-sum-exp computed once, then an epilogue
//             of Loop members over the matrix's domain (the loss's gradient, a column sum).
//   - Alone:  a single op with a loop nest of its own (conv gradients, pooling, losses, ...):
//             the table's Alone form.
// MatMul, Conv and RowWise kernels are headed: the head (members[0], or the row ops) reads its
// operands from memory, and no epilogue member may feed it.
// Members of a Graph that are views (reshape) or folded transposes are in no kernel.
//
// Fusion (passes/Fusion.cpp) builds the kernels, in an order that respects their dependences;
// the memory plan (passes/MemoryPlan.cpp) gives every value that lives in memory a place.
#pragma once

#include <string>
#include <vector>

#include "ir/Graph.h"

namespace gradc {

enum class KernelKind : uint8_t { Loop, MatMul, Conv, RowWise, Alone };

struct Kernel {
  std::string name;
  KernelKind kind = KernelKind::Loop;
  Shape domain;                  // the index space of the (non-reduction) members
  std::vector<ValueId> members;  // in graph order; MatMul, Conv: members[0] is the matmul or conv2d
  std::vector<ValueId> inputs;   // values read from memory, as the members use them (no constants)
  std::vector<ValueId> outputs;  // members stored to memory
  // MatMul: the stored operands, and whether each is read transposed (last two dims swapped).
  // Conv: x and w (never transposed).
  ValueId a = -1, b = -1;
  bool a_transposed = false, b_transposed = false;
  ValueId rows = -1;  // RowWise: the matrix whose rows are normalized
  int64_t flops = 0;  // floating-point operations (a multiply-add is 2)
  int64_t bytes = 0;  // bytes of the inputs read plus the outputs written, each once
  // The inputs that another kernel computes, each with why fusion kept it out of this one.
  std::vector<std::pair<ValueId, std::string>> unfused;
};

// Where a value lives while an entry point runs.
struct Location {
  enum Kind : uint8_t {
    None,      // not in memory: a member consumed inside its kernel, or a constant
    Arena,     // at `offset` in the arena
    Leaf,      // an input, param or state: its own slot (`node` names it)
    Output,    // written straight into the slot of the graph output named by `node`
    Assigned,  // written straight into the slot of the param or state `node` it updates
  } kind = None;
  int64_t offset = 0;
  ValueId node = -1;
  bool operator==(const Location&) const = default;
};

// A copy at the end of the step, for an output or an assign whose value could not be written
// in place (a leaf, a value that is both, or one whose target is read after it is computed).
// Assigns take effect at once: a param or state that another assign reads is staged first.
struct FinalCopy {
  ValueId value;  // what is copied (its type)
  Location from, to;
};

// A value in the arena and the kernels during which it must stay (by schedule index; copies
// at the end count as index kernels.size()).
struct ArenaBuffer {
  ValueId value;
  int64_t bytes = 0;
  int64_t offset = 0;
  int32_t first = 0, last = 0;
};

struct KernelProgram {
  Graph graph;                     // the graph the kernels compute
  std::vector<Kernel> kernels;     // in schedule order
  std::vector<Location> locations;  // per ValueId
  std::vector<FinalCopy> copies;    // outputs first, then assigns (staged where needed)
  std::vector<ArenaBuffer> buffers;
  std::vector<std::pair<ValueId, ValueId>> shared;  // (value, the value whose buffer it takes over, in place)
  int64_t arena_bytes = 0;         // the plan's arena
  int64_t naive_bytes = 0;         // every value the graph computes in a buffer of its own (no fusion, no sharing)
  int64_t unshared_bytes = 0;      // the arena buffers above, each on its own
  int64_t lower_bound_bytes = 0;   // the most bytes live at once
};

// The program's faults, empty when it is sound: a kernel that reads a value no earlier kernel
// stores (inputs, params, state and constants exist from the start), a value stored twice, and
// with `planned` a value read or stored that has no place in memory.
std::vector<std::string> verify_kernels(const KernelProgram& p, bool planned);

// `gradc dump --stage fused`: a block per kernel, starting with a line `kernel NAME`.
std::string print_kernels(const KernelProgram& p);
// `gradc dump --stage plan`: every buffer (bytes, offset, live range) and the totals.
std::string print_plan(const KernelProgram& p);

}  // namespace gradc
