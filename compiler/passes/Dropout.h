#pragma once

#include "ir/Graph.h"

namespace gradc {

// The train step's dropout: each dropout(x, rate) becomes x * dropout_mask(seed, step) with its
// own stream, beside two states (passes/Dropout.cpp). A graph without dropout is returned as is.
Graph lower_dropout(Graph g);

}  // namespace gradc
