// f32 GEMM of our own: register-tiled microkernels on LLVM vector types, sized from the static
// shapes and the host's vector registers (BLIS's structure without its runtime dispatch).
//
// C[m, n] = A[m, k] · B[k, n], per batch, each operand possibly read transposed. The n columns
// are cut into panels of `nr`; a task is one panel of one batch: it copies its panel of B to
// scratch as k rows of nr contiguous floats (zero-padded) when B is transposed or wide, then for
// every block of `mr` rows keeps the mr × nr results in vector registers over the whole k loop
// (one B row of vectors and one broadcast of A per row, a fused multiply-add each), and hands
// the finished tile to the caller's epilogue. Tasks share nothing but their inputs, so they may
// run on any threads in any order with the same results: each result is summed over k in order.
// Two shapes get plans of their own: a narrow result of a transposed A is computed as its
// transpose (`swapped`), and a narrow result over a long k as dot products along k (`dot`), so
// that whole vectors do the work rather than n of their lanes.
#pragma once

#include <functional>

#include "codegen/KernelBuilder.h"

namespace gradc::codegen {

struct GemmPlan {
  int64_t batches = 1, m = 0, n = 0, k = 0;
  bool a_transposed = false, b_transposed = false;
  int64_t lanes = 16;      // floats in one vector register
  int64_t mr = 1, nr = 16;  // the tile in registers; nr is a multiple of lanes
  bool pack_b = false;     // copy each panel of B to scratch first
  bool pack_a = false;     // copy A to scratch first, as blocks of k rows of mr floats
  // The k loop in chunks of kc (the last may be shorter): a chunk of the B panel stays in L1
  // while every row block uses it; the panel's sums wait in scratch between chunks, each still
  // summed in k order (so the results are those of one long loop, bit for bit).
  int64_t kc = 0;
  // The plan computes Cᵀ = Bᵀ·Aᵀ (m, n and the operands above are Cᵀ's): tiles then hold
  // tile[r * nr + c] = C[col0 + c, row0 + r], and the epilogue must read them so.
  bool swapped = false;
  // Dot products instead (n at most a vector, A not transposed, k long: the seed's X·W1): each
  // of a tile's mr × n results is a vector of partial sums along k, added up across its lanes at
  // the end. Bᵀ's rows are read contiguously, from a copy in scratch unless B is stored transposed.
  bool dot = false;

  int64_t panels() const { return (n + nr - 1) / nr; }
  int64_t tasks() const { return batches * panels(); }
  int64_t row_blocks() const { return (m + mr - 1) / mr; }
  int64_t chunks() const { return (k + kc - 1) / kc; }
  // The copies every task reads, made before them in units that may run on any threads: A's
  // row blocks of every batch when pack_a, or a dot plan's whole Bᵀ as one unit.
  int64_t pack_units() const { return pack_a ? batches * row_blocks() : dot && !b_transposed ? 1 : 0; }
  // (rounded up to whole cache lines: the regions after it are read with aligned vector loads)
  int64_t packed_a_floats() const {
    int64_t floats = pack_a ? batches * row_blocks() * k * mr : dot && !b_transposed ? batches * n * k : 0;
    return (floats + 15) / 16 * 16;
  }
  int64_t packed_b_floats() const { return pack_b ? tasks() * k * nr : 0; }
  int64_t panel_sum_floats() const { return chunks() > 1 ? tasks() * row_blocks() * mr * nr : 0; }
  int64_t scratch_bytes() const { return (packed_a_floats() + packed_b_floats() + panel_sum_floats()) * 4; }
};

// f32 lanes of the host's widest vector registers: 16 with AVX-512, 8 with AVX2, else 4.
int64_t host_vector_lanes();

GemmPlan plan_gemm(int64_t batches, int64_t m, int64_t n, int64_t k, bool a_transposed, bool b_transposed, int64_t lanes);

// Emits the code of one finished tile: `rows` × `cols` results (both known here) at
// `tile[r * nr + c]`, for rows row0.. and columns col0.. of batch `batch`.
using TileEpilogue = std::function<void(llvm::Value* batch, llvm::Value* row0, int64_t rows, llvm::Value* col0,
                                        int64_t cols, llvm::Value* tile)>;

// Emits the pack units [begin, end) of p.pack_units(): the shared copies that the tasks read, so
// all units must have run before any task. a and b are C = A·B's operands, swapped or not.
void emit_gemm_pack(KernelBuilder& k, const GemmPlan& p, llvm::Value* a, llvm::Value* b, llvm::Value* scratch,
                    llvm::Value* begin, llvm::Value* end);

// Emits tasks [begin, end) of the plan into k's function. `scratch` has p.scratch_bytes().
// Tiles are passed to the epilogue in the plan's coordinates (see `swapped`).
void emit_gemm_tasks(KernelBuilder& k, const GemmPlan& p, llvm::Value* a, llvm::Value* b, llvm::Value* scratch,
                     llvm::Value* begin, llvm::Value* end, const TileEpilogue& epilogue);

}  // namespace gradc::codegen
