// The one exception type of gradc, compiler and runtime alike: a user-facing error with a
// location (a file, and a line and column where there are any).
//
// User errors (bad specs, bad files, bad arguments) throw gradc::Error; the command
// prints what() and exits with code 1. Broken internal invariants use GRADC_ASSERT,
// which also throws, so that a bug shows as a message and never as a crash.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <string_view>

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

// ---- definitions
inline std::string to_string(const SourceLoc& loc) {
  if (!loc.known()) return loc.file;
  return fmt::format("{}:{}:{}", loc.file.empty() ? "<input>" : loc.file, loc.line, loc.col);
}

inline std::string render_error(const SourceLoc& loc, const std::string& message,
                          const std::string& snippet) {
  std::string where = to_string(loc);
  std::string text = where.empty() ? fmt::format("error: {}", message)
                                   : fmt::format("{}: error: {}", where, message);
  if (!snippet.empty()) text += "\n" + snippet;
  return text;
}

inline Error::Error(SourceLoc loc, std::string message, std::string snippet)
    : std::runtime_error(render_error(loc, message, snippet)),
      loc_(std::move(loc)),
      message_(std::move(message)),
      snippet_(std::move(snippet)) {}

inline Error Error::with_source(std::string_view source) const {
  if (!loc_.known() || !snippet_.empty()) return *this;
  size_t begin = 0;
  for (int line = 1; line < loc_.line; ++line) {
    begin = source.find('\n', begin);
    if (begin == std::string_view::npos) return *this;
    ++begin;
  }
  size_t end = source.find('\n', begin);
  std::string_view text = source.substr(begin, end == std::string_view::npos ? end : end - begin);
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  std::string caret(static_cast<size_t>(std::max(loc_.col - 1, 0)), ' ');
  // Keep tabs so that the caret lines up under the column in a terminal.
  for (size_t i = 0; i < caret.size() && i < text.size(); ++i)
    if (text[i] == '\t') caret[i] = '\t';
  return Error(loc_, message_, fmt::format("{:>5} | {}\n      | {}^", loc_.line, text, caret));
}

}  // namespace gradc

// Internal invariant: a failure is a gradc bug, reported as an Error naming the place.
#define GRADC_ASSERT(cond, ...)                                                              \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw ::gradc::Error({__FILE__, __LINE__, 0},                                           \
                           "internal error: " #cond " failed: " + fmt::format(__VA_ARGS__)); \
  } while (0)
