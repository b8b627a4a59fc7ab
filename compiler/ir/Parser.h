// Parses `.gir` spec text into a Graph (shapes not yet inferred; see passes/ShapeInference.h).
#pragma once

#include <string>
#include <string_view>

#include "ir/Graph.h"

namespace gradc {

// Throws gradc::Error at the first syntax or name error, with file, line and column.
// `file` names the source in messages; the model is named after its stem unless the
// spec has a `model NAME` line.
Graph parse_spec(std::string_view text, const std::string& file);

// True when `word` is a statement keyword and so cannot name a value.
bool is_keyword(std::string_view word);

}  // namespace gradc
