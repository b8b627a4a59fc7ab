#include "ir/Error.h"

namespace gradc {

std::string to_string(const SourceLoc& loc) {
  if (!loc.known()) return loc.file;
  return fmt::format("{}:{}:{}", loc.file.empty() ? "<input>" : loc.file, loc.line, loc.col);
}

static std::string render(const SourceLoc& loc, const std::string& message,
                          const std::string& snippet) {
  std::string where = to_string(loc);
  std::string text = where.empty() ? fmt::format("error: {}", message)
                                   : fmt::format("{}: error: {}", where, message);
  if (!snippet.empty()) text += "\n" + snippet;
  return text;
}

Error::Error(SourceLoc loc, std::string message, std::string snippet)
    : std::runtime_error(render(loc, message, snippet)),
      loc_(std::move(loc)),
      message_(std::move(message)),
      snippet_(std::move(snippet)) {}

Error Error::with_source(std::string_view source) const {
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
