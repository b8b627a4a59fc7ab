// RowWise kernels: softmax, log_softmax and the cross-entropy losses row by row, with their epilogue.
#include "codegen/KernelBody.h"

namespace gradc::codegen {

// Each row of the matrix: its max and log-sum-exp once; the losses take their row's term;
// then every element: softmax and log_softmax from the row's numbers, and the epilogue.
void KernelBody::rowwise() {
  const Buffer& x = buffer(kernel_.rows);
  int64_t rows = kernel_.domain[0], cols = kernel_.domain[1];
  std::vector<ValueId> losses;
  for (ValueId m : kernel_.members)
    if (cg(m).row_loss) {
      losses.push_back(m);
      k_.store(buffer(m), k_.index(0), k_.real(g_[m].type.dtype, 0));
    }
  start_reductions();
  auto& ir = k_.b;
  bool vector = g_[kernel_.rows].type.dtype == DType::F32 && vector_epilogue();
  int64_t lanes = host_vector_lanes();
  lane_at_.clear();
  for (int64_t l = 0; l < lanes; ++l) lane_at_.emplace_back(0, l);
  k_.loop(rows, [&](llvm::Value* r) {
    llvm::Value* base = ir.CreateMul(r, k_.index(cols));
    auto [max, log_sum] = row_max_and_log_sum(k_, x, cols, base);
    for (ValueId m : losses) {
      const Node& n = g_[m];
      llvm::Value* id = checked_class_id(k_, n, k_.load(buffer(n.args[1]), r), cols);
      llvm::Value* log_p = ir.CreateFSub(ir.CreateFSub(k_.load(x, ir.CreateAdd(base, id)), max), log_sum);
      const Buffer& out = buffer(m);
      k_.store(out, k_.index(0), ir.CreateFSub(k_.load(out, k_.index(0)), log_p));
    }
    if (!vector) {
      k_.loop(cols, [&](llvm::Value* c) {
        vals_.clear();
        llvm::Value* xv = k_.load(x, ir.CreateAdd(base, c));
        for (ValueId m : kernel_.members)
          if (cg(m).row) vals_[m] = cg(m).row(k_, xv, max, log_sum);
        members_at({r, c}, nullptr, 0);
      });
      return;
    }
    // The row a vector at a time (the last one masked), every member on lanes.
    for (int64_t c = 0; c < cols; c += lanes) {
      valid_ = std::min(lanes, cols - c);
      k_.set_lanes(lanes);
      vals_.clear();
      llvm::Value* xv = k_.load_lanes(x, ir.CreateAdd(base, k_.index(c)), lane_offsets({cols, 1}), valid_);
      for (ValueId m : kernel_.members)
        if (cg(m).row) vals_[m] = cg(m).row(k_, xv, k_.splat(max), k_.splat(log_sum));
      members_at({r, k_.index(c)}, nullptr, 0);
      k_.set_lanes(0);
    }
  });
  for (ValueId m : losses) {
    const Buffer& out = buffer(m);
    k_.store(out, k_.index(0), ir.CreateFDiv(k_.load(out, k_.index(0)), k_.real(g_[m].type.dtype, static_cast<double>(rows))));
  }
  finish_reductions();
}

}  // namespace gradc::codegen
