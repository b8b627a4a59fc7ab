// Static loops and multiple results in the spec, unrolled and inlined at parse time: a loop is
// the same graph, and the same compiled step, as its iterations written out by hand; every
// misuse is refused at its place with exit code 1; an error in an iteration names it.
#include <doctest/doctest.h>

#include "SpecChecks.h"
#include "TestUtil.h"
#include "fuzz/FuzzPipeline.h"
#include "gradc/gradc.h"
#include "ir/Parser.h"
#include "ir/Printer.h"

using namespace gradc;

namespace {

// A small LSTM (batch 4, hidden 8, 3 steps of 5 features) as the samples write it.
const std::string kLeaves =
    "model rnn\n"
    "input x : f32[4, 15]\n"
    "input y : i32[4]\n"
    "param wx : f32[32, 5] = glorot_uniform\n"
    "param wh : f32[32, 8] = glorot_uniform\n"
    "param b : f32[32, 1] = normal(0, 0.1)\n"
    "param wo : f32[8, 3] = glorot_uniform\n";

const std::string kCell = R"(
def lstm_cell(x, h, c, wx, wh, b) {
  z = add(add(matmul(wx, x), matmul(wh, h)), b)
  i = sigmoid(slice(z, begin=[0], end=[8]))
  f = sigmoid(slice(z, begin=[8], end=[16]))
  g = tanh(slice(z, begin=[16], end=[24]))
  o = sigmoid(slice(z, begin=[24], end=[32]))
  c_next = add(mul(f, c), mul(i, g))
  return mul(o, tanh(c_next)), c_next
}
rows = transpose(reshape(x, shape=[4, 3, 5]), perm=[1, 2, 0])
h = broadcast_to(0, shape=[8, 4])
c = broadcast_to(0, shape=[8, 4])
)";

const std::string kTail = "logits = matmul(transpose(h, perm=[1, 0]), wo)\n"
                          "loss = softmax_cross_entropy(logits, y)\n"
                          "output probs = softmax(logits, axis=1)\n"
                          "minimize loss with adam(lr=0.01)\n";

const std::string kLoop = kLeaves + kCell + R"(
for t in 0..3 {
  xt = reshape(slice(rows, begin=[t], end=[t + 1]), shape=[5, 4])
  h, c = lstm_cell(xt, h, c, wx, wh, b)
}
)" + kTail;

// The same steps by hand: no loop, no function.
std::string by_hand() {
  std::string text = kLeaves +
                     "rows = transpose(reshape(x, shape=[4, 3, 5]), perm=[1, 2, 0])\n"
                     "h0 = broadcast_to(0, shape=[8, 4])\nc0 = broadcast_to(0, shape=[8, 4])\n";
  for (int t = 0; t < 3; ++t) {
    std::string h = fmt::format("h{}", t), c = fmt::format("c{}", t);
    text += fmt::format("x{} = reshape(slice(rows, begin=[{}], end=[{}]), shape=[5, 4])\n", t, t, t + 1);
    text += fmt::format("z{} = add(add(matmul(wx, x{}), matmul(wh, {})), b)\n", t, t, h);
    text += fmt::format("i{0} = sigmoid(slice(z{0}, begin=[0], end=[8]))\n", t);
    text += fmt::format("f{0} = sigmoid(slice(z{0}, begin=[8], end=[16]))\n", t);
    text += fmt::format("g{0} = tanh(slice(z{0}, begin=[16], end=[24]))\n", t);
    text += fmt::format("o{0} = sigmoid(slice(z{0}, begin=[24], end=[32]))\n", t);
    std::string hn = t == 2 ? "h" : fmt::format("h{}", t + 1), cn = t == 2 ? "c" : fmt::format("c{}", t + 1);
    text += fmt::format("{} = add(mul(f{}, {}), mul(i{}, g{}))\n", cn, t, c, t, t);
    text += fmt::format("{} = mul(o{}, tanh({}))\n", hn, t, cn);
  }
  return text + kTail;
}

// Prints g with only the names of leaves and outputs kept, so that two specs that name their
// temporaries differently compare equal.
std::string unnamed(Graph g) {
  g.name = "m";
  for (Node& n : g.nodes)
    if (n.kind == NodeKind::Op) n.name.clear();
  for (const Output& o : g.outputs) g[o.value].name = "out";
  return print_spec(g);
}

std::string spec_error(const std::string& text) {
  return test::error_of([&] { load_spec(text, "f.gir"); });
}

using BadLoop = test::BadSpec;

const std::string kX = "input x : f32[2, 3]\n";
const std::string kPair = "def pair(v) {\n  return neg(v), exp(v)\n}\n";  // lines 2-4 after kX

std::vector<BadLoop> bad_loops() {
  return {
      {"a pair in an expression", kX + kPair + "h = relu(pair(x))\n", 5, 10,
       {"'pair' returns 2 values (v1, v2): bind them with 'v1, v2 = pair(...)'", "gives one value"}},
      {"too many names", kX + kPair + "a, b, c = pair(x)\n", 5, 11, {"'pair' returns 2 values (v1, v2), but 3 names are bound here (a, b, c)"}},
      {"two names for one value", kX + "def one(v) = neg(v)\na, b = one(x)\n", 3, 8,
       {"'one' returns 1 value (v1), but 2 names are bound here (a, b)"}},
      {"names from an op", kX + "a, b = relu(x)\n", 2, 8, {"'a, b = ...' takes the values of a function that returns 2", "an op"}},
      {"a name twice", kX + kPair + "a, a = pair(x)\n", 5, 4, {"'a' is bound twice in this line"}},
      {"an argument returned unchanged", kX + "def two(v) {\n  return v, neg(v)\n}\na, b = two(x)\n", 5, 8,
       {"'a = two(...)' only renames a value"}},
      {"an empty range", kX + "for t in 3..3 {\n  h = neg(x)\n}\n", 2, 1, {"the range 3..3 is empty"}},
      {"a huge range", kX + "for t in 0..100000000 {\n  h = neg(x)\n}\n", 2, 1,
       {"runs more than 262144 iterations in all"}},
      {"no 'in'", kX + "for t 0..3 {\n}\n", 2, 7, {"expected 'in' and a range such as 0..28 after 'for t'"}},
      {"a tensor bound", kX + "for t in 0..x {\n}\n", 2, 13, {"'x' is a tensor: + - * are integer arithmetic"}},
      {"no brace", kX + "for t in 0..3\n", 2, 14, {"expected '{' and the loop's body after 'for t in 0..3'"}},
      {"a variable that is a value", kX + "for x in 0..3 {\n}\n", 2, 5, {"'x' is already defined at line 1"}},
      {"nested loops with one variable", kX + "for t in 0..3 {\n  for t in 0..2 {\n  }\n}\n", 3, 7,
       {"'t' is already the variable of the loop at line 2", "in iteration t=0 of the loop at ", ".gir:2:1"}},
      {"the variable assigned", kX + "for t in 0..3 {\n  t = neg(x)\n}\n", 3, 3, {"'t' is the variable of the loop at line 2"}},
      {"a tensor in arithmetic", kX + "for t in 0..3 {\n  h = slice(x, begin=[x], end=[2])\n}\n", 3, 23,
       {"'x' is a tensor: + - * are integer arithmetic"}},
      {"not a loop variable", kX + "for t in 0..3 {\n  h = slice(x, begin=[s], end=[2])\n}\n", 3, 23,
       {"'s' is not a loop variable"}},
      {"a float in arithmetic", kX + "for t in 0..3 {\n  h = mul(x, t * 0.5)\n}\n", 3, 18,
       {"expected an integer (integer arithmetic takes integers and loop variables), got '0.5'"}},
      {"an input rebound", kX + "for t in 0..3 {\n  x = neg(x)\n}\n", 3, 3,
       {"'x' is an input (line 1): a loop rebinds only values the spec computes", "in iteration t=0"}},
      {"an output rebound", kX + "output h = neg(x)\nfor t in 0..3 {\n  h = neg(h)\n}\n", 4, 3,
       {"'h' is an output (line 2)", "declare the output after the loop"}},
      {"a local used after the loop", kX + "for t in 0..3 {\n  k = neg(x)\n}\noutput y = relu(k)\n", 5, 17,
       {"'k' is not defined"}},
      {"a local twice in one iteration", kX + "for t in 0..3 {\n  k = neg(x)\n  k = exp(x)\n}\n", 4, 3,
       {"'k' is already defined at line 3"}},
      {"a collected name read in the body", kX + "for t in 0..3 {\n  collect hs along 0 = neg(x)\n  k = relu(hs)\n}\n",
       4, 12, {"'hs' is collected at line 3: it is bound once the loop ends"}},
      {"a name collected twice", kX + "for t in 0..3 {\n  collect hs along 0 = neg(x)\n  collect hs along 0 = exp(x)\n}\n",
       4, 11, {"'hs' is already collected at line 3"}},
      {"collect without along", kX + "for t in 0..3 {\n  collect hs = neg(x)\n}\n", 3, 14,
       {"expected 'along' and an axis after 'collect hs'"}},
      {"collect of a defined name", kX + "h = neg(x)\nfor t in 0..3 {\n  collect h along 0 = neg(x)\n}\n", 4, 11,
       {"'h' is already defined at line 2"}},
      {"an axis that changes", kX + "for t in 0..3 {\n  collect hs along t = neg(x)\n}\n", 3, 3,
       {"'collect hs' joins along axis 0 in the first iteration but 1 here", "in iteration t=1"}},
      {"collect at top level", kX + "collect hs along 0 = neg(x)\n", 2, 1, {"'collect' belongs in the body of a for loop"}},
      {"param in a loop", kX + "for t in 0..3 {\n  param w : f32[2]\n}\n", 3, 3,
       {"'param' is not allowed in a loop's body", "declare them outside the loop"}},
      {"return in a loop", "def f(v) {\n  for t in 0..2 {\n    return v\n  }\n}\n", 3, 5,
       {"'return' cannot be in a loop's body"}},
      {"a def in a loop", kX + "for t in 0..3 {\n  def f(v) = neg(v)\n}\n", 3, 3, {"a def cannot be in a loop's body"}},
      {"a shape error in an iteration", kX + "for t in 0..4 {\n  h = slice(x, begin=[0, t], end=[2, t + 1])\n}\n", 3, 7,
       {"slice of f32[2, 3]: axis 1 is empty (begin 3, end 3)", "in iteration t=3 of the loop at ", ".gir:2:1"}},
      {"an error in a later iteration", kX + "h = neg(x)\nfor t in 0..5 {\n  h = concat(h, slice(x, begin=[0], end=[2]), axis=t)\n}\n",
       4, 7, {"concat of f32[4, 3] and f32[2, 3] along axis 1", "in iteration t=1 of the loop at ", ".gir:3:1"}},
      {"an overflow", kX + "for t in 0..2 {\n  h = mul(x, 9223372036854775807 + t)\n}\n", 3, 34, {"integer overflow in '+'", "t=1"}},
  };
}

}  // namespace

TEST_CASE("loops: a loop over a cell that returns two values is the graph of its iterations written by hand") {
  CHECK(unnamed(load_spec(kLoop, "rnn.gir")) == unnamed(load_spec(by_hand(), "rnn.gir")));
  // The carried names end up on the last iteration's values; the rest are temporaries.
  Graph g = load_spec(kLoop, "rnn.gir");
  REQUIRE(g.find("h"));
  CHECK(g[*g.find("h")].op == OpKind::Mul);
  CHECK(g[*g.find("c")].op == OpKind::Add);
  CHECK_FALSE(g.find("xt"));
  CHECK_FALSE(g.find("z"));
  CHECK(g.leaves(NodeKind::Param).size() == 4);
}

TEST_CASE("loops: a loop compiles to the step of its iterations written by hand") {
  CompileOptions no_cache{.cache_dir = ""};
  Model looped = compile_string(kLoop, "rnn.gir", no_cache);
  Model by_hand_model = compile_string(by_hand(), "rnn.gir", no_cache);
  Session a(looped, {.seed = 7});
  Session b(by_hand_model, {.seed = 7});
  for (uint64_t step = 0; step < 3; ++step) {
    std::map<std::string, Tensor> inputs = random_inputs(looped.spec, 100 + step);
    Feeds feeds(inputs.begin(), inputs.end());
    CHECK(a.step(feeds) == b.step(feeds));  // the same step, bit for bit
  }
}

TEST_CASE("loops: collect, integer arithmetic, nested loops, loops in def bodies, the loop variable as a literal") {
  std::string x = "input x : f32[2, 6]\n";
  // collect along 1 is the concat of the iterations' values; t, t + 1, 2 * t, (t - 1) evaluate.
  CHECK(unnamed(load_spec(x + "for t in 1..3 {\n  collect hs along 1 = slice(x, begin=[0, 2 * t], end=[2, (t - 1) + t + 2])\n}\n"
                      "output y = relu(hs)\n", "a.gir")) ==
        unnamed(load_spec(x + "hs = concat(slice(x, begin=[0, 2], end=[2, 3]), slice(x, begin=[0, 4], end=[2, 5]), axis=1)\n"
                      "output y = relu(hs)\n", "b.gir")));
  // The variable in a tensor's place is a number literal; a nested loop reads the outer variable.
  CHECK(unnamed(load_spec(x + "h = neg(x)\nfor i in 0..2 {\n  for j in i..2 {\n    h = mul(h, i * 10 + j)\n  }\n}\n"
                              "output y = neg(h)\n", "a.gir")) ==
        unnamed(load_spec(x + "a = neg(x)\nb = mul(a, 0)\nc = mul(b, 1)\nh = mul(c, 11)\noutput y = neg(h)\n", "b.gir")));
  // A loop in a def body rebinds the function's parameter; collect there too.
  CHECK(unnamed(load_spec(x + "def f(v) {\n  for t in 0..2 {\n    v = tanh(v)\n    collect vs along 0 = v\n  }\n  return v, vs\n}\n"
                      "a, b = f(x)\noutput y = add(a, sum(b))\n", "a.gir")) ==
        unnamed(load_spec(x + "p = tanh(x)\na = tanh(p)\nb = concat(p, a, axis=0)\noutput y = add(a, sum(b))\n", "b.gir")));
  // A loop of one line, and a destructuring at top level with no loop.
  CHECK(unnamed(load_spec(x + "def two(v) { return neg(v), exp(v) }\na, b = two(x)\nfor t in 0..1 { a = add(a, b) }\n"
                              "output y = neg(a)\n", "a.gir")) ==
        unnamed(load_spec(x + "p = neg(x)\nb = exp(x)\na = add(p, b)\noutput y = neg(a)\n", "b.gir")));
}

TEST_CASE("loops: the dumped training graph of a loop parses back and compiles to the same step") {
  test::check_train_dump_round_trip(kLoop, "loop", "for ", 3);
}

TEST_CASE("loops: every misuse of loops and multiple results is refused at its place, with exit code 1") {
  test::check_refused(bad_loops(), "bad_loop");
}

TEST_CASE("loops: an error in an iteration names the body's line, the calls and the iteration") {
  std::string text = "input x : f32[2, 3]\n"
                     "param w : f32[3, 3]\n"
                     "def lin(v, m) = matmul(v, m)\n"
                     "h = neg(x)\n"
                     "for t in 0..3 {\n"
                     "  h = lin(slice(h, begin=[0], end=[2 - t]), w)\n"
                     "}\n";
  try {
    load_spec(text, "f.gir");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(to_string(e.loc()) == "f.gir:6:11");  // the slice that is empty at t=2
    CAPTURE(e.what());
    REQUIRE(e.loc().called_from.size() == 1);
    CHECK(e.loc().called_from[0].iteration == 2);
    CHECK(std::string(e.what()).find("in iteration t=2 of the loop at f.gir:5:1") != std::string::npos);
  }
  std::string shape = spec_error("input x : f32[2, 3]\nparam w : f32[4, 4]\ndef lin(v, m) = matmul(v, m)\n"
                                 "h = neg(x)\nfor t in 0..3 {\n  h = lin(h, w)\n}\n");
  CHECK(shape == "f.gir:3:17: error: matmul of f32[2, 3] by f32[4, 4]: inner dimensions differ (3 vs 4)\n"
                 "    3 | def lin(v, m) = matmul(v, m)\n"
                 "      |                 ^\n"
                 "  in the call of 'lin' at f.gir:6:7\n"
                 "  in iteration t=0 of the loop at f.gir:5:1");
}

TEST_CASE("loops: unrolling cannot blow up") {
  // Four nested loops of 100 are 10^8 iterations if nothing stopped them.
  std::string nested = "input x : f32[2]\nh = neg(x)\n"
                       "for a in 0..100 {\nfor b in 0..100 {\nfor c in 0..100 {\nfor d in 0..100 {\n  h = neg(h)\n}\n}\n}\n}\n";
  std::string e = spec_error(nested);
  CAPTURE(e);
  CHECK((e.find("more than 262144 nodes") != std::string::npos ||
         e.find("more than 262144 iterations") != std::string::npos));
  std::string deep = "input x : f32[2]\n";
  for (int i = 0; i < 20; ++i) deep += fmt::format("for t{} in 0..1 {{\n", i);
  deep += std::string(20, '}') + "\n";
  CHECK(spec_error(deep).find("loops are nested more than 16 deep") != std::string::npos);
}

TEST_CASE("loops: the small LSTM and GRU classifiers pass the gradient check") {
  // The samples' cells at batch 4, hidden 8, 28 steps of 28 pixels.
  for (std::string sample : {"lstm_classifier", "gru_classifier"}) {
    CAPTURE(sample);
    std::string text = test::read_file(test::source_path("samples/specs/" + sample + ".gir"));
    auto replace_all = [&](const std::string& from, const std::string& to) {
      for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
    };
    for (auto [from, to] : std::vector<std::pair<std::string, std::string>>{
             {"f32[64, 784]", "f32[4, 784]"}, {"i32[64]", "i32[4]"}, {"shape=[64, 28, 28]", "shape=[4, 28, 28]"},
             {"shape=[28, 64]", "shape=[28, 4]"}, {"shape=[64, 64]", "shape=[8, 4]"}, {"=[64]", "=[8]"},
             {"=[128]", "=[16]"}, {"=[192]", "=[24]"}, {"=[256]", "=[32]"}, {"f32[256, 64]", "f32[32, 8]"},
             {"f32[192, 64]", "f32[24, 8]"}, {"f32[256, ", "f32[32, "}, {"f32[192, ", "f32[24, "},
             {"f32[64, 10]", "f32[8, 10]"}})
      replace_all(from, to);
    std::string path = test::write_temp(sample + "_small.gir", text);
    test::CommandResult r = test::run_gradc("check " + path);
    CAPTURE(r.out);
    CAPTURE(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("within 1e-06") != std::string::npos);
  }
}

TEST_CASE("loops: what the fuzzer drives takes or refuses loops and multiple results without a crash") {
  CHECK(fuzz::run_pipeline(kLoop));
  for (const std::string& text :
       {std::string("for"), std::string("for t"), std::string("for t in"), std::string("for t in 0.."),
        std::string("for t in 0..2 {"), std::string("for t in 0..2 {\n}\n}"), std::string("for t in ..2 {}"),
        std::string("for t in 0...2 {}"), std::string("x = 1..2\n"), std::string("a, = b\n"),
        std::string("input x : f32[2]\ndef f(v) { return v, }\n"), std::string("for t in 0..3 { collect }\n"),
        std::string("for t in 0..3 { collect a along = 1 }\n"), std::string("input x : f32[2]\noutput y = mul(x, ((((1)))))\n"),
        std::string("input x : f32[2]\noutput y = mul(x, - - - 1)\n"), std::string("h = t-1\n"),
        std::string("input x : f32[2]\noutput y = mul(x, 9223372036854775807 * 2)\n"),
        std::string("input x : f32[2]\nh = neg(x)\nfor t in -2..2 { h = mul(h, t) }\noutput y = neg(h)\n"),
        std::string("input x : f32[2]\nfor t in 0..2 { collect s along 0 = x }\noutput y = neg(s)\n"),
        std::string("input x : f32[2]\nfor t in 0..2 { collect s along 5 = x }\noutput y = neg(s)\n"),
        std::string("input x : f32[2]\nfor t in 0..2 { collect s along 0 = t }\noutput y = neg(s)\n")}) {
    CAPTURE(text);
    fuzz::run_pipeline(text);  // aborts or crashes on a bug
  }
}
