// Recursive-descent parser for the `.gir` spec format (grammar in DESIGN.md):
//
//   spec      := { statement NEWLINE }
//   statement := "model" NAME | ("input" | "param" | "state") NAME ":" type ["=" init]
//              | "output" NAME [":" type] ["=" expr] | "minimize" NAME "with" call
//              | "assign" NAME "=" expr | binding | def | loop
//   binding   := NAME [":" type] "=" expr | NAME "," NAME {"," NAME} "=" NAME "(" args ")"
//   def       := "def" NAME "(" [NAME {"," NAME}] ")" ("=" expr | "{" body "}")
//   body      := { (binding | loop) NEWLINE } "return" expr {"," expr} [NEWLINE]
//   loop      := "for" NAME "in" int ".." int "{" { (binding | loop | collect) NEWLINE } "}"
//   collect   := "collect" NAME "along" int "=" expr
//   expr      := NUMBER | NAME | NAME "(" [expr {"," expr}] {"," NAME "=" attr} ")" | int
//   attr      := NUMBER | "true" | "false" | NAME | STRING | "[" [int {"," int}] "]" | int
//   int       := INT | NAME (a loop variable) | int ("+" | "-" | "*") int | "-" int | "(" int ")"
//
// Each op call becomes a node; names bind to the node of their expression. Shapes are left
// to shape inference, so the parser only checks what it alone can see: syntax, names, ops,
// arities and attribute spellings.
//
// Functions are inlined at parse time, so no later stage knows of them. A def is parsed once
// into a graph of its own (its first nodes stand for the parameters) and each call copies that
// graph into the caller's, parameters bound to the arguments. A body sees only its parameters
// and its own lines, like a Python function without globals: its names are private (they may
// reuse top-level names, and the nodes they name stay temporaries), params are declared at top
// level only, and a function calls only functions defined above it, so there is no recursion.
// Each copied node keeps its location in the body and adds the call (SourceLoc::called_from),
// so that a shape error found later names both. A function may return several values
// (`return h, c`), which only a binding line takes (`h, c = cell(...)`).
//
// Loops are unrolled at parse time too: the body's tokens are parsed once per iteration, the
// loop variable fixed to that iteration's integer, so `t` is only ever a number (in integer
// attributes, ranges, and as a literal). A name bound before the loop and assigned in the body
// is rebound (loop-carried state); a name first bound in the body is the iteration's own and
// is forgotten when it ends; `collect NAME along AXIS = EXPR` gathers one value per iteration,
// concatenated after the loop. At top level a carried name's node keeps the name (the value of
// the last iteration holds it; the earlier ones become temporaries), so dumps parse back. Each
// node of an iteration adds it to its location, as a call does, and so does an error raised
// while parsing it.
#include "ir/Parser.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <utility>

#include <fmt/ranges.h>

#include "ir/Lexer.h"

namespace gradc {

bool is_keyword(std::string_view w) {
  return w == "model" || w == "input" || w == "param" || w == "state" || w == "output" ||
         w == "minimize" || w == "assign" || w == "with" || w == "true" || w == "false" || w == "def" ||
         w == "return" || w == "for";
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

// The keywords that start a top-level statement: none of them may appear in a def body.
bool is_statement_keyword(std::string_view w) {
  return w == "model" || w == "input" || w == "param" || w == "state" || w == "output" || w == "minimize" ||
         w == "assign" || w == "def";
}

// A function of the spec, kept as the graph of its body: nodes 0 .. params.size()-1 stand for
// its parameters; a call copies the rest (Parser::instantiate).
struct Function {
  std::string name;
  SourceLoc loc;  // of its name in the def
  std::vector<std::string> params;
  Graph body;
  std::vector<ValueId> results;       // what its return gives: one value, or several (`return h, c`)
  std::vector<std::string> returned;  // how the return spells each, for messages ("h", "c", or "v2")
};

// A `for` loop being unrolled: the variable's value in the iteration being parsed, the names
// bound before the loop (assigning one of them rebinds it), and what its collect lines gathered.
struct Loop {
  std::string var;
  int64_t first = 0;
  int64_t value = 0;
  SourceLoc loc;  // of 'for'
  std::map<std::string, int, std::less<>> carried;  // names bound before the loop -> line
  struct Collect {
    std::string name;
    SourceLoc loc;  // of the name in the collect line
    int64_t axis = 0;
    std::vector<ValueId> values;  // one per iteration so far
  };
  std::vector<Collect> collects;
  CallSite site() const { return {var, loc.file, loc.line, loc.col, value}; }
};

SourceLoc called(SourceLoc loc, const CallSite& site) {
  loc.called_from.push_back(site);
  return loc;
}

Attrs called(const Attrs& attrs, const CallSite& site) {
  Attrs out;
  for (const NamedAttr& a : attrs) out.set(a.name, a.value, called(a.loc, site));
  return out;
}

class Parser {
 public:
  Parser(std::string_view text, const std::string& file) : tokens_(lex(text, file)), file_(file) {
    graph_.name = std::filesystem::path(file).stem().string();
    if (graph_.name.empty()) graph_.name = "model";
    find_defs();
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

  // A name being defined: not a keyword, not taken (in a def body: by its parameters and lines).
  Token new_name(std::string_view what) {
    Token tok = expect(Tok::Ident, what);
    if (is_keyword(tok.text)) fail(tok.loc, "'{}' is a keyword and cannot name a value", tok.text);
    if (find_op(tok.text)) fail(tok.loc, "'{}' is an op and cannot name a value", tok.text);
    if (auto f = functions_.find(tok.text); f != functions_.end())
      fail(tok.loc, "'{}' is a function (def at line {}) and cannot name a value", shortened(tok.text), f->second.loc.line);
    if (const Loop* loop = loop_of(tok.text))
      fail(tok.loc, "'{}' is the variable of the loop at line {}: it is an integer and cannot be assigned",
           tok.text, loop->loc.line);
    if (const Loop::Collect* c = collected(tok.text))
      fail(tok.loc, "'{}' is already collected at line {}: after the loop it names the collected values",
           shortened(tok.text), c->loc.line);
    if (auto it = defined_.find(tok.text); it != defined_.end()) {
      if (body_ && it->second.id < static_cast<ValueId>(body_->params.size()))
        fail(tok.loc, "'{}' is already a parameter of '{}'", shortened(tok.text), body_->name);
      fail(tok.loc, "'{}' is already defined at line {}", shortened(tok.text), it->second.loc.line);
    }
    return tok;
  }

  // The name a binding line assigns: a new name, or in a loop's body one bound before the loop,
  // which the line rebinds.
  Token target_name(std::string_view what) {
    if (loops_.empty() || peek().kind != Tok::Ident || !loops_.back()->carried.count(peek().text))
      return new_name(what);
    Token tok = next();
    if (!body_) check_rebindable(tok);
    return tok;
  }

  // At top level a rebinding moves the name to the new value (bind), so the old value must be one
  // that can lose it: not an input, param or state (feeds and checkpoints find them by name), not
  // an output (predict returns them by name).
  void check_rebindable(const Token& tok) {
    const Definition& d = defined_.at(tok.text);
    const Node& old = graph_[d.id];
    if (old.kind == NodeKind::Input || old.kind == NodeKind::Param || old.kind == NodeKind::State)
      fail(tok.loc, "'{}' is {} (line {}): a loop rebinds only values the spec computes, so that inputs, params "
                    "and state keep their names; start the loop's state from one, such as 'h = mul({}, 1)'",
           tok.text, old.kind == NodeKind::Input ? "an input" : old.kind == NodeKind::Param ? "a param" : "a state",
           d.loc.line, tok.text);
    for (const Output& o : graph_.outputs)
      if (o.value == d.id)
        fail(tok.loc, "'{}' is an output (line {}): predict returns it by name, so a loop cannot rebind it; "
                      "declare the output after the loop", tok.text, o.loc.line);
  }

  // Binds `name` to `id`. At top level the node takes the name (outside loops, or when the
  // outermost loop carries it: the value of the last iteration ends up named, the values before
  // it become temporaries); in a def body and for a loop body's own names the node stays a
  // temporary.
  void bind(const Token& name, ValueId id) {
    bool named = !body_ && (loops_.empty() || loops_.front()->carried.count(name.text));
    if (named) {
      if (auto it = defined_.find(name.text); it != defined_.end() && graph_[it->second.id].name == name.text)
        graph_[it->second.id].name.clear();
      graph_[id].name = name.text;
    }
    defined_[name.text] = {id, name.loc};
  }

  const Loop* loop_of(std::string_view var) const {
    for (const Loop* l : loops_)
      if (l->var == var) return l;
    return nullptr;
  }

  const Loop::Collect* collected(std::string_view name) const {
    for (const Loop* l : loops_)
      for (const Loop::Collect& c : l->collects)
        if (c.name == name) return &c;
    return nullptr;
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
    if (functions_.count(tok.text))
      fail(tok.loc, "'{}' is a function: call it as {}(...)", shortened(tok.text), shortened(tok.text));
    if (const Loop::Collect* c = collected(tok.text))
      fail(tok.loc, "'{}' is collected at line {}: it is bound once the loop ends, to the values of all its "
                    "iterations", shortened(tok.text), c->loc.line);
    if (body_)
      fail(tok.loc, "'{}' is not a parameter of '{}'{}: a function's body sees only its parameters and the "
                    "names its own lines define, so pass '{}' in as an argument",
           shortened(tok.text), body_->name, suggestion(tok.text, names), shortened(tok.text));
    fail(tok.loc, "'{}' is not defined{}", shortened(tok.text), suggestion(tok.text, names));
  }

  // ---- statements
  void statement(bool any) {
    const Token& head = peek();
    if (head.kind != Tok::Ident)
      fail(head.loc, "expected a statement (a name, or one of model, input, param, state, output, "
                     "minimize, assign, def, for), got {}", describe(head));
    if (head.text == "model") return model(any);
    if (head.text == "input") return leaf(NodeKind::Input);
    if (head.text == "param") return leaf(NodeKind::Param);
    if (head.text == "state") return leaf(NodeKind::State);
    if (head.text == "output") return output();
    if (head.text == "minimize") return minimize();
    if (head.text == "assign") return assign();
    if (head.text == "def") return function_def();
    if (head.text == "return") fail(head.loc, "'return' belongs at the end of a def body, not at top level");
    binding_line();
  }

  // The lines that bind names, at top level and in def and loop bodies: `NAME [: TYPE] = EXPR`,
  // `a, b = f(...)`, and a nested `for` loop.
  void binding_line() {
    if (at_word("for")) return for_loop();
    if (at_word("collect") && peek(1).kind == Tok::Ident)
      fail(peek().loc, "'collect' belongs in the body of a for loop: it gathers one value per iteration");
    if (peek().kind == Tok::Ident && peek(1).kind == Tok::Comma) return destructuring();
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
    Token name = target_name("to define");
    std::optional<TensorType> declared;
    if (accept(Tok::Colon)) declared = type();
    expect(Tok::Equals, fmt::format("after '{}'", name.text));
    value_statement(name, declared);
  }

  // `NAME [: TYPE] = EXPR` and the same after `output`: binds the name to a new node. In a def
  // body the node stays a temporary: the name is the body's own.
  ValueId value_statement(const Token& name, const std::optional<TensorType>& declared) {
    const Token& start = peek();
    if (start.kind == Tok::Ident && peek(1).kind != Tok::LParen && !loop_of(start.text))
      fail(start.loc, "'{} = {}' only renames a value; use '{}' where '{}' is needed", name.text,
           start.text, start.text, name.text);
    Token callee = start;
    ValueId before = graph_.size();
    ValueId id = expr();
    settle(name, id, before, callee, declared);
    bind(name, id);
    return id;
  }

  // What binding `name` to a new value `id` of `callee`'s expression checks and fixes.
  void settle(const Token& name, ValueId id, ValueId before, const Token& callee,
              const std::optional<TensorType>& declared) {
    if (id < before)  // a function that returns one of its arguments
      fail(callee.loc, "'{} = {}(...)' only renames a value: '{}' returns one of its arguments unchanged; use "
                       "that argument where '{}' is needed", name.text, callee.text, callee.text, name.text);
    Node& node = graph_[id];
    if (node.kind == NodeKind::Constant && node.weak) {
      node.weak = false;  // a named constant has a type of its own: as declared, else f32
      node.type = TensorType{declared ? declared->dtype : DType::F32, {}};
    }
    if (declared) {
      if (node.declared && *node.declared != *declared)
        fail(name.loc, "'{}' is declared {}, but the body of '{}' declares the value it returns {}", name.text,
             *declared, callee.text, *node.declared);
      node.declared = declared;
    }
  }

  // `a, b = f(...)`: the values of a function that returns as many, one name each.
  void destructuring() {
    std::vector<Token> names;
    do {
      names.push_back(target_name("to bind"));
      for (size_t i = 0; i + 1 < names.size(); ++i)
        if (names[i].text == names.back().text)
          fail(names.back().loc, "'{}' is bound twice in this line", names.back().text);
    } while (accept(Tok::Comma));
    std::vector<std::string> spelled;
    for (const Token& n : names) spelled.push_back(n.text);
    std::string joined = fmt::format("{}", fmt::join(spelled, ", "));
    expect(Tok::Equals, fmt::format("after '{}'", joined));
    const Token& callee = peek();
    if (callee.kind != Tok::Ident || peek(1).kind != Tok::LParen || !functions_.count(callee.text))
      fail(callee.loc, "'{} = ...' takes the values of a function that returns {} (a def ending in 'return {}'), "
                       "got {}{}", joined, names.size(), joined, describe(callee),
           find_op(callee.text) ? ", an op, which gives one value" : "");
    Token called_fn = next();
    ValueId before = graph_.size();
    std::vector<ValueId> results = function_call(called_fn);
    const Function& fn = functions_.find(called_fn.text)->second;
    if (results.size() != names.size())
      fail(called_fn.loc, "'{}' returns {} value{} ({}), but {} names are bound here ({})", fn.name, results.size(),
           results.size() == 1 ? "" : "s", fmt::join(fn.returned, ", "), names.size(), joined);
    for (size_t i = 0; i < names.size(); ++i) settle(names[i], results[i], before, called_fn, std::nullopt);
    for (size_t i = 0; i < names.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (results[i] == results[j])
          fail(called_fn.loc, "'{}' returns the same value as its result {} and {}: '{}' and '{}' would name one "
                              "value", fn.name, j + 1, i + 1, names[j].text, names[i].text);
    for (size_t i = 0; i < names.size(); ++i) bind(names[i], results[i]);
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

  // ---- functions
  // Where each def is (name -> line), found before parsing, so that a call of a function defined
  // further down is told so rather than "unknown op".
  void find_defs() {
    for (size_t i = 0; i + 1 < tokens_.size(); ++i) {
      const Token& t = tokens_[i];
      bool starts_line = i == 0 || tokens_[i - 1].kind == Tok::Newline;
      if (starts_line && t.kind == Tok::Ident && t.text == "def" && tokens_[i + 1].kind == Tok::Ident)
        later_defs_.emplace(tokens_[i + 1].text, tokens_[i + 1].loc.line);
    }
  }

  // `def NAME(PARAMS) = EXPR` or `def NAME(PARAMS) { ... }`: the body is parsed into a graph of
  // its own, with the parameters and the body's names as the only names in scope.
  void function_def() {
    next();  // 'def'
    Function fn;
    Token name = function_name();
    fn.name = name.text;
    fn.loc = name.loc;
    Graph outer = std::exchange(graph_, Graph{});
    auto outer_names = std::exchange(defined_, {});
    body_ = &fn;
    parameters(fn);
    if (accept(Tok::Equals)) {
      fn.results = {expr()};
      fn.returned = {"v1"};
    } else if (peek().kind == Tok::LBrace) {
      block(fn);
    } else {
      fail(peek().loc, "expected '=' and an expression, or '{{' and a body, after 'def {}(...)', got {}", fn.name,
           describe(peek()));
    }
    fn.body = std::exchange(graph_, std::move(outer));
    defined_ = std::move(outer_names);
    body_ = nullptr;
    functions_.emplace(fn.name, std::move(fn));
  }

  Token function_name() {
    Token tok = expect(Tok::Ident, "(the function's name) after 'def'");
    if (is_keyword(tok.text)) fail(tok.loc, "'{}' is a keyword and cannot name a function", tok.text);
    if (find_op(tok.text)) fail(tok.loc, "'{}' is an op and cannot name a function: ops cannot be redefined", tok.text);
    if (auto f = functions_.find(tok.text); f != functions_.end())
      fail(tok.loc, "'{}' is already a function, defined at line {}", shortened(tok.text), f->second.loc.line);
    if (auto it = defined_.find(tok.text); it != defined_.end())
      fail(tok.loc, "'{}' is already defined at line {} and cannot name a function", shortened(tok.text),
           it->second.loc.line);
    return tok;
  }

  // `(a, b, ...)`: each parameter is a placeholder node of the body's graph.
  void parameters(Function& fn) {
    expect(Tok::LParen, fmt::format("and the parameters after 'def {}'", fn.name));
    while (peek().kind != Tok::RParen) {
      Token p = new_name(fmt::format("(a parameter of '{}')", fn.name));
      Node placeholder;
      placeholder.kind = NodeKind::Input;
      placeholder.loc = p.loc;
      define(std::move(placeholder), p);
      fn.params.push_back(p.text);
      if (!accept(Tok::Comma)) break;
    }
    expect(Tok::RParen, fmt::format("to close the parameters of '{}'", fn.name));
  }

  // `{` then binding lines and a last `return EXPR {, EXPR}`, then `}`; blank lines and
  // comments anywhere. Sets the function's results from the return line.
  void block(Function& fn) {
    next();  // '{'
    while (true) {
      if (accept(Tok::Newline)) continue;
      const Token& head = peek();
      if (head.kind == Tok::RBrace)
        fail(head.loc, "the body of '{}' ends without 'return EXPR': a body's last line is the value it returns",
             fn.name);
      if (at_word("return")) return return_line(fn);
      body_line(fn);
      end_of_body_line(fn);
    }
  }

  void return_line(Function& fn) {
    Token ret = next();
    do {
      const Token& start = peek();
      bool a_name = start.kind == Tok::Ident && peek(1).kind != Tok::LParen;
      fn.returned.push_back(a_name ? start.text : fmt::format("v{}", fn.results.size() + 1));
      fn.results.push_back(expr());
    } while (accept(Tok::Comma));
    end_of_body_line(fn);
    while (accept(Tok::Newline)) {
    }
    if (peek().kind != Tok::RBrace)
      fail(peek().loc, "nothing may follow the 'return' of '{}' (line {}): its body ends there with '}}'", fn.name,
           ret.loc.line);
    next();  // '}'
  }

  void body_line(const Function& fn) {
    const Token& head = peek();
    if (head.kind != Tok::Ident)
      fail(head.loc, "expected a line of the body of '{}' ('NAME = EXPR' or 'return EXPR'), got {}", fn.name,
           describe(head));
    if (head.text == "param")
      fail(head.loc, "'param' is not allowed in the body of '{}': params are declared at top level (the spec's "
                     "params are the checkpoint's list); declare it there and pass it in as an argument", fn.name);
    if (head.text == "def")
      fail(head.loc, "a def cannot be nested in the body of '{}': define it at top level, above '{}'", fn.name,
           fn.name);
    if (is_statement_keyword(head.text))
      fail(head.loc, "'{}' is not allowed in the body of '{}': a body holds only 'NAME = EXPR' lines, loops and a "
                     "last 'return EXPR'", head.text, fn.name);
    binding_line();
  }

  void end_of_body_line(const Function& fn) {
    if (peek().kind != Tok::Newline && peek().kind != Tok::RBrace)
      fail(peek().loc, "expected end of line after the line of the body of '{}', got {}", fn.name, describe(peek()));
  }

  // `f(a, b)` of a function: its body copied in, parameters bound to the arguments; its results.
  std::vector<ValueId> inline_call(const Token& callee) {
    const Function& fn = functions_.find(callee.text)->second;
    expect(Tok::LParen, "");
    std::vector<ValueId> args;
    while (peek().kind != Tok::RParen) {
      if (peek().kind == Tok::Ident && peek(1).kind == Tok::Equals)
        fail(peek().loc, "'{}' is a function of the spec: its arguments are positional, so '{}=' is refused "
                         "(call it as {}({}))", fn.name, shortened(peek().text), fn.name, fmt::join(fn.params, ", "));
      args.push_back(expr());
      if (!accept(Tok::Comma)) break;
    }
    expect(Tok::RParen, fmt::format("to close the call of '{}'", fn.name));
    if (args.size() != fn.params.size())
      fail(callee.loc, "'{}' takes {} argument{} ({}), got {}", fn.name, fn.params.size(),
           fn.params.size() == 1 ? "" : "s", fmt::join(fn.params, ", "), args.size());
    return instantiate(fn, args, callee.loc);
  }

  // Inlining copies a body at each call, and a body holds the copies of the functions it calls:
  // ten nested doublings make a thousand nodes of one line. The copies of a whole spec are capped.
  static constexpr size_t kMaxInlinedNodes = size_t{1} << 18;

  // Copies the body of `fn` into the graph being built, its parameters bound to `args`. Each copy
  // keeps its location in the body and adds this call, for the messages of later stages.
  std::vector<ValueId> instantiate(const Function& fn, const std::vector<ValueId>& args, const SourceLoc& at) {
    size_t copies = fn.body.nodes.size() - args.size();
    if (inlined_ + copies > kMaxInlinedNodes)
      fail(at, "inlining '{}' here would make more than {} nodes in all (each call copies its body, and the "
               "bodies of the functions it calls)", fn.name, kMaxInlinedNodes);
    inlined_ += copies;
    CallSite site{fn.name, at.file, at.line, at.col};
    std::vector<ValueId> map = args;
    map.resize(fn.body.nodes.size());
    for (size_t i = args.size(); i < fn.body.nodes.size(); ++i) {
      Node n = fn.body.nodes[i];
      for (ValueId& a : n.args) a = map[static_cast<size_t>(a)];
      n.loc = called(std::move(n.loc), site);
      n.attrs = called(n.attrs, site);
      map[i] = graph_.add(std::move(n));
    }
    std::vector<ValueId> results;
    for (ValueId r : fn.results) results.push_back(map[static_cast<size_t>(r)]);
    return results;
  }

  // ---- loops
  // Unrolling makes a node per op of the body per iteration; iterations are capped as inlined
  // nodes are, so that `0..100000000` or ten nested loops fail at once instead of filling memory.
  static constexpr int64_t kMaxIterations = int64_t{1} << 18;
  static constexpr size_t kMaxLoopNesting = 16;

  // `for t in A..B { ... }`: the body parsed once for each t from A up to B (exclusive, as
  // Python's range), in order; then each collected name bound to its values' concat.
  void for_loop() {
    Token kw = next();  // 'for'
    if (loops_.size() >= kMaxLoopNesting) fail(kw.loc, "loops are nested more than {} deep", kMaxLoopNesting);
    Token var = loop_variable();
    if (!at_word("in"))
      fail(peek().loc, "expected 'in' and a range such as 0..28 after 'for {}', got {}", var.text, describe(peek()));
    next();
    int64_t first = int_expr("(the start of the range, such as 0 in 0..28)");
    expect(Tok::DotDot, "between the start and the end of the range (such as 0..28)");
    int64_t end = int_expr("(the end of the range, such as 28 in 0..28)");
    int64_t count = 0;
    if (__builtin_sub_overflow(end, first, &count) || count > kMaxIterations - iterations_)
      fail(kw.loc, "the loop over {}..{} runs more than {} iterations in all: loops are unrolled, and unrolling "
                   "stops there", first, end, kMaxIterations);
    if (count <= 0)
      fail(kw.loc, "the range {}..{} is empty: a loop runs at least once (the end is exclusive, as in Python's "
                   "range)", first, end);
    expect(Tok::LBrace, fmt::format("and the loop's body after 'for {} in {}..{}'", var.text, first, end));
    Loop loop{var.text, first, first, kw.loc, {}, {}};
    for (const auto& [name, d] : defined_) loop.carried.emplace(name, d.loc.line);
    size_t body = pos_;
    loops_.push_back(&loop);
    for (loop.value = first; loop.value < end; ++loop.value) {
      pos_ = body;
      iteration(loop);
    }
    loops_.pop_back();
    bind_collected(loop);
  }

  Token loop_variable() {
    Token var = expect(Tok::Ident, "(the loop's variable) after 'for'");
    if (is_keyword(var.text)) fail(var.loc, "'{}' is a keyword and cannot name a loop variable", var.text);
    if (find_op(var.text)) fail(var.loc, "'{}' is an op and cannot name a loop variable", var.text);
    if (functions_.count(var.text)) fail(var.loc, "'{}' is a function and cannot name a loop variable", var.text);
    if (const Loop* outer = loop_of(var.text))
      fail(var.loc, "'{}' is already the variable of the loop at line {}", var.text, outer->loc.line);
    if (auto it = defined_.find(var.text); it != defined_.end())
      fail(var.loc, "'{}' is already defined at line {}: a loop's variable needs a name of its own",
           shortened(var.text), it->second.loc.line);
    return var;
  }

  // One iteration: the body's lines up to its '}'. Its nodes, and any error raised while parsing
  // it, add the iteration to their location; its own names are forgotten at its end.
  void iteration(Loop& loop) {
    ValueId start = graph_.size();
    size_t inlined_before = inlined_;
    try {
      loop_lines();
    } catch (const Error& e) {
      throw Error(called(e.loc(), loop.site()), e.message());
    }
    for (ValueId i = start; i < graph_.size(); ++i) {
      Node& n = graph_[i];
      n.loc = called(std::move(n.loc), loop.site());
      n.attrs = called(n.attrs, loop.site());
    }
    inlined_ += static_cast<size_t>(graph_.size() - start) - (inlined_ - inlined_before);
    if (inlined_ > kMaxInlinedNodes)
      fail(loop.loc, "unrolling the loop at line {} would make more than {} nodes in all (each iteration copies "
                     "its body, and the bodies of the functions it calls)", loop.loc.line, kMaxInlinedNodes);
    ++iterations_;
    std::erase_if(defined_, [&](const auto& entry) { return !loop.carried.count(entry.first); });
  }

  void loop_lines() {
    while (true) {
      if (accept(Tok::Newline)) continue;
      if (accept(Tok::RBrace)) return;
      loop_line();
      if (peek().kind != Tok::Newline && peek().kind != Tok::RBrace)
        fail(peek().loc, "expected end of line after the line of the loop's body, got {}", describe(peek()));
    }
  }

  void loop_line() {
    const Token& head = peek();
    if (head.kind != Tok::Ident)
      fail(head.loc, "expected a line of the loop's body ('NAME = EXPR', 'a, b = f(...)', 'collect NAME along "
                     "AXIS = EXPR' or a nested 'for'), got {}", describe(head));
    if (head.text == "collect" && peek(1).kind == Tok::Ident) return collect_line();
    if (head.text == "return")
      fail(head.loc, "'return' cannot be in a loop's body: a def returns once, after its loops");
    if (head.text == "def") fail(head.loc, "a def cannot be in a loop's body: define it at top level, above the loop");
    if (is_statement_keyword(head.text))
      fail(head.loc, "'{}' is not allowed in a loop's body: the iterations share the spec's inputs, params, state "
                     "and outputs, so declare them outside the loop", head.text);
    binding_line();
  }

  // `collect NAME along AXIS = EXPR`: EXPR's value in each iteration, joined along AXIS once the
  // loop ends (concat), is NAME's value after the loop.
  void collect_line() {
    Loop& loop = *loops_.back();
    Token kw = next();
    Token name = expect(Tok::Ident, "(the name to collect into) after 'collect'");
    size_t index = static_cast<size_t>(loop.value - loop.first);
    auto it = std::find_if(loop.collects.begin(), loop.collects.end(),
                           [&](const Loop::Collect& c) { return c.name == name.text; });
    if (it != loop.collects.end() && it->values.size() > index)
      fail(name.loc, "'{}' is already collected at line {}: a loop's body collects a name once",
           shortened(name.text), it->loc.line);
    if (it == loop.collects.end()) {  // the first iteration: later ones find it
      pos_--;
      new_name("after 'collect'");
      loop.collects.push_back({name.text, name.loc, 0, {}});
      it = loop.collects.end() - 1;
    }
    if (!at_word("along"))
      fail(peek().loc, "expected 'along' and an axis after 'collect {}' (collect {} along 1 = EXPR): the values "
                       "are joined along that axis after the loop", name.text, name.text);
    next();
    int64_t axis = int_expr("(the axis to join the collected values along)");
    if (index == 0) it->axis = axis;
    if (axis != it->axis)
      fail(kw.loc, "'collect {}' joins along axis {} in the first iteration but {} here: the axis must not change",
           name.text, it->axis, axis);
    expect(Tok::Equals, fmt::format("after 'collect {} along {}'", name.text, axis));
    it->values.push_back(expr());
  }

  // After the loop: each collected name is the concat of its values along its axis.
  void bind_collected(const Loop& loop) {
    for (const Loop::Collect& c : loop.collects) {
      Node node;
      node.op = OpKind::Concat;
      node.args = c.values;
      node.loc = c.loc;
      Attrs axis;
      axis.set("axis", Attr(c.axis), c.loc);
      node.attrs = bind_attrs(op_info(OpKind::Concat).attrs, "concat", {}, axis, c.loc);
      Token name{Tok::Ident, c.name, c.loc};
      bind(name, graph_.add(std::move(node)));
    }
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
    if (starts_int_expr()) return Attr(int_expr("(an attribute's value)"));
    Token tok = next();
    switch (tok.kind) {
      case Tok::Float: return Attr(tok.float_value);
      case Tok::String: return Attr(tok.text);
      case Tok::Ident:
        if (tok.text == "true" || tok.text == "false") return Attr(tok.text == "true");
        return Attr(Ident{tok.text});
      case Tok::LBracket: {
        std::vector<int64_t> list;
        if (accept(Tok::RBracket)) return Attr(list);
        do list.push_back(int_expr("in the list"));
        while (accept(Tok::Comma));
        expect(Tok::RBracket, "to close the list");
        return Attr(list);
      }
      default:
        fail(tok.loc, "expected a value (a number, true, false, a name, a string or a list), got {}", describe(tok));
    }
  }

  // ---- integer arithmetic: `t + 1`, `2 * (t - 1)`, evaluated as parsed (an iteration of a loop
  // fixes its variable), for attributes, ranges and literals.
  bool is_arith(Tok k) const { return k == Tok::Plus || k == Tok::Minus || k == Tok::Star; }

  // Whether integer arithmetic starts here, rather than a plain literal, name or call.
  bool starts_int_expr() const {
    const Token& tok = peek();
    if (tok.kind == Tok::Int) return true;
    if (tok.kind == Tok::Minus || tok.kind == Tok::LParen) return true;
    return tok.kind == Tok::Ident && loop_of(tok.text) && peek(1).kind != Tok::LParen;
  }

  int64_t int_expr(std::string_view what) {
    int64_t value = int_term(what);
    while (peek().kind == Tok::Plus || peek().kind == Tok::Minus) {
      Token op = next();
      int64_t rhs = int_term(what);
      bool overflow = op.kind == Tok::Plus ? __builtin_add_overflow(value, rhs, &value)
                                           : __builtin_sub_overflow(value, rhs, &value);
      if (overflow) fail(op.loc, "integer overflow in '{}'", op.text);
    }
    return value;
  }

  int64_t int_term(std::string_view what) {
    int64_t value = int_factor(what);
    while (peek().kind == Tok::Star) {
      Token op = next();
      if (__builtin_mul_overflow(value, int_factor(what), &value)) fail(op.loc, "integer overflow in '*'");
    }
    return value;
  }

  int64_t int_factor(std::string_view what) {
    bool negative = false;  // a run of minus signs, counted rather than recursed into
    while (peek().kind == Tok::Minus) {
      negative = !negative;
      next();
    }
    Token tok = next();
    int64_t value = 0;
    if (tok.kind == Tok::Int) {
      value = tok.int_value;
    } else if (tok.kind == Tok::LParen) {
      if (++nesting_ > kMaxNesting) fail(tok.loc, "parentheses are nested more than {} deep", kMaxNesting);
      value = int_expr(what);
      expect(Tok::RParen, "to close the parenthesis");
      --nesting_;
    } else if (const Loop* loop = tok.kind == Tok::Ident ? loop_of(tok.text) : nullptr) {
      value = loop->value;
    } else if (tok.kind == Tok::Ident && defined_.count(tok.text)) {
      fail(tok.loc, "'{}' is a tensor: + - * are integer arithmetic on literals and loop variables (use add, sub, "
                    "mul and neg for tensors)", shortened(tok.text));
    } else if (tok.kind == Tok::Ident && !loops_.empty()) {
      fail(tok.loc, "'{}' is not a loop variable: integer arithmetic takes integers, the variables of the "
                    "enclosing loops and + - * of them", shortened(tok.text));
    } else {
      fail(tok.loc, "expected an integer {}, got {}", what, describe(tok));
    }
    if (negative && __builtin_sub_overflow(int64_t{0}, value, &value)) fail(tok.loc, "integer overflow in '-'");
    return value;
  }

  // ---- expressions
  ValueId expr() {
    // `t`, `t + 1`, `2 * 3` in a tensor's place: a number literal, as if written there.
    const Token& first = peek();
    bool arithmetic = (first.kind == Tok::Int && is_arith(peek(1).kind)) || first.kind == Tok::Minus ||
                      first.kind == Tok::LParen ||
                      (first.kind == Tok::Ident && loop_of(first.text) && peek(1).kind != Tok::LParen);
    if (arithmetic) {
      SourceLoc loc = first.loc;
      return literal(static_cast<double>(int_expr("(integer arithmetic takes integers and loop variables)")), loc);
    }
    Token tok = next();
    if (tok.kind == Tok::Int || tok.kind == Tok::Float)
      return literal(tok.kind == Tok::Int ? static_cast<double>(tok.int_value) : tok.float_value, tok.loc);
    if (tok.kind != Tok::Ident) fail(tok.loc, "expected an expression, got {}", describe(tok));
    if (peek().kind != Tok::LParen) {
      if (is_keyword(tok.text)) fail(tok.loc, "expected an expression, got the keyword '{}'", tok.text);
      return lookup(tok);
    }
    return call(tok);
  }

  ValueId literal(double value, const SourceLoc& loc) {
    Node node;
    node.kind = NodeKind::Constant;
    node.constant = value;
    node.weak = true;
    node.type = TensorType{DType::F32, {}};
    node.loc = loc;
    return graph_.add(std::move(node));
  }

  // Nesting deeper than this is refused, so that recursion can never exhaust the stack.
  static constexpr int kMaxNesting = 200;

  // A call of a function or an op in an expression, where it gives one value; the depth counts
  // calls inside function calls' arguments too.
  ValueId call(const Token& callee) {
    if (auto f = functions_.find(callee.text); f != functions_.end()) {
      const Function& fn = f->second;
      if (fn.results.size() != 1)
        fail(callee.loc, "'{}' returns {} values ({}): bind them with '{} = {}(...)'; a call inside an expression "
                         "gives one value", fn.name, fn.results.size(), fmt::join(fn.returned, ", "),
             fmt::join(fn.returned, ", "), fn.name);
      return function_call(callee).front();
    }
    if (++nesting_ > kMaxNesting) fail(callee.loc, "calls are nested more than {} deep", kMaxNesting);
    ValueId id = op_call(callee);
    --nesting_;
    return id;
  }

  std::vector<ValueId> function_call(const Token& callee) {
    if (++nesting_ > kMaxNesting) fail(callee.loc, "calls are nested more than {} deep", kMaxNesting);
    std::vector<ValueId> results = inline_call(callee);
    --nesting_;
    return results;
  }

  ValueId op_call(const Token& callee) {
    std::optional<OpKind> kind = find_op(callee.text);
    if (!kind) unknown_callee(callee);
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
    return graph_.add(std::move(node));
  }

  [[noreturn]] void unknown_callee(const Token& callee) {
    if (body_ && callee.text == body_->name)
      fail(callee.loc, "'{}' calls itself: functions are inlined where they are called, so none may be recursive",
           callee.text);
    if (auto later = later_defs_.find(callee.text); later != later_defs_.end())
      fail(callee.loc, "'{}' is called before its def at line {}: define a function above its first call",
           shortened(callee.text), later->second);
    std::vector<std::string_view> names;
    for (const OpInfo& op : all_ops()) names.push_back(op.name);
    for (const auto& [name, fn] : functions_) names.push_back(name);
    fail(callee.loc, "unknown op '{}'{}", shortened(callee.text), suggestion(callee.text, names));
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
  std::map<std::string, Definition, std::less<>> defined_;  // in a def body: its parameters and lines
  std::map<std::string, Function, std::less<>> functions_;
  std::map<std::string, int, std::less<>> later_defs_;  // every def of the text: name -> line
  const Function* body_ = nullptr;                      // the def whose body is being parsed
  size_t inlined_ = 0;                                  // nodes copied by inlining and unrolling so far
  std::vector<Loop*> loops_;                            // the loops being unrolled, outermost first
  int64_t iterations_ = 0;                              // loop iterations unrolled so far
};

}  // namespace

Graph parse_spec(std::string_view text, const std::string& file) { return Parser(text, file).run(); }

}  // namespace gradc
