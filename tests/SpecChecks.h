// Checks shared by the tests of the spec's own syntax (functions, loops): a misuse refused at
// its place through the gradc command, and a training-graph dump that parses back and compiles
// to the same step.
#pragma once

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "TestUtil.h"
#include "gradc/gradc.h"

namespace gradc::test {

// A spec the parser must refuse at line:col, with every piece of `message` in the error.
struct BadSpec {
  std::string what;
  std::string text;
  int line;
  int col;
  std::vector<std::string> message;  // every piece must appear
};

// Each case through `gradc dump`: exit code 1, nothing on stdout, the error at its place.
inline void check_refused(const std::vector<BadSpec>& cases, const std::string& file_prefix) {
  for (size_t i = 0; i < cases.size(); ++i) {
    const BadSpec& c = cases[i];
    CAPTURE(c.what);
    std::string path = write_temp(fmt::format("{}{}.gir", file_prefix, i), c.text);
    CommandResult r = run_gradc("dump " + path);
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CAPTURE(r.err);
    CHECK(r.err.rfind(fmt::format("{}:{}:{}: error: ", path, c.line, c.col), 0) == 0);
    for (const std::string& piece : c.message) CHECK(r.err.find(piece) != std::string::npos);
  }
}

// `gradc dump --stage train` of `text` holds no `keyword` (the syntax is gone from it), dumps
// again to itself, and compiles to a step with the same losses as `text`'s for `steps` steps.
inline void check_train_dump_round_trip(const std::string& text, const std::string& name, const std::string& keyword,
                                        int steps) {
  std::string spec = write_temp(name + ".gir", text);
  CommandResult train = run_gradc("dump " + spec + " --stage train");
  REQUIRE(train.exit_code == 0);
  CHECK(train.out.find(keyword) == std::string::npos);
  std::string dumped = write_temp(name + "_train.gir", train.out);
  CommandResult again = run_gradc("dump " + dumped);
  CHECK(again.exit_code == 0);
  CHECK(again.out == train.out);
  CompileOptions no_cache{.cache_dir = ""};
  Model original = compile_string(text, name + ".gir", no_cache);
  Model from_dump = compile_string(train.out, "dumped.gir", no_cache);
  Session a(original, {.seed = 3});
  Session b(from_dump, {.seed = 3});
  std::map<std::string, Tensor> inputs = random_inputs(original.spec, 5);
  Feeds feeds(inputs.begin(), inputs.end());
  for (int step = 0; step < steps; ++step) CHECK(a.step(feeds) == b.step(feeds));
}

}  // namespace gradc::test
