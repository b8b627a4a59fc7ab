// The `gradc` command. User errors print one message and exit with code 1.
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "gradc/gradc.h"

int main(int argc, char** argv) {
  CLI::App app{"gradc: a static computation-graph compiler for training neural networks", "gradc"};
  app.set_version_flag("--version", gradc::version_string());
  app.require_subcommand(1);

  std::string spec, stage_text = "parsed";
  bool dot = false;
  CLI::App* dump = app.add_subcommand("dump", "Print the model at a stage of the pipeline");
  dump->add_option("SPEC", spec, "the model spec (.gir)")->required();
  dump->add_option("--stage", stage_text, "parsed|grad|train|simplified|fused|plan|llvm|asm")
      ->check(CLI::IsMember({"parsed", "grad", "train", "simplified", "fused", "plan", "llvm", "asm"}))
      ->capture_default_str();
  dump->add_flag("--dot", dot, "print a Graphviz digraph instead of spec text");

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 1;
  }

  try {
    if (dump->parsed()) {
      gradc::Graph g = gradc::load_spec_file(spec);
      std::cout << gradc::dump(g, *gradc::parse_stage(stage_text), dot);
    }
    return 0;
  } catch (const gradc::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "gradc: internal error: " << e.what() << "\n";
    return 1;
  }
}
