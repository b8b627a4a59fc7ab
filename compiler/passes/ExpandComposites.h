// Expand composites: every composite op a spec names becomes its expansion (ir/Composites.cpp),
// the pipeline's first pass, so that autodiff, fusion and codegen see primitive ops only.
#pragma once

#include "ir/Graph.h"

namespace gradc {

// The graph with each composite op replaced by the ops of its expansion, in place (values keep
// their order; the expansion's result takes the op's name). A graph without composites comes
// back as it was.
Graph expand_composites(Graph g);

}  // namespace gradc
