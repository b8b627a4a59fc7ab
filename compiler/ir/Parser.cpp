// Recursive-descent parser for the `.gir` spec format (grammar in DESIGN.md):
//
//   spec      := { statement NEWLINE }
//   statement := "model" NAME | ("input" | "param" | "state") NAME ":" type ["=" init]
//              | "output" NAME [":" type] ["=" expr] | "minimize" NAME "with" call
//              | "assign" NAME "=" expr | NAME [":" type] "=" expr
//   expr      := NUMBER | NAME | NAME "(" [expr {"," expr}] {"," NAME "=" attr} ")"
//   attr      := NUMBER | "true" | "false" | NAME | STRING | "[" [INT {"," INT}] "]"
//
// Each op call becomes a node; names bind to the node of their expression. Shapes are left
// to shape inference, so the parser only checks what it alone can see: syntax, names, ops,
// arities and attribute spellings.
#include "ir/Parser.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "ir/Lexer.h"

namespace gradc {

bool is_keyword(std::string_view w) {
  return w == "model" || w == "input" || w == "param" || w == "state" || w == "output" ||
         w == "minimize" || w == "assign" || w == "with" || w == "true" || w == "false";
}

namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean 'relu'?)" when one candidate is close, else "".
std::string suggestion(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string_view best;
  size_t best_distance = 3;
  for (std::string_view c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_distance && d < word.size()) {  // for `q`, every one-letter name is as near
      best = c;
      best_distance = d;
    }
  }
  return best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best);
}

class Parser {
 public:
  Parser(std::string_view text, const std::string& file) : tokens_(lex(text, file)), file_(file) {
    graph_.name = std::filesystem::path(file).stem().string();
    if (graph_.name.empty()) graph_.name = "model";
  }

  Graph run() {
    bool any = false;
    while (peek().kind != Tok::End) {
      if (accept(Tok::Newline)) continue;
      statement(any);
      any = true;
      if (peek().kind != Tok::Newline)
        fail(peek().loc, "expected end of line after the statement, got {}", describe(peek()));
    }
    if (!any) fail({file_, 1, 1}, "the spec is empty: expected statements such as 'input x : f32[64, 784]'");
    return std::move(graph_);
  }

 private:
  // ---- tokens
  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  Token next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }
  bool accept(Tok kind) {
    if (peek().kind != kind) return false;
    ++pos_;
    return true;
  }
  Token expect(Tok kind, std::string_view what) {
    if (peek().kind != kind) fail(peek().loc, "expected {} {}, got {}", describe(kind), what, describe(peek()));
    return next();
  }
  bool at_word(std::string_view w) const { return peek().kind == Tok::Ident && peek().text == w; }

  // A name being defined: not a keyword, not taken.
  Token new_name(std::string_view what) {
    Token tok = expect(Tok::Ident, what);
    if (is_keyword(tok.text)) fail(tok.loc, "'{}' is a keyword and cannot name a value", tok.text);
    if (find_op(tok.text)) fail(tok.loc, "'{}' is an op and cannot name a value", tok.text);
    if (auto it = defined_.find(tok.text); it != defined_.end())
      fail(tok.loc, "'{}' is already defined at line {}", shortened(tok.text), it->second.loc.line);
    return tok;
  }

  ValueId define(Node node, const Token& name_tok) {
    node.name = name_tok.text;
    ValueId id = graph_.add(std::move(node));
    defined_[name_tok.text] = {id, name_tok.loc};
    return id;
  }

  ValueId lookup(const Token& tok) {
    if (auto it = defined_.find(tok.text); it != defined_.end()) return it->second.id;
    std::vector<std::string_view> names;
    for (const auto& [name, loc] : defined_) names.push_back(name);
    if (find_op(tok.text))
      fail(tok.loc, "'{}' is an op: call it as {}(...)", tok.text, tok.text);
    fail(tok.loc, "'{}' is not defined{}", shortened(tok.text), suggestion(tok.text, names));
  }

  // ---- statements
  void statement(bool any) {
    const Token& head = peek();
    if (head.kind != Tok::Ident)
      fail(head.loc, "expected a statement (a name, or one of model, input, param, state, output, "
                     "minimize, assign), got {}", describe(head));
    if (head.text == "model") return model(any);
    if (head.text == "input") return leaf(NodeKind::Input);
    if (head.text == "param") return leaf(NodeKind::Param);
    if (head.text == "state") return leaf(NodeKind::State);
    if (head.text == "output") return output();
    if (head.text == "minimize") return minimize();
    if (head.text == "assign") return assign();
    definition();
  }

  void model(bool any) {
    Token kw = next();
    if (any) fail(kw.loc, "'model' must be the first statement of the spec");
    graph_.name = expect(Tok::Ident, "after 'model'").text;
  }

  void leaf(NodeKind kind) {
    Token kw = next();
    Token name = new_name(fmt::format("after '{}'", kw.text));
    expect(Tok::Colon, fmt::format("and a type after '{}' (like {} : f32[64, 784])", name.text, name.text));
    Node node;
    node.kind = kind;
    node.loc = name.loc;
    node.type = type();
    if (accept(Tok::Equals)) {
      if (kind == NodeKind::Input) fail(tokens_[pos_ - 1].loc, "an input has no initializer");
      node.init = init();
    } else if (kind == NodeKind::Param) {
      // Keras's Dense defaults: glorot_uniform kernels, zero biases.
      node.init = Init{node.type.rank() >= 2 ? "glorot_uniform" : "zeros", {}};
    } else if (kind == NodeKind::State) {
      node.init = Init{"zeros", {}};
    }
    define(std::move(node), name);
  }

  void definition() {
    Token name = new_name("to define");
    std::optional<TensorType> declared;
    if (accept(Tok::Colon)) declared = type();
    expect(Tok::Equals, fmt::format("after '{}'", name.text));
    value_statement(name, declared);
  }

  // `NAME [: TYPE] = EXPR` and the same after `output`: binds the name to a new node.
  ValueId value_statement(const Token& name, const std::optional<TensorType>& declared) {
    const Token& start = peek();
    if (start.kind == Tok::Ident && peek(1).kind != Tok::LParen)
      fail(start.loc, "'{} = {}' only renames a value; use '{}' where '{}' is needed", name.text,
           start.text, start.text, name.text);
    ValueId id = expr();
    Node& node = graph_[id];
    if (node.kind == NodeKind::Constant) {
      node.weak = false;  // a named constant has a type of its own: as declared, else f32
      node.type = TensorType{declared ? declared->dtype : DType::F32, {}};
    }
    node.declared = declared;
    node.name = name.text;
    defined_[name.text] = {id, name.loc};
    return id;
  }

  void output() {
    Token kw = next();
    const Token& name = peek();
    if (name.kind == Tok::Ident && peek(1).kind != Tok::Equals && peek(1).kind != Tok::Colon) {
      Token named = next();
      ValueId v = lookup(named);
      for (const Output& o : graph_.outputs)  // predict returns outputs by name: one each
        if (o.value == v) fail(named.loc, "'{}' is already an output (line {})", shortened(named.text), o.loc.line);
      graph_.outputs.push_back({v, name.loc});
      return;
    }
    Token defined = new_name("after 'output'");
    std::optional<TensorType> declared;
    if (accept(Tok::Colon)) declared = type();
    expect(Tok::Equals, fmt::format("after 'output {}'", defined.text));
    graph_.outputs.push_back({value_statement(defined, declared), defined.loc});
  }

  void minimize() {
    Token kw = next();
    if (graph_.minimize) fail(kw.loc, "a spec minimizes one loss; the first 'minimize' is at line {}", graph_.minimize->loc.line);
    Token loss = expect(Tok::Ident, "(the loss) after 'minimize'");
    ValueId id = lookup(loss);
    if (!at_word("with")) fail(peek().loc, "expected 'with' and an optimizer after 'minimize {}', got {}", loss.text, describe(peek()));
    next();
    Token opt = expect(Tok::Ident, "(an optimizer such as adam(lr=0.001)) after 'with'");
    const std::vector<AttrSpec>* schema = optimizer_schema(opt.text);
    if (!schema)
      fail(opt.loc, "unknown optimizer '{}' (expected one of: {})", shortened(opt.text), optimizer_names());
    graph_.minimize = Minimize{id, Optimizer{opt.text, call_attrs(*schema, opt)}, kw.loc};
  }

  void assign() {
    Token kw = next();
    Token target = expect(Tok::Ident, "(a param or state) after 'assign'");
    ValueId id = lookup(target);
    expect(Tok::Equals, fmt::format("after 'assign {}'", target.text));
    graph_.assigns.push_back({id, expr(), target.loc});
  }

  // ---- types, initializers, attributes
  TensorType type() {
    Token dt = expect(Tok::Ident, "(a type such as f32[64, 784])");
    std::optional<DType> dtype = parse_dtype(dt.text);
    if (!dtype) fail(dt.loc, "unknown type '{}' (expected f32, f64 or i32)", shortened(dt.text));
    expect(Tok::LBracket, fmt::format("after '{}' (a shape such as {}[64, 784], or {}[] for a scalar)", dt.text, dt.text, dt.text));
    TensorType t{*dtype, {}};
    if (accept(Tok::RBracket)) return t;
    do {
      Token d = next();
      if (d.kind != Tok::Int || d.int_value <= 0)
        fail(d.loc, "a dimension must be a positive integer, got {}", describe(d));
      if (t.rank() == kMaxRank) fail(d.loc, "a shape has at most {} dimensions (gradc's limit)", kMaxRank);
      t.shape.push_back(d.int_value);
    } while (accept(Tok::Comma));
    expect(Tok::RBracket, "to close the shape");
    if (!checked_numel(t.shape))
      fail(dt.loc, "{} has more than 2^48 elements", to_string(t));
    return t;
  }

  Init init() {
    Token kind = expect(Tok::Ident, "(an initializer such as glorot_uniform)");
    const std::vector<AttrSpec>* schema = init_schema(kind.text);
    if (!schema) fail(kind.loc, "unknown initializer '{}' (expected one of: {})", shortened(kind.text), init_names());
    if (peek().kind != Tok::LParen) return Init{kind.text, bind_attrs(*schema, kind.text, {}, {}, kind.loc)};
    return Init{kind.text, call_attrs(*schema, kind)};
  }

  // `(v, k=v, ...)` after an initializer or optimizer: values by position or by name.
  Attrs call_attrs(const std::vector<AttrSpec>& schema, const Token& callee) {
    expect(Tok::LParen, fmt::format("after '{}'", callee.text));
    std::vector<NamedAttr> positional;
    Attrs keywords;
    while (peek().kind != Tok::RParen) {
      if (peek().kind == Tok::Ident && peek(1).kind == Tok::Equals) {
        keyword(keywords);
      } else {
        if (!keywords.empty()) fail(peek().loc, "a positional argument cannot follow a keyword argument");
        SourceLoc loc = peek().loc;
        positional.push_back({"", attr_value(), loc});
      }
      if (!accept(Tok::Comma)) break;
    }
    expect(Tok::RParen, fmt::format("to close the arguments of '{}'", callee.text));
    return bind_attrs(schema, callee.text, positional, keywords, callee.loc);
  }

  void keyword(Attrs& keywords) {
    Token key = next();
    next();  // '='
    if (keywords.has(key.text)) fail(key.loc, "'{}' is given twice", key.text);
    keywords.set(key.text, attr_value(), key.loc);
  }

  Attr attr_value() {
    Token tok = next();
    switch (tok.kind) {
      case Tok::Int: return Attr(tok.int_value);
      case Tok::Float: return Attr(tok.float_value);
      case Tok::String: return Attr(tok.text);
      case Tok::Ident:
        if (tok.text == "true" || tok.text == "false") return Attr(tok.text == "true");
        return Attr(Ident{tok.text});
      case Tok::LBracket: {
        std::vector<int64_t> list;
        if (accept(Tok::RBracket)) return Attr(list);
        do {
          Token item = next();
          if (item.kind != Tok::Int) fail(item.loc, "expected an integer in the list, got {}", describe(item));
          list.push_back(item.int_value);
        } while (accept(Tok::Comma));
        expect(Tok::RBracket, "to close the list");
        return Attr(list);
      }
      default:
        fail(tok.loc, "expected a value (a number, true, false, a name, a string or a list), got {}", describe(tok));
    }
  }

  // ---- expressions
  ValueId expr() {
    Token tok = next();
    if (tok.kind == Tok::Int || tok.kind == Tok::Float) {
      Node node;
      node.kind = NodeKind::Constant;
      node.constant = tok.kind == Tok::Int ? static_cast<double>(tok.int_value) : tok.float_value;
      node.weak = true;
      node.type = TensorType{DType::F32, {}};
      node.loc = tok.loc;
      return graph_.add(std::move(node));
    }
    if (tok.kind != Tok::Ident) fail(tok.loc, "expected an expression, got {}", describe(tok));
    if (peek().kind != Tok::LParen) {
      if (is_keyword(tok.text)) fail(tok.loc, "expected an expression, got the keyword '{}'", tok.text);
      return lookup(tok);
    }
    return call(tok);
  }

  // Nesting deeper than this is refused, so that recursion can never exhaust the stack.
  static constexpr int kMaxNesting = 200;

  ValueId call(const Token& callee) {
    if (++nesting_ > kMaxNesting) fail(callee.loc, "calls are nested more than {} deep", kMaxNesting);
    std::optional<OpKind> kind = find_op(callee.text);
    if (!kind) {
      std::vector<std::string_view> names;
      for (const OpInfo& op : all_ops()) names.push_back(op.name);
      fail(callee.loc, "unknown op '{}'{}", shortened(callee.text), suggestion(callee.text, names));
    }
    const OpInfo& op = op_info(*kind);
    expect(Tok::LParen, "");
    Node node;
    node.op = *kind;
    node.loc = callee.loc;
    Attrs keywords;
    while (peek().kind != Tok::RParen) {
      if (peek().kind == Tok::Ident && peek(1).kind == Tok::Equals) {
        keyword(keywords);
      } else {
        if (!keywords.empty()) fail(peek().loc, "an operand cannot follow an attribute in a call of {}", op.name);
        node.args.push_back(expr());
      }
      if (!accept(Tok::Comma)) break;
    }
    expect(Tok::RParen, fmt::format("to close the call of {}", op.name));
    if (std::string bad = arity_mismatch(op, node.args.size()); !bad.empty()) fail(callee.loc, "{}", bad);
    node.attrs = bind_attrs(op.attrs, op.name, {}, keywords, callee.loc);
    --nesting_;
    return graph_.add(std::move(node));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
  std::string file_;
  Graph graph_;
  struct Definition {
    ValueId id;
    SourceLoc loc;
  };
  std::map<std::string, Definition, std::less<>> defined_;
};

}  // namespace

Graph parse_spec(std::string_view text, const std::string& file) { return Parser(text, file).run(); }

}  // namespace gradc
