// The examples fed to a spec's inputs by gradc train, eval and predict: one Source per input.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "gradc/Graph.h"
#include "gradc/Tensor.h"

namespace gradc {

// One input's examples: the rows along the leading dim of `data`.
struct Source {
  std::string input;
  std::string file;  // where they came from, for messages
  TensorType type;   // the spec's input (gradc train)
  Tensor data;
  Tensor batch;  // gradc train: the rows of the current batch, [B, ...] as in `data`
};

const Source* find_source(const std::vector<Source>& sources, const std::string& name);

// The sources of `--input NAME=FILE.npy` options (name, file): each names an input of the spec,
// once. A message about input `name` begins with where(name) ("--input x", "gradc eval");
// `before_load` may refuse an input before its file is read, `after_load` a source (its file
// read) given the ones before it.
struct SourceChecks {
  std::function<std::string(const std::string& name)> where;
  std::function<void(const Node& input)> before_load = nullptr;
  std::function<void(const Source& source, const std::vector<Source>& earlier)> after_load = nullptr;
};
std::vector<Source> npy_sources(const Graph& spec, const std::vector<std::pair<std::string, std::string>>& files,
                                const SourceChecks& checks);

}  // namespace gradc
