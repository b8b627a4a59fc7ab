// The same model in libtorch: a spec's forward graph translated op by op into torch ops, its
// params copied from a gradc Session, and the spec's optimizer from torch::optim. One step is
// what a PyTorch training loop does: clear the gradients, forward, loss.backward(), clip (when
// the spec asks), optimizer.step(). Torch's headers stay in TorchStep.cpp.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "driver/Bench.h"
#include "gradc/gradc.h"

namespace gradc::benchmark {

class TorchStep {
 public:
  // `params`: the initial value of every param of `spec`, by name; `inputs`: every input.
  // Throws gradc::Error for a spec it cannot translate (an op, an optimizer), naming it.
  TorchStep(const Graph& spec, const std::map<std::string, Tensor>& params, const std::map<std::string, Tensor>& inputs);
  ~TorchStep();
  TorchStep(const TorchStep&) = delete;
  TorchStep& operator=(const TorchStep&) = delete;

  double step();  // one training step; returns the loss (before the update, as gradc's step does)

  static void set_threads(int threads);    // at::set_num_threads
  static std::string version();            // "libtorch 1.13.1"

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gradc::benchmark
