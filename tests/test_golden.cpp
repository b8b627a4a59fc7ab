// Golden dumps (as the Toy tutorial's CHECK lines): the fused and plan stages of every sample
// spec, compared with tests/golden/. A change to fusion or planning shows here as text; when it
// is intended, scripts/update_golden rewrites the files and the diff goes into the commit.
#include <doctest/doctest.h>

#include <filesystem>
#include <sstream>

#include "TestUtil.h"
#include "gradc/gradc.h"

namespace gradc {

namespace {

// The text without lines that start with `prefix`.
std::string without_lines(const std::string& text, std::string_view prefix) {
  std::istringstream in(text);
  std::string out, line;
  while (std::getline(in, line))
    if (!line.starts_with(prefix)) out += line + "\n";
  return out;
}

// The first line where the two differ, for the failure message.
std::string first_difference(const std::string& got, const std::string& want) {
  std::istringstream a(got), b(want);
  std::string x, y;
  for (int line = 1;; ++line) {
    bool more_a = static_cast<bool>(std::getline(a, x)), more_b = static_cast<bool>(std::getline(b, y));
    if (!more_a && !more_b) return "";
    if (x != y || more_a != more_b)
      return fmt::format("line {}: got \"{}\", golden \"{}\"", line, more_a ? x : "(end)", more_b ? y : "(end)");
  }
}

}  // namespace

TEST_CASE("golden: the fused and plan stages of every sample spec are the ones in tests/golden") {
  int compared = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::source_path("samples/specs"))) {
    if (entry.path().extension() != ".gir") continue;
    std::string name = entry.path().stem().string();
    Graph g = load_spec_file(entry.path().string());
    // The plan's "# memory" line counts the GEMM scratch, which depends on the host's vector width.
    for (auto [stage, text] : {std::pair{std::string("fused"), dump(g, Stage::Fused)},
                               std::pair{std::string("plan"), without_lines(dump(g, Stage::Plan), "# memory")}}) {
      std::string golden = test::read_file(test::source_path(fmt::format("tests/golden/{}.{}", name, stage)));
      INFO(name, " --stage ", stage, ": ", first_difference(text, golden),
           " (if the change is intended: scripts/update_golden, then read git diff tests/golden)");
      CHECK(text == golden);
      ++compared;
    }
  }
  CHECK(compared >= 14);
}

}  // namespace gradc
