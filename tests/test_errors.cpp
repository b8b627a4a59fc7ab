// Malformed specs: each one gets exit code 1 from `gradc dump`, one message that names the
// file, line and column, and says what was expected. Table-driven; never a crash.
#include <doctest/doctest.h>

#include "TestUtil.h"
#include "gradc/gradc.h"

using namespace gradc;

namespace {

struct BadSpec {
  std::string what;
  std::string text;
  int line;
  int col;
  std::vector<std::string> message;  // every piece must appear in the message
};

std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

const std::string kLoss = "input x : f32[2, 3]\nparam w : f32[3, 3]\nl = mean(matmul(x, w))\n";

std::vector<BadSpec> bad_specs() {
  return {
      {"unknown op", "input x : f32[2, 3]\nh = relux(x)\n", 2, 5, {"unknown op 'relux'", "did you mean 'relu'?"}},
      {"wrong arity", "input x : f32[2, 3]\nh = relu(x, x)\n", 2, 5, {"relu takes 1 operand, got 2"}},
      {"too few operands", "input x : f32[2, 3]\nh = matmul(x)\n", 2, 5, {"matmul takes 2 operands, got 1"}},
      {"unknown attribute", "input x : f32[2, 3]\nh = softmax(x, axes=1)\n", 2, 16,
       {"softmax has no attribute 'axes'", "expected one of: axis"}},
      {"attribute of the wrong kind", "input x : f32[2, 3]\nh = softmax(x, axis=1.5)\n", 2, 16,
       {"softmax: 'axis' must be an integer, got 1.5"}},
      {"missing attribute", "input x : f32[2, 3]\nh = reshape(x)\n", 2, 5, {"reshape: missing attribute 'shape'"}},
      {"attribute given twice", "input x : f32[2, 3]\nh = softmax(x, axis=0, axis=1)\n", 2, 24,
       {"'axis' is given twice"}},
      {"operand after attribute", "input x : f32[2, 3]\nh = add(x, axis=1, x)\n", 2, 20,
       {"an operand cannot follow an attribute"}},
      {"bad dtype", "input x : f16[2, 3]\n", 1, 11, {"unknown type 'f16'", "expected f32, f64 or i32"}},
      {"type without shape", "input x : f32\n", 1, 14, {"expected '['", "f32[] for a scalar"}},
      {"zero dimension", "input x : f32[0, 3]\n", 1, 15, {"a dimension must be a positive integer, got '0'"}},
      {"negative dimension", "input x : f32[-4]\n", 1, 15, {"a dimension must be a positive integer, got '-4'"}},
      {"missing colon", "input x f32[2]\n", 1, 9, {"expected ':'", "like x : f32[64, 784]"}},
      {"undefined name", "input x : f32[2, 3]\nh = relu(z)\n", 2, 10, {"'z' is not defined"}},
      {"undefined name, near miss", "input xs : f32[2, 3]\nh = relu(xz)\n", 2, 10,
       {"'xz' is not defined", "did you mean 'xs'?"}},
      {"redefined name", "input x : f32[2, 3]\nx = relu(x)\n", 2, 1, {"'x' is already defined at line 1"}},
      {"keyword as a name", "input input : f32[2]\n", 1, 7, {"'input' is a keyword"}},
      {"op as a value", "input x : f32[2]\nh = add(x, relu)\n", 2, 12, {"'relu' is an op: call it as relu(...)"}},
      {"a renaming", "input x : f32[2]\nh = x\n", 2, 5, {"only renames a value"}},
      {"non-scalar loss", "input x : f32[2, 3]\nparam w : f32[3, 3]\nl = matmul(x, w)\nminimize l with sgd(lr=0.1)\n",
       4, 1, {"minimize needs a float scalar loss", "'l' is f32[2, 3]"}},
      {"matmul shapes", "input x : f32[64, 784]\nparam w : f32[10, 10]\nh = matmul(x, w)\n", 3, 5,
       {"matmul of f32[64, 784] by f32[10, 10]", "784", "10"}},
      {"broadcast shapes", "input x : f32[64, 10]\nparam b : f32[3]\nh = add(x, b)\n", 3, 5,
       {"add", "f32[64, 10]", "f32[3]"}},
      {"dtypes differ", "input x : f32[2]\ninput z : f64[2]\nh = add(x, z)\n", 3, 5, {"add", "f32[2]", "f64[2]"}},
      {"integer into relu", "input y : i32[4]\nh = relu(y)\n", 2, 5, {"relu", "i32[4]"}},
      {"reshape count", "input x : f32[2, 3]\nh = reshape(x, shape=[4, 2])\n", 2, 5, {"reshape", "[2, 3]", "[4, 2]"}},
      {"conv channels", "input x : f32[1, 3, 8, 8]\nparam w : f32[4, 2, 3, 3]\nh = conv2d(x, w)\n", 3, 5,
       {"conv2d", "f32[1, 3, 8, 8]", "f32[4, 2, 3, 3]"}},
      {"labels of the wrong shape", "input x : f32[4, 10]\ninput y : i32[5]\nl = softmax_cross_entropy(x, y)\n", 3,
       5, {"softmax_cross_entropy", "f32[4, 10]", "i32[5]"}},
      {"declared type differs", "input x : f32[2, 3]\nh : f32[2, 4] = relu(x)\n", 2, 17,
       {"'h' is declared f32[2, 4] but relu gives f32[2, 3]"}},
      {"unclosed call", "input x : f32[2]\nh = relu(x\n", 2, 9, {"'(' is never closed"}},
      {"stray bracket", "input x : f32[2]\nh = relu(x))\n", 2, 12, {"')' has no matching opening bracket"}},
      {"stray character", "input x : f32[2]\nh = relu($x)\n", 2, 10, {"unexpected character '$'"}},
      {"binary bytes", "input x : f32[2]\n\x01\x02\x7f", 2, 1, {"unexpected byte 0x01", "plain text"}},
      {"empty file", "", 1, 1, {"the spec is empty"}},
      {"only comments", "# nothing here\n\n", 1, 1, {"the spec is empty"}},
      {"trailing tokens", "input x : f32[2] extra\n", 1, 18, {"expected end of line after the statement, got 'extra'"}},
      {"unknown initializer", "param w : f32[2, 2] = glorot\n", 1, 23,
       {"unknown initializer 'glorot'", "glorot_uniform"}},
      {"initializer argument", "param w : f32[2, 2] = normal(0, 1, 2)\n", 1, 36,
       {"normal takes at most 2 arguments, got 3"}},
      {"unknown optimizer", kLoss + "minimize l with adamm(lr=0.1)\n", 4, 17,
       {"unknown optimizer 'adamm'", "sgd, momentum, adam, adamw"}},
      {"unknown optimizer argument", kLoss + "minimize l with sgd(learning_rate=0.1)\n", 4, 21,
       {"sgd has no attribute 'learning_rate'", "lr"}},
      {"missing optimizer argument", kLoss + "minimize l with momentum(lr=0.1)\n", 4, 17,
       {"momentum: missing attribute 'momentum'"}},
      {"lr that is not an input", kLoss + "minimize l with sgd(lr=w)\n", 4, 1, {"lr=w must name a float scalar input"}},
      {"a literal beyond f32", "input x : f32[2]\nh = mul(x, 1e39)\n", 2, 12, {"1e+39 does not fit in f32", "inf"}},
      {"an initializer beyond f32", "param w : f32[2] = normal(0, 1e39)\n", 1, 30,
       {"normal's 'std' is 1e+39, which does not fit in the param's f32"}},
      {"an lr beyond f32", kLoss + "minimize l with sgd(lr=1e39)\n", 4, 21, {"sgd: lr is 1e+39", "(it would be inf)"}},
      {"an eps that is 0 in f32", kLoss + "minimize l with adam(lr=0.1, eps=1e-50)\n", 4, 30,
       {"adam: eps is 1e-50", "(it would be 0)"}},
      {"an output twice", "input x : f32[2]\nh = relu(x)\noutput h\noutput h\n", 4, 8,
       {"'h' is already an output (line 3)"}},
      {"two losses", kLoss + "minimize l with sgd(lr=0.1)\nminimize l with sgd(lr=0.1)\n", 5, 1,
       {"a spec minimizes one loss", "line 4"}},
      {"missing 'with'", kLoss + "minimize l sgd(lr=0.1)\n", 4, 12, {"expected 'with'"}},
      {"assign to an input", "input x : f32[2]\nassign x = neg(x)\n", 2, 8, {"assign needs a param or state"}},
      {"assign of the wrong type", "param w : f32[2]\ninput x : f32[3]\nassign w = neg(x)\n", 3, 8,
       {"assign 'w': the new value is f32[3] but 'w' is f32[2]"}},
      {"model not first", "input x : f32[2]\nmodel m\n", 2, 1, {"'model' must be the first statement"}},
      {"bad transpose perm", "input x : f32[2, 3]\nh = transpose(x, perm=[0, 0])\n", 2, 5, {"transpose", "[0, 0]"}},
      {"integer too large", "input x : f32[99999999999999999999]\n", 1, 15, {"too large"}},
      {"tensor too large", "input x : f32[100000000, 100000000]\n", 1, 11, {"more than 2^48 elements"}},
      {"nesting too deep", "input x : f32[2]\nh = " + repeat("relu(", 300) + "x" + repeat(")", 300) + "\n", 2,
       5 + 200 * 5, {"calls are nested more than 200 deep"}},
  };
}

}  // namespace

TEST_CASE("errors: malformed specs give exit code 1 and file:line:col with the message") {
  std::vector<BadSpec> cases = bad_specs();
  CHECK(cases.size() >= 25);
  for (size_t i = 0; i < cases.size(); ++i) {
    const BadSpec& c = cases[i];
    CAPTURE(c.what);
    std::string path = test::write_temp(fmt::format("bad{}.gir", i), c.text);
    test::CommandResult r = test::run_gradc("dump " + path);
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    std::string where = fmt::format("{}:{}:{}: error: ", path, c.line, c.col);
    CAPTURE(r.err);
    CHECK(r.err.rfind(where, 0) == 0);
    for (const std::string& piece : c.message) CHECK(r.err.find(piece) != std::string::npos);
  }
}

TEST_CASE("errors: the message shows the offending line with a caret under the column") {
  std::string path = test::write_temp("caret.gir", "input x : f32[64, 784]\nparam w : f32[10, 10]\nh = relu(matmul(x, w))\n");
  test::CommandResult r = test::run_gradc("dump " + path);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("    3 | h = relu(matmul(x, w))\n      |          ^") != std::string::npos);
}

TEST_CASE("errors: files that cannot be read") {
  test::CommandResult missing = test::run_gradc("dump /nonexistent/model.gir");
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("/nonexistent/model.gir: error: no such file") != std::string::npos);
  test::CommandResult dir = test::run_gradc("dump " + test::temp_dir().string());
  CHECK(dir.exit_code == 1);
  CHECK(dir.err.find("not a regular file") != std::string::npos);
}

TEST_CASE("errors: the library throws gradc::Error with the location") {
  try {
    load_spec("input x : f32[2]\nh = relu(q)\n", "mem.gir");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.loc().file == "mem.gir");
    CHECK(e.loc().line == 2);
    CHECK(e.loc().col == 10);
    CHECK(e.message() == "'q' is not defined");
  }
}
