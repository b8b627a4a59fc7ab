// Tokens of the `.gir` spec format.
//
// Statements end at a newline, except inside parentheses or brackets, so a long
// expression may span lines; inside the braces of a def body they end at newlines again. `#` starts a comment. Names are letters, digits and `_`,
// `.` inside a name (`w1.exp_avg`, as in PyTorch's state dicts), and `%` first for the
// temporaries the printer invents (`%3`). `..` is a range (`0..28`, `t..28`: never part of a
// name or a number); `-` is a minus sign after a name, a number or a closing bracket (`t-1`),
// else it starts a negative number (`[1, -1]`).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "runtime/Format.h"

namespace gradc {

enum class Tok {
  Ident, Int, Float, String, LParen, RParen, LBracket, RBracket, LBrace, RBrace, Comma, Equals, Colon,
  DotDot, Plus, Minus, Star,  // a loop's range `0..28` and the integer arithmetic of its variable
  Newline, End
};

struct Token {
  Tok kind;
  std::string text;  // as written (the unquoted value for strings)
  SourceLoc loc;
  int64_t int_value = 0;
  double float_value = 0;
};

std::string_view describe(Tok kind);     // "'('", "a name", "end of line", ...
std::string describe(const Token& tok);  // "'foo'", "end of line", ...

// Splits spec text into tokens; a stray character, an unterminated string or an
// unbalanced bracket is an Error at its position. Ends with a Newline and an End token.
std::vector<Token> lex(std::string_view text, const std::string& file);

}  // namespace gradc
