// The one exception type of gradc: a user-facing error with a source location.
//
// User errors (bad specs, bad files, bad arguments) throw gradc::Error; the command
// prints what() and exits with code 1. Broken internal invariants use GRADC_ASSERT,
// which also throws, so that a bug shows as a message and never as a crash.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace gradc {

struct SourceLoc {
  std::string file;  // empty when the graph was built in C++
  int line = 0;      // 1-based; 0 = unknown
  int col = 0;       // 1-based; 0 = unknown
  bool known() const { return line > 0; }
};

std::string to_string(const SourceLoc& loc);  // "file:line:col", "file" or ""

class Error : public std::runtime_error {
 public:
  Error(SourceLoc loc, std::string message, std::string snippet = "");

  const SourceLoc& loc() const { return loc_; }
  const std::string& message() const { return message_; }
  // The offending source line with a caret under the column, when known.
  const std::string& snippet() const { return snippet_; }

  // The same error with the line of `source` that loc points at shown under it.
  Error with_source(std::string_view source) const;

 private:
  SourceLoc loc_;
  std::string message_;
  std::string snippet_;
};

template <typename... Args>
[[noreturn]] void fail(const SourceLoc& loc, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(loc, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace gradc

// Internal invariant: a failure is a gradc bug, reported as an Error naming the place.
#define GRADC_ASSERT(cond, ...)                                                              \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw ::gradc::Error({__FILE__, __LINE__, 0},                                           \
                           "internal error: " #cond " failed: " + fmt::format(__VA_ARGS__)); \
  } while (0)
