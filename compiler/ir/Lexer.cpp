#include "ir/Lexer.h"

#include <cctype>
#include <charconv>

namespace gradc {

std::string_view describe(Tok kind) {
  switch (kind) {
    case Tok::Ident: return "a name";
    case Tok::Int: return "an integer";
    case Tok::Float: return "a number";
    case Tok::String: return "a string";
    case Tok::LParen: return "'('";
    case Tok::RParen: return "')'";
    case Tok::LBracket: return "'['";
    case Tok::RBracket: return "']'";
    case Tok::LBrace: return "'{'";
    case Tok::RBrace: return "'}'";
    case Tok::Comma: return "','";
    case Tok::Equals: return "'='";
    case Tok::Colon: return "':'";
    case Tok::DotDot: return "'..'";
    case Tok::Plus: return "'+'";
    case Tok::Minus: return "'-'";
    case Tok::Star: return "'*'";
    case Tok::Newline: return "end of line";
    case Tok::End: return "end of file";
  }
  return "?";
}

std::string describe(const Token& tok) {
  switch (tok.kind) {
    case Tok::Ident:
    case Tok::Int:
    case Tok::Float: return fmt::format("'{}'", shortened(tok.text));  // a token may be a megabyte long
    case Tok::String: return fmt::format("string \"{}\"", shortened(tok.text));
    default: return std::string(describe(tok.kind));
  }
}

namespace {

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == '%'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  Lexer(std::string_view text, const std::string& file) : text_(text), file_(file) {}

  std::vector<Token> run() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == '\n') {
        if (depth_.empty() || depth_.back().kind == Tok::LBrace) push(Tok::Newline, "\n", here());
        advance();
      } else if (c == ' ' || c == '\t' || c == '\r') {
        advance();
      } else if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') advance();
      } else if (is_name_start(c)) {
        name();
      } else if (starts_number()) {
        number();
      } else if (c == '"') {
        string();
      } else {
        punct(c);
      }
    }
    if (!depth_.empty())
      fail(depth_.back().loc, "'{}' is never closed", depth_.back().text);
    push(Tok::Newline, "\n", here());
    push(Tok::End, "", here());
    return std::move(tokens_);
  }

 private:
  SourceLoc here() const { return {file_, line_, col_}; }

  char at(size_t i) const { return i < text_.size() ? text_[i] : '\0'; }
  bool range_dots() const { return at(pos_) == '.' && at(pos_ + 1) == '.'; }

  // A digit, `.5`, or a `-` that is a sign: `-1`, `-.5`; but `t-1` and `(t)-1` subtract, and
  // `..` is a range. (`-..`, `-.` stay a number, so that they are reported as malformed.)
  bool starts_number() const {
    char c = at(pos_), c1 = at(pos_ + 1);
    if (is_digit(c)) return true;
    if (c == '.') return is_digit(c1);
    if (c != '-' || !(is_digit(c1) || c1 == '.')) return false;
    if (tokens_.empty()) return true;
    Tok prev = tokens_.back().kind;
    return prev != Tok::Ident && prev != Tok::Int && prev != Tok::Float && prev != Tok::RParen &&
           prev != Tok::RBracket;
  }

  void advance() {
    if (text_[pos_] == '\n') {
      ++line_;
      col_ = 1;
    } else {
      ++col_;
    }
    ++pos_;
  }

  Token& push(Tok kind, std::string text, SourceLoc loc) {
    tokens_.push_back({kind, std::move(text), std::move(loc)});
    return tokens_.back();
  }

  void name() {
    SourceLoc loc = here();
    size_t start = pos_;
    advance();
    while (pos_ < text_.size() && is_name_char(text_[pos_]) && !range_dots()) advance();
    std::string_view word = text_.substr(start, pos_ - start);
    if (word == "%") fail(loc, "expected a name after '%'");
    push(Tok::Ident, std::string(word), loc);
  }

  void number() {
    SourceLoc loc = here();
    size_t start = pos_;
    bool is_float = false;
    if (text_[pos_] == '-') advance();
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (is_digit(c)) {
        advance();
      } else if (c == '.') {
        if (range_dots() && pos_ > start) break;  // `0..28`
        is_float = true;
        advance();
      } else if ((c == 'e' || c == 'E') && pos_ + 1 < text_.size()) {
        is_float = true;
        advance();
        if (text_[pos_] == '+' || text_[pos_] == '-') advance();
      } else {
        break;
      }
    }
    if (pos_ < text_.size() && is_name_char(text_[pos_]) && !range_dots())
      fail(here(), "unexpected '{}' in a number", text_[pos_]);
    std::string word(text_.substr(start, pos_ - start));
    const char* first = word.data();
    const char* last = word.data() + word.size();
    Token& tok = push(is_float ? Tok::Float : Tok::Int, word, loc);
    if (is_float) {
      auto [p, ec] = std::from_chars(first, last, tok.float_value);
      if (ec == std::errc::result_out_of_range) fail(loc, "number '{}' is out of range", shortened(word));
      if (ec != std::errc() || p != last) fail(loc, "malformed number '{}'", shortened(word));
    } else {
      auto [p, ec] = std::from_chars(first, last, tok.int_value);
      if (ec == std::errc::result_out_of_range) fail(loc, "integer '{}' is too large", shortened(word));
      if (ec != std::errc() || p != last) fail(loc, "malformed number '{}'", shortened(word));
    }
  }

  void string() {
    SourceLoc loc = here();
    advance();
    std::string value;
    while (true) {
      if (pos_ >= text_.size() || text_[pos_] == '\n') fail(loc, "string is never closed");
      char c = text_[pos_];
      advance();
      if (c == '"') break;
      if (c == '\\') {
        if (pos_ >= text_.size()) fail(loc, "string is never closed");
        char e = text_[pos_];
        advance();
        if (e == 'n') value += '\n';
        else if (e == '"' || e == '\\') value += e;
        else fail(loc, "unknown escape '\\{}' in a string", e);
        continue;
      }
      value += c;
    }
    push(Tok::String, std::move(value), loc);
  }

  void punct(char c) {
    SourceLoc loc = here();
    Tok kind;
    switch (c) {
      case '(': kind = Tok::LParen; break;
      case ')': kind = Tok::RParen; break;
      case '[': kind = Tok::LBracket; break;
      case ']': kind = Tok::RBracket; break;
      case '{': kind = Tok::LBrace; break;
      case '}': kind = Tok::RBrace; break;
      case ',': kind = Tok::Comma; break;
      case '=': kind = Tok::Equals; break;
      case ':': kind = Tok::Colon; break;
      case '+': kind = Tok::Plus; break;
      case '-': kind = Tok::Minus; break;
      case '*': kind = Tok::Star; break;
      case '.':
        if (!range_dots()) fail(loc, "unexpected character '.'");
        push(Tok::DotDot, "..", loc);
        advance();
        advance();
        return;
      default: {
        unsigned char u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f)
          fail(loc, "unexpected byte 0x{:02x} (a spec is plain text)", u);
        fail(loc, "unexpected character '{}'", c);
      }
    }
    if (kind == Tok::LParen || kind == Tok::LBracket || kind == Tok::LBrace) {
      depth_.push_back({kind, std::string(1, c), loc});
    } else if (kind == Tok::RParen || kind == Tok::RBracket || kind == Tok::RBrace) {
      Tok open = kind == Tok::RParen ? Tok::LParen : kind == Tok::RBracket ? Tok::LBracket : Tok::LBrace;
      if (depth_.empty()) fail(loc, "'{}' has no matching opening bracket", c);
      if (depth_.back().kind != open)
        fail(loc, "'{}' closes '{}' opened at {}:{}", c, depth_.back().text, depth_.back().loc.line,
             depth_.back().loc.col);
      depth_.pop_back();
    }
    push(kind, std::string(1, c), loc);
    advance();
  }

  std::string_view text_;
  const std::string& file_;
  size_t pos_ = 0;
  int line_ = 1;
  int col_ = 1;
  std::vector<Token> depth_;  // open brackets and braces, for multi-line expressions and their errors
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view text, const std::string& file) {
  return Lexer(text, file).run();
}

}  // namespace gradc
