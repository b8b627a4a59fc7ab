// The one exception type of gradc, compiler and runtime alike: a user-facing error with a
// location (a file, and a line and column where there are any).
//
// User errors (bad specs, bad files, bad arguments) throw gradc::Error; the command
// prints what() and exits with code 1. Broken internal invariants use GRADC_ASSERT,
// which also throws, so that a bug shows as a message and never as a crash. fail() and
// GRADC_ASSERT format with fmt, so they live in runtime/Format.h: public headers need
// nothing beyond the standard library.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gradc {

// A call of a spec's function (`def`), for a node inlined from its body, or an iteration of a
// `for` loop, for a node unrolled from its body: errors about the node name the line in the body
// and, below it, each call and iteration that brought the body there.
struct CallSite {
  std::string function;  // the function called; for an iteration, the loop's variable
  std::string file;
  int line = 0;
  int col = 0;
  int64_t iteration = -1;  // >= 0: the loop variable's value in an iteration (file:line:col is the loop's)
};

struct SourceLoc {
  std::string file;  // empty when the graph was built in C++
  int line = 0;      // 1-based; 0 = unknown
  int col = 0;       // 1-based; 0 = unknown
  std::vector<CallSite> called_from = {};  // innermost first; empty outside function and loop bodies
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

// ---- definitions
inline std::string to_string(const SourceLoc& loc) {
  if (!loc.known()) return loc.file;
  return (loc.file.empty() ? "<input>" : loc.file) + ":" + std::to_string(loc.line) + ":" + std::to_string(loc.col);
}

// "\n  in the call of 'dense' at m.gir:9:5" for each call a node was inlined through, and
// "\n  in iteration t=5 of the loop at m.gir:7:1" for each loop iteration it was unrolled in.
inline std::string call_notes(const SourceLoc& loc) {
  std::string notes;
  for (const CallSite& c : loc.called_from) {  // appended piecewise: GCC 12 warns (-Wrestrict) on "\n" + string
    if (c.iteration >= 0) {
      notes += "\n  in iteration ";
      notes += c.function;
      notes += "=";
      notes += std::to_string(c.iteration);
      notes += " of the loop at ";
    } else {
      notes += "\n  in the call of '";
      notes += c.function;
      notes += "' at ";
    }
    notes += to_string(SourceLoc{c.file, c.line, c.col, {}});
  }
  return notes;
}

inline std::string render_error(const SourceLoc& loc, const std::string& message,
                          const std::string& snippet) {
  std::string where = to_string(loc);
  std::string text = where.empty() ? "error: " + message : where + ": error: " + message;
  if (!snippet.empty()) text += "\n" + snippet;
  return text + call_notes(loc);
}

// A message of at most about kMaxMessageBytes: its head and tail around a note of what was cut
// (never inside a UTF-8 sequence). A value echoed whole, a transpose's perm of 100,000 axes,
// made a 689 KB message.
inline constexpr size_t kMaxMessageBytes = 2000;
inline std::string bounded_message(std::string m) {
  if (m.size() <= kMaxMessageBytes) return m;
  auto boundary = [&](size_t i) {  // back to the start of a UTF-8 sequence
    while (i > 0 && (static_cast<unsigned char>(m[i]) & 0xC0) == 0x80) --i;
    return i;
  };
  size_t head = boundary(kMaxMessageBytes * 3 / 4), tail = boundary(m.size() - kMaxMessageBytes / 4);
  return m.substr(0, head) + " ... [" + std::to_string(tail - head) + " bytes cut] ... " + m.substr(tail);
}

inline Error::Error(SourceLoc loc, std::string message, std::string snippet)
    : std::runtime_error(render_error(loc, bounded_message(message), snippet)),
      loc_(std::move(loc)),
      message_(bounded_message(std::move(message))),
      snippet_(std::move(snippet)) {}

// A window of `line` around byte `at` (0-based) for a message: the whole line when it has at
// most `width` bytes, else `width` bytes around `at` with "..." where it was cut (never inside
// a UTF-8 sequence). `col` is where byte `at` lands in `text`, for the caret.
struct Excerpt {
  std::string text;
  size_t col = 0;
};

inline Excerpt excerpt(std::string_view line, size_t at, size_t width = 80) {
  at = std::min(at, line.size());
  if (line.size() <= width) return {std::string(line), at};
  size_t begin = at > width / 2 ? at - width / 2 : 0;
  size_t end = std::min(line.size(), begin + width);
  begin = end - std::min(end, width);  // a window that ends at the line's end starts earlier
  auto continuation = [&](size_t i) { return i < line.size() && (static_cast<unsigned char>(line[i]) & 0xC0) == 0x80; };
  while (begin > 0 && continuation(begin)) --begin;
  while (continuation(end)) ++end;
  std::string text = begin > 0 ? "..." : "";
  size_t col = at - begin + text.size();
  text += line.substr(begin, end - begin);
  if (end < line.size()) text += "...";
  return {std::move(text), col};
}

// `text` for quoting in a message: itself when short, else its first `width` bytes and "...".
inline std::string shortened(std::string_view text, size_t width = 40) {
  if (text.size() <= width) return std::string(text);
  return excerpt(text, 0, width).text;
}

inline Error Error::with_source(std::string_view source) const {
  if (!loc_.known() || !snippet_.empty()) return *this;
  size_t begin = 0;
  for (int line = 1; line < loc_.line; ++line) {
    begin = source.find('\n', begin);
    if (begin == std::string_view::npos) return *this;
    ++begin;
  }
  size_t end = source.find('\n', begin);
  std::string_view line = source.substr(begin, end == std::string_view::npos ? end : end - begin);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // A long line is cut around the column, so that an error in a 1 MB line prints a line, not 2 MB.
  Excerpt shown = excerpt(line, static_cast<size_t>(std::max(loc_.col - 1, 0)));
  std::string caret(shown.col, ' ');
  // Keep tabs so that the caret lines up under the column in a terminal.
  for (size_t i = 0; i < caret.size() && i < shown.text.size(); ++i)
    if (shown.text[i] == '\t') caret[i] = '\t';
  std::string number = std::to_string(loc_.line);
  if (number.size() < 5) number.insert(0, 5 - number.size(), ' ');  // right-aligned in 5 columns
  return Error(loc_, message_, number + " | " + shown.text + "\n      | " + caret + "^");
}

}  // namespace gradc
