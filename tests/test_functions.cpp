// Functions in the spec (`def`), inlined at parse time: a spec written with them is the same
// graph, and the same compiled step, as the spec written out by hand; every misuse is refused at
// its place with exit code 1; an error found after parsing names the body's line and the calls.
#include <doctest/doctest.h>

#include "SpecChecks.h"
#include "TestUtil.h"
#include "fuzz/FuzzPipeline.h"
#include "gradc/gradc.h"
#include "ir/Parser.h"
#include "ir/Printer.h"

using namespace gradc;

namespace {

const std::string kLeaves =
    "model mlp\n"
    "input x : f32[8, 12]\n"
    "input y : i32[8]\n"
    "param w1 : f32[12, 6] = glorot_uniform\n"
    "param b1 : f32[6] = normal(0, 0.1)\n"
    "param w2 : f32[6, 4] = glorot_uniform\n"
    "param b2 : f32[4] = normal(0, 0.1)\n";

const std::string kTail = "loss = softmax_cross_entropy(logits, y)\n"
                          "output probs = softmax(logits, axis=1)\n"
                          "minimize loss with adam(lr=0.01)\n";

// Both forms of def, a function calling another, a body name that is also a top-level name, a
// literal, a declared type, comments and blank lines inside a body.
const std::string kWithDefs = kLeaves + R"(
def dense(x, w, b) = add(matmul(x, w), b)

def block(x, w1, b1, w2, b2) {
  # h is block's own: it clashes neither with the top level's h nor with another call's
  h : f32[8, 6] = relu(dense(x, w1, b1))

  return dense(mul(h, 0.5), w2, b2)
}

h = tanh(x)
logits = add(block(x, w1, b1, w2, b2), mul(block(h, w1, b1, w2, b2), 2))
)" + kTail;

const std::string kByHand = kLeaves + R"(
h = tanh(x)
logits = add(add(matmul(mul(relu(add(matmul(x, w1), b1)), 0.5), w2), b2),
             mul(add(matmul(mul(relu(add(matmul(h, w1), b1)), 0.5), w2), b2), 2))
)" + kTail;

// The same graph but for the names of temporaries: the printer names them %0, %1, ... in order.
std::string canonical(const std::string& spec) { return print_spec(load_spec(spec, "mlp.gir")); }

std::string spec_error(const std::string& text) {
  return test::error_of([&] { load_spec(text, "f.gir"); });
}

using BadDef = test::BadSpec;

const std::string kX = "input x : f32[2, 3]\n";
const std::string kDense = "def dense(x, w, b) = add(matmul(x, w), b)\n";

std::vector<BadDef> bad_defs() {
  return {
      {"wrong arity", kX + kDense + "h = dense(x, x)\n", 3, 5, {"'dense' takes 3 arguments (x, w, b), got 2"}},
      {"keyword argument", kX + kDense + "h = dense(x, w=x, b=x)\n", 3, 14,
       {"'dense' is a function of the spec: its arguments are positional, so 'w=' is refused",
        "dense(x, w, b)"}},
      {"def of an op", "def relu(x) = neg(x)\n", 1, 5, {"'relu' is an op and cannot name a function"}},
      {"def of a keyword", "def input(x) = neg(x)\n", 1, 5, {"'input' is a keyword and cannot name a function"}},
      {"def twice", kDense + "def dense(x) = neg(x)\n", 2, 5, {"'dense' is already a function, defined at line 1"}},
      {"def of a value's name", kX + "h = neg(x)\ndef h(x) = neg(x)\n", 3, 5,
       {"'h' is already defined at line 2 and cannot name a function"}},
      {"a value named as a function", kX + kDense + "dense = neg(x)\n", 3, 1,
       {"'dense' is a function (def at line 2) and cannot name a value"}},
      {"a function used as a value", kX + kDense + "h = neg(dense)\n", 3, 9, {"'dense' is a function: call it as dense(...)"}},
      {"recursion", "def f(x) = neg(f(x))\n", 1, 16, {"'f' calls itself", "none may be recursive"}},
      {"a call before the def", kX + "h = f(x)\ndef f(x) = neg(x)\n", 2, 5,
       {"'f' is called before its def at line 3: define a function above its first call"}},
      {"mutual recursion", "def f(x) = g(x)\ndef g(x) = f(x)\n", 1, 12, {"'g' is called before its def at line 2"}},
      {"a global in a body", "param w : f32[3, 3]\ndef f(x) = matmul(x, w)\n", 2, 22,
       {"'w' is not a parameter of 'f'", "sees only its parameters", "pass 'w' in as an argument"}},
      {"a near miss in a body", "def f(xs) = neg(xz)\n", 1, 17, {"'xz' is not a parameter of 'f' (did you mean 'xs'?)"}},
      {"a parameter twice", "def f(x, x) = neg(x)\n", 1, 10, {"'x' is already a parameter of 'f'"}},
      {"a local named as a parameter", "def f(x) {\n  x = neg(x)\n  return x\n}\n", 2, 3,
       {"'x' is already a parameter of 'f'"}},
      {"a local twice", "def f(x) {\n  h = neg(x)\n  h = neg(h)\n  return h\n}\n", 3, 3, {"'h' is already defined at line 2"}},
      {"missing return", "def f(x) {\n  h = neg(x)\n}\n", 3, 1, {"the body of 'f' ends without 'return EXPR'"}},
      {"a line after return", "def f(x) {\n  return neg(x)\n  h = neg(x)\n}\n", 3, 3,
       {"nothing may follow the 'return' of 'f' (line 2)"}},
      {"unclosed brace", "def f(x) {\n  return neg(x)\n", 1, 10, {"'{' is never closed"}},
      {"a brace closing a parenthesis", "def f(x) {\n  return neg(x}\n", 2, 15, {"'}' closes '(' opened at 2:13"}},
      {"neither = nor {", "def f(x) neg(x)\n", 1, 10, {"expected '=' and an expression, or '{' and a body, after 'def f(...)'"}},
      {"param in a body", "def f(x) {\n  param w : f32[3, 3]\n  return neg(x)\n}\n", 2, 3,
       {"'param' is not allowed in the body of 'f'", "params are declared at top level", "checkpoint"}},
      {"output in a body", "def f(x) {\n  output y = neg(x)\n  return x\n}\n", 2, 3,
       {"'output' is not allowed in the body of 'f'"}},
      {"a nested def", "def f(x) {\n  def g(y) = neg(y)\n  return x\n}\n", 2, 3, {"a def cannot be nested in the body of 'f'"}},
      {"return at top level", kX + "return x\n", 2, 1, {"'return' belongs at the end of a def body"}},
      {"return without a value", "def f(x) {\n  return\n}\n", 2, 9, {"expected an expression, got end of line"}},
      {"a renaming through a function", kX + "def id(x) = x\nh = id(x)\n", 3, 5,
       {"'h = id(...)' only renames a value: 'id' returns one of its arguments unchanged"}},
      {"two declared types", kX + "def f(x) {\n  h : f32[2, 3] = neg(x)\n  return h\n}\nk : f32[3, 2] = f(x)\n", 6, 1,
       {"'k' is declared f32[3, 2], but the body of 'f' declares the value it returns f32[2, 3]"}},
      {"a shape error in a body", "input x : f32[2, 3]\nparam w : f32[4, 5]\nparam b : f32[5]\n" + kDense +
       "h = relu(dense(x, w, b))\n", 4, 26,
       {"matmul of f32[2, 3] by f32[4, 5]", "\n  in the call of 'dense' at ", ".gir:5:10"}},
      {"a declared type in a body", kX + "def f(x) {\n  h : f32[3] = neg(x)\n  return relu(h)\n}\nk = f(x)\n", 3, 16,
       {"the value is declared f32[3] but neg gives f32[2, 3]", "in the call of 'f' at ", ".gir:6:5"}},
      {"a declared type returned", kX + "def f(x) {\n  h : f32[3] = neg(x)\n  return h\n}\nk = f(x)\n", 3, 16,
       {"'k' is declared f32[3] but neg gives f32[2, 3]", "in the call of 'f' at ", ".gir:6:5"}},
  };
}

}  // namespace

TEST_CASE("functions: a spec with defs parses to the graph of the spec written out by hand") {
  CHECK(canonical(kWithDefs) == canonical(kByHand));
  Graph g = load_spec(kWithDefs, "mlp.gir");
  // The body's names stay its own: the only h is the top level's.
  CHECK(g[*g.find("h")].op == OpKind::Tanh);
  CHECK(g.leaves(NodeKind::Param).size() == 4);
}

TEST_CASE("functions: the one-line form, nesting, literals and a function returning its argument") {
  std::string defs = "input x : f32[2, 3]\n"
                     "def twice(v) = add(v, v)\n"
                     "def quad(v) = twice(twice(v))\n"
                     "def id(v) = v\n"
                     "def third() = 0.25\n";
  CHECK(canonical(defs + "output y = mul(quad(id(x)), third())\n") ==
        canonical("input x : f32[2, 3]\n%0 = add(x, x)\noutput y = mul(add(%0, %0), 0.25)\n"));
  // A weak literal returned keeps adopting its user's dtype, as one written in place does.
  CHECK(canonical("input x : f64[2]\ndef one() = 1\noutput y = add(x, one())\n") ==
        canonical("input x : f64[2]\noutput y = add(x, 1)\n"));
  // A named literal returned has the type of its name: f32 unless declared.
  CHECK(canonical(defs + "c = third()\noutput y = mul(x, c)\n") ==
        canonical("input x : f32[2, 3]\nc = 0.25\noutput y = mul(x, c)\n"));
  // A literal a body names is typed as a named literal at top level is (f32 unless declared), and
  // stays a temporary.
  Graph k = load_spec("input x : f64[2]\ndef f(v) {\n  k : f64[] = 2\n  return mul(v, k)\n}\noutput y = f(x)\n", "k.gir");
  const Node& two = k[k[*k.find("y")].args[1]];
  CHECK(two.kind == NodeKind::Constant);
  CHECK_FALSE(two.weak);
  CHECK(two.type == TensorType{DType::F64, {}});
  CHECK(two.name.empty());
  CHECK(spec_error("input x : f64[2]\ndef f(v) {\n  k = 2\n  return mul(v, k)\n}\noutput y = f(x)\n")
            .find("in the call of 'f' at f.gir:6:12") != std::string::npos);
  // One line with braces, and attributes written in the body.
  CHECK(canonical("input x : f32[2, 3]\ndef probs(v) { return softmax(v, axis=1) }\noutput p = probs(x)\n") ==
        canonical("input x : f32[2, 3]\noutput p = softmax(x, axis=1)\n"));
}

TEST_CASE("functions: a spec with defs compiles to the step of the spec written out by hand") {
  CompileOptions no_cache{.cache_dir = ""};
  Model with_defs = compile_string(kWithDefs, "mlp.gir", no_cache);
  Model by_hand = compile_string(kByHand, "mlp.gir", no_cache);
  for (Stage stage : {Stage::Train, Stage::Simplified, Stage::Fused}) {
    CAPTURE(stage_name(stage));
    CHECK(with_defs.dump(stage) == by_hand.dump(stage));
  }
  Session a(with_defs, {.seed = 7});
  Session b(by_hand, {.seed = 7});
  for (uint64_t step = 0; step < 3; ++step) {
    std::map<std::string, Tensor> inputs = random_inputs(with_defs.spec, 100 + step);
    Feeds feeds(inputs.begin(), inputs.end());
    CHECK(a.step(feeds) == b.step(feeds));  // the same step, bit for bit
  }
}

TEST_CASE("functions: the dumped training graph of a spec with defs parses back and compiles to the same step") {
  test::check_train_dump_round_trip(kWithDefs, "with_defs", "def ", 2);
}

TEST_CASE("functions: every misuse is refused at its place, with exit code 1") {
  test::check_refused(bad_defs(), "bad_def");
}

TEST_CASE("functions: an error in a body names the body's line and every call it came through") {
  std::string text = "input x : f32[2, 3]\n"
                     "param w : f32[4, 5]\n"
                     "def lin(v, m) = matmul(v, m)\n"
                     "def layer(v, m) {\n"
                     "  return relu(lin(v, m))\n"
                     "}\n"
                     "h = layer(x, w)\n";
  try {
    load_spec(text, "f.gir");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(to_string(e.loc()) == "f.gir:3:17");
    REQUIRE(e.loc().called_from.size() == 2);
    CHECK(e.loc().called_from[0].function == "lin");
    CHECK(e.loc().called_from[0].line == 5);
    CHECK(e.loc().called_from[1].function == "layer");
    CHECK(e.loc().called_from[1].line == 7);
    CHECK(std::string(e.what()) ==
          "f.gir:3:17: error: matmul of f32[2, 3] by f32[4, 5]: inner dimensions differ (3 vs 4)\n"
          "    3 | def lin(v, m) = matmul(v, m)\n"
          "      |                 ^\n"
          "  in the call of 'lin' at f.gir:5:15\n"
          "  in the call of 'layer' at f.gir:7:5");
  }
  // An attribute's error is located at the attribute in the body, and at the call.
  std::string attr = spec_error("input x : f32[2, 3]\ndef f(v) = softmax(v, axis=5)\nh = f(x)\n");
  CHECK(attr.rfind("f.gir:2:", 0) == 0);
  CHECK(attr.find("in the call of 'f' at f.gir:3:5") != std::string::npos);
}

TEST_CASE("functions: inlining cannot blow up or recurse without bound") {
  // Each function doubles the last: 2^40 nodes if nothing stopped it.
  std::string doubling = "input x : f32[2]\ndef f0(v) = add(v, v)\n";
  for (int i = 1; i <= 40; ++i) doubling += fmt::format("def f{}(v) = f{}(f{}(v))\n", i, i - 1, i - 1);
  std::string e = spec_error(doubling + "output y = f40(x)\n");
  CHECK(e.find("would make more than 262144 nodes in all") != std::string::npos);
  // Calls inside function calls count toward the nesting limit.
  std::string deep = "input x : f32[2]\ndef f(v) = neg(v)\noutput y = ";
  for (int i = 0; i < 300; ++i) deep += i % 2 ? "neg(" : "f(";
  deep += "x" + std::string(300, ')') + "\n";
  CHECK(spec_error(deep).find("calls are nested more than 200 deep") != std::string::npos);
  // A chain of 150 functions, each calling the one before, is fine: inlining is a loop.
  std::string chain = "input x : f32[2]\ndef g0(v) = neg(v)\n";
  for (int i = 1; i < 150; ++i) chain += fmt::format("def g{}(v) = g{}(v)\n", i, i - 1);
  Graph g = load_spec(chain + "output y = g149(x)\n", "chain.gir");
  CHECK(g.size() == 2);
}

TEST_CASE("functions: what the fuzzer drives takes or refuses defs without a crash") {
  CHECK(fuzz::run_pipeline(kWithDefs));
  for (const std::string& text :
       {std::string("def f(x) {"), std::string("def f(x) {\n}\n}"), std::string("def f(\n"), std::string("def"),
        std::string("def f(x) = \n"), std::string("def f(x) { return x }\noutput y = f(f)\n"),
        std::string("def f() = 1\noutput y = f()\n"), std::string("}{"), std::string("def f(x) {\nreturn x\n} extra\n"),
        std::string("input x : f32[2]\ndef f(x) = x\nassign x = f(x)\n")}) {
    CAPTURE(text);
    fuzz::run_pipeline(text);  // aborts or crashes on a bug
  }
}
