// Replays what the fuzzer drives (fuzz/FuzzPipeline.h) on the inputs that once crashed it, and on
// the sample specs, which the whole pipeline must take.
#include <doctest/doctest.h>

#include <filesystem>

#include "TestUtil.h"
#include "fuzz/FuzzPipeline.h"

TEST_CASE("fuzz: every kept regression input is refused or taken without a crash") {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(gradc::test::source_path("tests/fuzz_regressions"))) {
    if (entry.path().extension() == ".md") continue;
    CAPTURE(entry.path().string());
    gradc::fuzz::run_pipeline(gradc::test::read_file(entry.path().string()));  // aborts or crashes on a bug
    ++files;
  }
  MESSAGE(files, " regression inputs replayed");
}

TEST_CASE("fuzz: the sample specs, the fuzzer's seeds, go through the whole pipeline") {
  for (const std::string& path : gradc::test::sample_specs()) {
    CAPTURE(path);
    CHECK(gradc::fuzz::run_pipeline(gradc::test::read_file(gradc::test::source_path(path))));
  }
  CHECK_FALSE(gradc::fuzz::run_pipeline("model m\ninput x : f32[2]\noutput y = matmul(x, x)\n"));
}
