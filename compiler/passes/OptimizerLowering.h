// Optimizer lowering: the `minimize` statement becomes state tensors and assign statements.
#pragma once

#include "passes/Autodiff.h"

namespace gradc {

// Appends the optimizer's update rule for every param with a gradient, as torch.optim defines
// it (see OptimizerLowering.cpp), and returns the training graph: new `state` leaves (moments,
// step count), one `assign` per param and state, no `minimize`, and the loss as its first output.
// The result is an ordinary spec: printed, it parses and runs the same step.
Graph lower_optimizer(Differentiated d);

}  // namespace gradc
