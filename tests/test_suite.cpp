// The suite itself: every TEST_CASE must reach CTest as one test that runs.
#include <doctest/doctest.h>

#include <filesystem>

#include "TestUtil.h"

// doctest_discover_tests hands each name to CTest, which splits a name at ';' into two tests
// that each match nothing and pass without running a check. So no name may hold one.
TEST_CASE("suite: no test name holds a semicolon, which CTest would split into tests that run nothing") {
  const std::string marker = "TEST_CASE(\"";
  int names = 0;
  for (const auto& entry : std::filesystem::directory_iterator(gradc::test::source_path("tests"))) {
    if (entry.path().extension() != ".cpp") continue;
    std::string text = gradc::test::read_file(entry.path().string());
    for (size_t at = text.find(marker); at != std::string::npos; at = text.find(marker, at + 1)) {
      size_t begin = at + marker.size(), end = text.find('"', begin);
      std::string name = text.substr(begin, end - begin);
      if (name.empty()) continue;  // the marker itself, spelled in this file
      ++names;
      CAPTURE(name);
      CHECK(name.find(';') == std::string::npos);
    }
  }
  CHECK(names > 100);
}
