// Loop kernels: elementwise members and reductions over one domain, split over the pool when large.
#include "codegen/KernelBody.h"

namespace gradc::codegen {

void KernelBody::loop() {
  const Shape& d = kernel_.domain;
  int64_t count = TensorType{DType::F32, d}.numel();
  bool flat = true;
  for (ValueId m : kernel_.members) flat = flat && !is_reduction(m) && !indexed(m);
  for (ValueId v : kernel_.inputs) flat = flat && (g_[v].type.numel() == count || g_[v].type.numel() == 1);
  start_reductions();
  if (int64_t axis = loop_split_axis(flat); axis >= 0) {
    // Tasks of whole slices along `axis` (flat: runs of elements), about kTaskElements each.
    int64_t units = flat ? count : d[static_cast<size_t>(axis)];
    int64_t per_unit = count / units;
    int64_t per_task = std::max<int64_t>(1, kTaskElements / per_unit);
    if (flat) per_task = (per_task + 63) / 64 * 64;  // whole vectors, but for the last task
    split_tasks(".tasks", tasks_of(units, per_task), true, /*scan_unnoted=*/false, [&](KernelBody& task, llvm::Value* begin, llvm::Value* end) {
      auto [first, last] = task.task_units(begin, end, units, per_task);
      task.loop_range(flat, static_cast<size_t>(axis), first, last);
    });
    finish_reductions();
    return;
  }
  hoist_scalars();
  if (flat) {
    k_.loop(count, [&](llvm::Value* i) {
      vals_.clear();
      members_at({}, i, 0);
    });
  } else {
    k_.loops(d, [&](const Values& idx) {
      vals_.clear();
      members_at(idx, nullptr, 0);
    });
  }
  finish_reductions();
}

// The axis a Loop kernel's tasks split (0 for a flat loop), or -1 for one thread: the kernel
// is large, and no reduction sums along the axis (each element's sum then runs in its order
// in one task). The first axis that no reduction reduces; those before it loop whole in each
// task.
int64_t KernelBody::loop_split_axis(bool flat) const {
  const Shape& d = kernel_.domain;
  if (TensorType{DType::F32, d}.numel() < kParallelElements) return -1;
  if (flat) return 0;
  std::vector<bool> reduced(d.size(), false);
  for (ValueId m : kernel_.members) {
    if (!is_reduction(m)) continue;
    if (g_[g_[m].args[0]].type.shape != d) return -1;
    for (int64_t axis : g_[m].attrs.get("axes").as_ints()) reduced[static_cast<size_t>(axis)] = true;
  }
  for (size_t axis = 0; axis < d.size(); ++axis)
    if (!reduced[axis] && d[axis] > 1) return static_cast<int64_t>(axis);
  return -1;
}

// A task's part of a Loop kernel: elements [first, last) of a flat loop, else the slices
// [first, last) along `axis` (every index of the axes before it and after it). The split axis
// loops outermost: a reduction's element (which no other task writes) then takes all of its
// terms in one stretch, in the same order as one thread would, and LLVM keeps it in a register
// rather than storing it after every row; stored per row, the sum of one channel and the next
// (another task's, in the same cache line) made the two threads fight over the line, and the
// conv bias gradients took 1.8-2.5x the CPU on 2 threads that they took on one.
void KernelBody::loop_range(bool flat, size_t axis, llvm::Value* first, llvm::Value* last) {
  if (flat) {
    k_.loop(first, last, [&](llvm::Value* i) {
      vals_.clear();
      members_at({}, i, 0);
    });
    return;
  }
  const Shape& d = kernel_.domain;
  Shape before(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(axis)), after(d.begin() + static_cast<std::ptrdiff_t>(axis) + 1, d.end());
  k_.loop(first, last, [&](llvm::Value* i) {
    k_.loops(before, [&](const Values& outer) {
      k_.loops(after, [&](const Values& inner) {
        Values idx = outer;
        idx.push_back(i);
        idx.insert(idx.end(), inner.begin(), inner.end());
        vals_.clear();
        members_at(idx, nullptr, 0);
      });
    });
  });
}

}  // namespace gradc::codegen
