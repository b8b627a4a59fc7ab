// The suite itself: every TEST_CASE must reach CTest as one test that runs.
#include <doctest/doctest.h>

#include <filesystem>
#include <regex>

#include "TestUtil.h"

// doctest_discover_tests hands each name to CTest, which splits a name at ';' into two tests
// that each match nothing and pass without running a check. So no name may hold one.
TEST_CASE("suite: no test name holds a semicolon, which CTest would split into tests that run nothing") {
  std::regex test_case(R"re(TEST_CASE\("([^"]*)"\))re");
  int names = 0;
  for (const auto& entry : std::filesystem::directory_iterator(gradc::test::source_path("tests"))) {
    if (entry.path().extension() != ".cpp") continue;
    std::string text = gradc::test::read_file(entry.path().string());
    for (std::sregex_iterator it(text.begin(), text.end(), test_case), end; it != end; ++it) {
      std::string name = (*it)[1];
      ++names;
      CAPTURE(name);
      CHECK(name.find(';') == std::string::npos);
    }
  }
  CHECK(names > 100);
}
