// MatMul kernels: the tiled f32 GEMM (codegen/Gemm.h) on the pool with its epilogue on each tile;
// other dtypes in scalar loops.
#include "codegen/KernelBody.h"

#include <numeric>

#include "codegen/ParallelTasks.h"

namespace gradc::codegen {

KernelBody::MatMulShape KernelBody::matmul_shape() const {
  const Shape& d = kernel_.domain;
  const Shape& as = g_[kernel_.a].type.shape;
  return {d.size() == 3 ? d[0] : 1, d[d.size() - 2], d.back(), kernel_.a_transposed ? as[as.size() - 2] : as.back()};
}

// The epilogue of one finished tile of C (rows x cols from (row0, col0), its results in `tile`
// as the plan lays them out): on tile rows as vectors when they are whole vectors, else on
// vectors of `lanes` results in row-major order (flat), else element by element.
void KernelBody::tile_epilogue(const GemmPlan& plan, bool vector, bool flat_vectors, llvm::Value* batch, llvm::Value* row0,
                               int64_t rows, llvm::Value* col0, int64_t cols, llvm::Value* tile) {
  auto& ir = k_.b;
  auto* f32 = ir.getFloatTy();
  int64_t lanes = plan.lanes;
  // The tile's element (r, c) of C, from (row0, col0), is at tile[at(r, c)].
  auto at = [&](int64_t r, int64_t c) { return plan.swapped ? c * plan.nr + r : r * plan.nr + c; };
  if (plan.swapped) {
    std::swap(row0, col0);
    std::swap(rows, cols);
  }
  if (vector && !plan.swapped && cols % lanes == 0) {  // each tile row as the vectors it was in registers
    std::vector<std::pair<int64_t, int64_t>> along_row;
    for (int64_t l = 0; l < lanes; ++l) along_row.emplace_back(0, l);
    k_.rolled_loop(rows, [&](llvm::Value* r) {
      for (int64_t c = 0; c < cols; c += lanes) {
        auto* vt = llvm::FixedVectorType::get(f32, static_cast<unsigned>(lanes));
        llvm::Value* at = ir.CreateInBoundsGEP(f32, tile, ir.CreateAdd(ir.CreateMul(r, k_.index(plan.nr)), k_.index(c)));
        llvm::Value* v = ir.CreateAlignedLoad(vt, at, llvm::Align(static_cast<uint64_t>(lanes * 4)));
        epilogue_at({batch, ir.CreateAdd(row0, r), ir.CreateAdd(col0, k_.index(c))}, v, along_row, lanes);
      }
    });
  } else if (flat_vectors) {
    // Narrow tiles (the seed's 10 columns): the tile's results in row-major order,
    // `lanes` at a time, so that no vector is mostly masked off and a masked store
    // at the end of one row does not stall the loads of the next.
    Buffer tile_buffer{TensorType{DType::F32, {plan.mr * plan.nr}}, tile, nullptr};
    // The vector of results e0.. (valid of them) from tile row `shift` on.
    auto results = [&](int64_t e0, int64_t valid, llvm::Value* shift) {
      int64_t r0 = e0 / cols, c0 = e0 % cols;
      std::vector<std::pair<int64_t, int64_t>> lane_at;
      std::vector<int64_t> in_tile;
      for (int64_t l = 0; l < lanes; ++l) {
        int64_t e = e0 + std::min(l, valid - 1);
        lane_at.emplace_back(e / cols - r0, e % cols - c0);
        in_tile.push_back(at(e / cols, e % cols));
      }
      k_.set_lanes(lanes);
      llvm::Value* v = k_.load_lanes(tile_buffer, ir.CreateMul(shift, k_.index(at(1, 0))), in_tile, valid);
      llvm::Value* row = ir.CreateAdd(ir.CreateAdd(row0, shift), k_.index(r0));
      epilogue_at({batch, row, ir.CreateAdd(col0, k_.index(c0))}, v, lane_at, valid);
    };
    // Lanes fall on the same (row, column) pattern every lcm(lanes, cols) results:
    // whole periods in a rolled loop, the rest unrolled.
    int64_t period = std::lcm(lanes, cols), periods = rows * cols / period;
    if (periods < 2) periods = 0;
    k_.rolled_loop(periods, [&](llvm::Value* g) {
      for (int64_t e0 = 0; e0 < period; e0 += lanes) results(e0, lanes, ir.CreateMul(g, k_.index(period / cols)));
    });
    for (int64_t e0 = periods * period; e0 < rows * cols; e0 += lanes)
      results(e0, std::min(lanes, rows * cols - e0), k_.index(0));
  } else {
    k_.rolled_loop(rows, [&](llvm::Value* r) {
      k_.loop(cols, [&](llvm::Value* c) {
        llvm::Value* v = ir.CreateLoad(f32, ir.CreateInBoundsGEP(f32, tile, k_.offset({r, c}, {at(1, 0), at(0, 1)})));
        epilogue_at({batch, ir.CreateAdd(row0, r), ir.CreateAdd(col0, c)}, v);
      });
    });
  }
}

// f32: our tiled GEMM (codegen/Gemm.cpp), its tasks in a function of their own that the
// kernel runs itself or splits over the pool's threads; the epilogue runs on each finished
// tile. Other dtypes: the scalar loops below.
void KernelBody::matmul() {
  if (g_[kernel_.members[0]].type.dtype != DType::F32) return matmul_scalar();
  auto [batches, m, n, kk] = matmul_shape();
  GemmPlan plan = plan_gemm(batches, m, n, kk, kernel_.a_transposed, kernel_.b_transposed, host_vector_lanes());
  scratch_bytes_ = plan.scratch_bytes();
  start_reductions();
  bool parallel = parallel_safe(plan) && plan.tasks() > 1 && kernel_.flops >= kParallelFlops;
  // The shared copies first (on the pool too, so that a second thread is not idle for them),
  // then the tasks: the pool's run returns only when all its tasks have. Copies cannot fail.
  if (plan.pack_units() > 0) {
    llvm::Function* pack = ParallelTasks(k_, places_).task_function(".pack.tasks", [&](KernelBuilder& tk, llvm::Value* begin, llvm::Value* end) {
      llvm::Function* f = tk.fn;
      emit_gemm_pack(tk, plan, f->getArg(arg_of_.at(kernel_.a)), f->getArg(arg_of_.at(kernel_.b)), f->getArg(places_), begin, end);
    }).first;
    ParallelTasks(k_, places_).run(pack, plan.pack_units(), parallel && plan.pack_units() > 1);
  }

  split_tasks(".tasks", plan.tasks(), parallel, /*scan_unnoted=*/true, [&](KernelBody& inner, llvm::Value* begin, llvm::Value* end) {
    KernelBuilder& tk = inner.k_;
    // Tile rows of whole vectors are the epilogue's vectors. Other tiles are taken `lanes` results
    // at a time in row-major order (a masked store at the end of one row, then loads of the next
    // row that overlap its 64 bytes, would wait for the store to retire: measured 20% slower on the
    // seed's 10 columns than LLVM's gathers down the columns); then reductions, whose lanes could
    // meet in one element, leave the epilogue to scalars.
    bool vector = inner.vector_epilogue();
    bool flat_vectors = vector && inner.no_reductions();
    llvm::Function* f = tk.fn;
    emit_gemm_tasks(tk, plan, f->getArg(arg_of_.at(kernel_.a)), f->getArg(arg_of_.at(kernel_.b)), f->getArg(places_), begin, end,
                    [&](llvm::Value* batch, llvm::Value* row0, int64_t rows, llvm::Value* col0, int64_t cols, llvm::Value* tile) {
                      inner.tile_epilogue(plan, vector, flat_vectors, batch, row0, rows, col0, cols, tile);
                    });
  });
  finish_reductions();
}

// Tasks split over columns (and batches) only: every reduction in the epilogue must keep
// them, so that no two tasks add into one element. (A swapped plan's tasks split C's rows.)
bool KernelBody::parallel_safe(const GemmPlan& plan) const {
  size_t rank = kernel_.domain.size();
  for (ValueId m : kernel_.members) {
    if (!is_reduction(m)) continue;
    if (plan.swapped) return false;
    if (g_[g_[m].args[0]].type.shape != kernel_.domain) return false;
    std::vector<int64_t> axes = g_[m].attrs.get("axes").as_ints();
    if (axes != std::vector<int64_t>{static_cast<int64_t>(rank - 2)}) return false;
  }
  return true;
}

// out[b, i, :] row by row: the products summed in p order (as the interpreter), then the
// epilogue members at each element of the row.
void KernelBody::matmul_scalar() {
  bool batched = kernel_.domain.size() == 3;
  auto [batches, m, n, kk] = matmul_shape();
  const Buffer &a = buffer(kernel_.a), &b = buffer(kernel_.b);
  DType dt = g_[kernel_.members[0]].type.dtype;
  if (dt == DType::I32) fail(g_[kernel_.members[0]].loc, "codegen: matmul on i32 tensors is not supported by the JIT yet");
  llvm::Type* t = k_.elem(dt);
  llvm::Value* acc;
  {
    llvm::BasicBlock& entry = k_.fn->getEntryBlock();
    llvm::IRBuilder<> at_entry(&entry, entry.begin());
    acc = at_entry.CreateAlloca(llvm::ArrayType::get(t, static_cast<uint64_t>(n)));
  }
  Buffer row{TensorType{dt, {n}}, acc, nullptr};
  start_reductions();
  auto& ir = k_.b;
  k_.loops({batches, m}, [&](const Values& bi) {
    llvm::Value *bb = bi[0], *i = bi[1];
    auto a_at = [&](llvm::Value* p) {
      llvm::Value* inner = kernel_.a_transposed ? k_.offset({p, i}, {m, 1}) : k_.offset({i, p}, {kk, 1});
      return ir.CreateAdd(ir.CreateMul(bb, k_.index(m * kk)), inner);
    };
    llvm::Value* b_base = ir.CreateMul(bb, k_.index(kk * n));
    if (!kernel_.b_transposed) {
      k_.loop(n, [&](llvm::Value* j) { k_.store(row, j, k_.real(dt, 0)); });
      k_.loop(kk, [&](llvm::Value* p) {
        llvm::Value* av = k_.load(a, a_at(p));
        llvm::Value* b_row = ir.CreateAdd(b_base, ir.CreateMul(p, k_.index(n)));
        k_.loop(n, [&](llvm::Value* j) {
          k_.store(row, j, ir.CreateFAdd(k_.load(row, j), ir.CreateFMul(av, k_.load(b, ir.CreateAdd(b_row, j)))));
        });
      });
    } else {
      k_.loop(n, [&](llvm::Value* j) {
        llvm::Value* sum = k_.local(k_.real(dt, 0));
        llvm::Value* b_row = ir.CreateAdd(b_base, ir.CreateMul(j, k_.index(kk)));
        k_.loop(kk, [&](llvm::Value* p) {
          k_.set(sum, ir.CreateFAdd(k_.get(sum), ir.CreateFMul(k_.load(a, a_at(p)), k_.load(b, ir.CreateAdd(b_row, p)))));
        });
        k_.store(row, j, k_.get(sum));
      });
    }
    k_.loop(n, [&](llvm::Value* j) {
      Values idx = batched ? Values{bb, i, j} : Values{i, j};
      vals_.clear();
      vals_[kernel_.members[0]] = k_.load(row, j);
      members_at(idx, nullptr, 0);  // stores the product after loading the inputs (see epilogue_at)
    });
  });
  finish_reductions();
}

}  // namespace gradc::codegen
