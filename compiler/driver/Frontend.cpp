// The front of the pipeline behind <gradc/gradc.h>: text -> parsed, typed, verified Graph,
// and the dumps of each stage.
#include <filesystem>

#include "driver/Pipeline.h"
#include "gradc/gradc.h"
#include "ir/Parser.h"
#include "ir/Printer.h"
#include "ir/Verifier.h"
#include "passes/ShapeInference.h"
#include "runtime/File.h"

namespace gradc {

Graph load_spec(std::string_view text, const std::string& file) {
  try {
    Graph g = infer_shapes(parse_spec(text, file));
    verify_or_throw(g);
    return g;
  } catch (const Error& e) {
    throw e.with_source(text);
  }
}

Graph load_spec_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail({path}, "no such file");
  // InputFile refuses a directory, FIFO, device or socket without opening it, so none is waited on.
  InputFile in(path);
  std::string text(in.size(), '\0');
  in.read(text.data(), text.size());
  return load_spec(text, path);
}

static constexpr std::pair<Stage, std::string_view> kStages[] = {
    {Stage::Parsed, "parsed"}, {Stage::Grad, "grad"},   {Stage::Train, "train"}, {Stage::Simplified, "simplified"},
    {Stage::Fused, "fused"},   {Stage::Plan, "plan"},   {Stage::Llvm, "llvm"},   {Stage::Asm, "asm"},
};

std::string_view stage_name(Stage s) {
  for (auto [stage, name] : kStages)
    if (stage == s) return name;
  return "?";
}

std::vector<std::string> stage_names() {
  std::vector<std::string> names;
  for (auto [stage, name] : kStages) names.emplace_back(name);
  return names;
}

std::optional<Stage> parse_stage(std::string_view name) {
  for (auto [stage, n] : kStages)
    if (n == name) return stage;
  return std::nullopt;
}

// Each stage's graph comes from the pipeline (driver/Pipeline.cpp), verified after every pass.
std::string dump_lowered(const std::string& name, const Lowered& l, Stage stage);  // Compile.cpp

namespace {

// The stages after the graph stages print `lowered` (a compiled Model's programs), or g lowered now.
std::string dump_stage(const Graph& g, Stage stage, bool dot, const Lowered* lowered) {
  Graph staged;
  switch (stage) {
    case Stage::Parsed: staged = g; break;
    case Stage::Grad: staged = grad_graph(g); break;
    case Stage::Train: staged = train_graph(g); break;
    case Stage::Simplified: staged = simplified_graph(g); break;
    case Stage::Fused:
    case Stage::Plan:
    case Stage::Llvm:
    case Stage::Asm:
      if (dot) fail({}, "--dot draws graph stages; stage '{}' is text", stage_name(stage));
      return lowered ? dump_lowered(g.name, *lowered, stage) : dump_lowered(g.name, lower(g), stage);
  }
  return dot ? print_dot(staged) : print_spec(staged);
}

}  // namespace

std::string dump(const Graph& g, Stage stage, bool dot) { return dump_stage(g, stage, dot, nullptr); }

std::string Model::dump(Stage stage, bool dot) const { return dump_stage(spec, stage, dot, lowered.get()); }

}  // namespace gradc
