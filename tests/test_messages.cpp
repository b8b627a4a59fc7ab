// Messages (issue 14, fault 7): every spec error carries the location of what it is about,
// long lines and headers are cut around the point of the error, one "error:" style, and the
// values that used to be taken silently (negative steps, empty paths, NaN tolerances, bad
// initializer arguments and optimizer hyper-parameters) are refused with a clear message.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "TestUtil.h"
#include "gradc/gradc.h"
#include "runtime/Npy.h"

using namespace gradc;

namespace {

// The error `f` throws; fails the test when it throws none.
template <typename F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("no error was thrown");
  return Error({}, "");
}

Error spec_error(const std::string& text) {
  return error_of([&] { train_graph(load_spec(text, "m.gir")); });
}

// The longest run of digits in `s`: CLI11's range messages printed DBL_MAX's 309.
size_t longest_digit_run(const std::string& s) {
  size_t best = 0, run = 0;
  for (char c : s) {
    run = std::isdigit(static_cast<unsigned char>(c)) ? run + 1 : 0;
    best = std::max(best, run);
  }
  return best;
}

const std::string kHead = "input x : f32[4, 3]\nparam w : f32[3] = zeros\nloss = mean(mul(x, w))\n";

}  // namespace

TEST_CASE("messages: an assign of a param the optimizer updates is located at the assign") {
  Error e = spec_error(kHead + "assign w = add(w, 1)\nminimize loss with sgd(lr=0.1)\n");
  CHECK(to_string(e.loc()) == "m.gir:4:8");
  CHECK(e.message().find("'w' is assigned here, but the optimizer of 'minimize' (line 5) updates it too") !=
        std::string::npos);
  // A param the loss does not reach may still be assigned; the optimizer's own assigns carry
  // the minimize statement's location.
  Graph g = train_graph(load_spec(kHead + "param c : f32[3] = zeros\nassign c = add(c, 1)\n"
                                          "minimize loss with adam(lr=0.1)\n", "m.gir"));
  for (const Assign& a : g.assigns) {
    CAPTURE(g[a.target].name);
    CHECK(a.loc.known());
  }
}

TEST_CASE("messages: params and states of a non-float type are refused by the verifier, located") {
  for (const char* decl : {"param p : i32[]", "param p : i32[3]", "state p : i32[]"}) {
    CAPTURE(decl);
    Error e = error_of([&] { load_spec(kHead + decl + "\nminimize loss with sgd(lr=0.1)\n", "m.gir"); });
    CHECK(to_string(e.loc()) == "m.gir:4:7");
    CHECK(e.message().find("must be a float tensor, is i32[") != std::string::npos);
  }
}

TEST_CASE("messages: initializer arguments torch.nn.init refuses are refused at the argument") {
  struct Case {
    std::string init;
    int col;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"normal(0, -1)", 30, "'v': normal's std must be at least 0, is -1"},
           {"normal(mean=0, std=-0.5)", 35, "normal's std must be at least 0, is -0.5"},
           {"uniform(1, 0)", 28, "'v': uniform's lo (1) must not be above its hi (0)"},
           {"uniform(hi=-2)", 7, "uniform's lo (0) must not be above its hi (-2)"},  // lo by default: at the param
           {"constant(1e309)", 0, "number '1e309' is out of range"},
       }) {
    CAPTURE(c.init);
    Error e = error_of([&] { load_spec(kHead + "param v : f32[3] = " + c.init + "\nminimize loss with sgd()\n", "m.gir"); });
    CHECK(e.loc().line == 4);
    if (c.col) CHECK(e.loc().col == c.col);
    CHECK(e.message().find(c.message) != std::string::npos);
  }
  // The edges torch accepts are accepted.
  CHECK_NOTHROW(load_spec(kHead + "param v : f32[3] = normal(0, 0)\nparam u : f32[3] = uniform(2, 2)\n", "m.gir"));
}

TEST_CASE("messages: optimizer hyper-parameters out of torch.optim's ranges are refused at the attribute") {
  struct Case {
    std::string optimizer;
    int col;  // of the attribute's name in "minimize loss with ..."
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"sgd(lr=-1)", 24, "sgd: lr must be at least 0, is -1"},
           {"adam(lr=0.1, beta1=1.0)", 33, "adam: beta1 must be in [0, 1), is 1"},
           {"adam(beta2=-0.1)", 25, "adam: beta2 must be in [0, 1), is -0.1"},
           {"adam(eps=0)", 25, "adam: eps must be above 0, is 0"},
           {"adamw(weight_decay=-0.01)", 26, "adamw: weight_decay must be at least 0, is -0.01"},
           {"sgd(lr=0.1, clip_norm=0)", 32, "sgd: clip_norm must be above 0, is 0"},
           {"momentum(momentum=-0.9)", 29, "momentum: momentum must be at least 0, is -0.9"},
           {"momentum(momentum=0, nesterov=true)", 29, "momentum must be above 0 with nesterov=true, is 0"},
           {"sgd(0.1, clip_norm=-1)", 29, "clip_norm must be above 0, is -1"},
           // sgd's, momentum's and adam's coupled weight_decay, as adamw's
           {"sgd(lr=0.1, weight_decay=-0.1)", 32, "sgd: weight_decay must be at least 0, is -0.1"},
           {"momentum(momentum=0.9, weight_decay=-1)", 43, "momentum: weight_decay must be at least 0, is -1"},
           {"adam(weight_decay=1e39)", 25, "adam: weight_decay is 1e+39, which does not fit in the f32 the params"},
           {"adam(weight_decay=1e-50)", 25, "adam: weight_decay is 1e-50, which does not fit in the f32 the params"},
           // by position only the signatures (sgd(lr), momentum(lr, momentum, nesterov), ...): the
           // second number of sgd(0.1, 0.2) was taken as clip_norm
           {"sgd(0.1, 0.2)", 29,
            "sgd takes at most 1 positional argument (lr), got 2: weight_decay and clip_norm are keyword-only "
            "(write weight_decay=0.2 or clip_norm=0.2)"},
           {"momentum(0.1, 0.9, true, 0.01)", 45,
            "momentum takes at most 3 positional arguments (lr, momentum, nesterov), got 4: weight_decay and clip_norm"},
           {"adam(0.001, 0.9, 0.999, 1e-8, 1e-4)", 50,
            "adam takes at most 4 positional arguments (lr, beta1, beta2, eps), got 5: weight_decay and clip_norm are "
            "keyword-only (write weight_decay=0.0001 or clip_norm=0.0001)"},
           {"adamw(0.001, 0.9, 0.999, 1e-8, 0.01, 1.0)", 57,
            "adamw takes at most 5 positional arguments (lr, beta1, beta2, eps, weight_decay), got 6: clip_norm is "
            "keyword-only (write clip_norm=1.0)"},
       }) {
    CAPTURE(c.optimizer);
    Error e = error_of([&] { load_spec(kHead + "minimize loss with " + c.optimizer + "\n", "m.gir"); });
    CHECK(to_string(e.loc()) == fmt::format("m.gir:4:{}", c.col));
    CHECK(e.message().find(c.message) != std::string::npos);
  }
  for (const char* ok : {"sgd(lr=0)", "momentum(momentum=0)", "adam(beta1=0, beta2=0.9999)", "adamw(weight_decay=0)",
                         "sgd(0.1, weight_decay=0)", "momentum(0.1, 0.9, true, weight_decay=0.01, clip_norm=1)",
                         "adam(0.001, 0.9, 0.999, 1e-8, weight_decay=1e-4)", "adamw(0.001, 0.9, 0.999, 1e-8, 0.01)"})
    CHECK_NOTHROW(load_spec(kHead + "minimize loss with " + ok + "\n", "m.gir"));
}

TEST_CASE("messages: a long source line is cut around the column, the caret under it") {
  // The error at the end of a 1 MB line: the old snippet echoed the line and a megabyte of
  // spaces before the caret.
  std::string pad(1 << 20, ' ');
  for (const std::string& text : {"input x : f32[4]" + pad + "zzz\n", "input x : f32[4]" + pad + "zzz" + pad + "\n",
                                  std::string("input x : f32[4]  zzz\n")}) {
    Error e = error_of([&] { load_spec(text, "m.gir"); });
    CHECK(e.message().find("expected end of line after the statement, got 'zzz'") != std::string::npos);
    CHECK(std::strlen(e.what()) < 300);
    const std::string& s = e.snippet();
    size_t nl = s.find('\n');
    REQUIRE(nl != std::string::npos);
    std::string line = s.substr(0, nl), caret = s.substr(nl + 1);
    CAPTURE(line);
    CHECK(line.size() <= 8 + 80 + 6);
    CHECK(caret.size() == line.find("zzz") + 1);
    CHECK(caret.back() == '^');
    CHECK((line.find("...") != std::string::npos) == (text.size() > 100));
  }
}

// A value a message echoes may be huge (a perm of 100,000 axes, a long list of axes): the
// message keeps its head and tail, at most about kMaxMessageBytes (was 689 KB).
TEST_CASE("messages: a message that echoes a huge value is cut to its head and tail") {
  std::string perm = "0";
  for (int i = 1; i < 100000; ++i) perm += ", " + std::to_string(i);
  Error e = error_of([&] { load_spec("input x : f32[2, 3]\nh = transpose(x, perm=[" + perm + "])\n", "perm.gir"); });
  CAPTURE(e.message().substr(0, 200));
  CHECK(e.message().size() < kMaxMessageBytes + 100);
  CHECK(e.message().find("bytes cut") != std::string::npos);
  CHECK(std::string_view(e.what()).starts_with("perm.gir:2:"));
  std::string multibyte = std::string(1999, 'a') + "\xc3\xa9" + std::string(3000, 'b');
  std::string cut = bounded_message(multibyte);
  CHECK(cut.size() < kMaxMessageBytes + 100);
  for (size_t i = 0; i + 1 < cut.size(); ++i)  // never half of the two-byte e-acute
    CHECK_FALSE((static_cast<unsigned char>(cut[i]) == 0xc3 && static_cast<unsigned char>(cut[i + 1]) != 0xa9));
  CHECK(bounded_message("short") == "short");
}

TEST_CASE("messages: excerpt keeps the column and never cuts a UTF-8 sequence") {
  Excerpt whole = excerpt("short line", 3);
  CHECK(whole.text == "short line");
  CHECK(whole.col == 3);
  std::string long_line = std::string(100, 'a') + "X" + std::string(100, 'b');
  Excerpt mid = excerpt(long_line, 100);
  CHECK(mid.text.starts_with("..."));
  CHECK(mid.text.ends_with("..."));
  CHECK(mid.text[mid.col] == 'X');
  Excerpt end = excerpt(long_line, long_line.size());
  CHECK(end.col == end.text.size());
  CHECK(!end.text.ends_with("..."));
  std::string utf8;
  for (int i = 0; i < 100; ++i) utf8 += "é";  // 2 bytes each
  Excerpt u = excerpt(utf8, 101);
  std::string body = u.text.substr(3, u.text.size() - 6);
  CHECK(body.size() % 2 == 0);
  CHECK(static_cast<unsigned char>(body[0]) == 0xC3);
  CHECK(shortened(std::string(1000, 'n')).size() == 43);
}

TEST_CASE("messages: a .npy error quotes a short excerpt of a long header") {
  auto npy = [](const std::string& header) {
    std::string bytes = "\x93NUMPY";
    bytes += '\x02';
    bytes += '\x00';
    uint32_t n = static_cast<uint32_t>(header.size());
    bytes.append(reinterpret_cast<const char*>(&n), 4);
    return bytes + header;
  };
  std::string pad(20000, 'p');
  for (const std::string& header :
       {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'pad': '" + pad + "', @}\n",  // malformed
        "{'descr': '<f4', 'fortran_order': False, 'pad': '" + pad + "'}\n",                      // no shape
        "{'descr': '" + pad + "', 'fortran_order': False, 'shape': (2,)}\n"}) {                // bad dtype
    std::string path = test::write_temp("long_header.npy", npy(header));
    Error e = error_of([&] { load_npy(path); });
    CAPTURE(e.what());
    CHECK(std::strlen(e.what()) < 400);
  }
  std::string path = test::write_temp("long_header.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'pad': '" + pad + "', @}\n"));
  CHECK(std::string(error_of([&] { load_npy(path); }).what()).find("', @}") != std::string::npos);  // where it stopped
}

TEST_CASE("messages: numeric and path options are checked, in words, and nothing is taken silently") {
  std::string seed = test::source_path("samples/specs/seed_mlp.gir");
  struct Case {
    std::string args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"train " + seed + " --epochs -1", "error: --epochs: expected an integer of at least 1, got '-1'"},
           {"train " + seed + " --epochs 0", "--epochs: expected an integer of at least 1, got '0'"},
           {"train " + seed + " --epochs abc", "--epochs: expected an integer of at least 1, got 'abc'"},
           {"train " + seed + " --steps -5", "--steps: expected an integer of at least 0, got '-5'"},
           {"train " + seed + " --data fashion-mnist --steps 0 --save /tmp/never.safetensors",
            "error: gradc train: --steps 0 trains nothing, so --save would write the initial params as if trained"},
           {"train " + seed + " --steps 99999999999999999999", "an integer of at least 0 below 2^63"},
           {"train " + seed + " --seed -1", "--seed: expected an integer from 0 to 2^64-1, got '-1'"},
           {"train " + seed + " --save ''", "--save: expected a file to write, got ''"},
           {"train " + seed + " --log ''", "--log: expected a file to write, got ''"},
           {"train " + seed + " --load ''", "--load: expected a checkpoint file, got ''"},
           {"train " + seed + " --data-dir ''", "--data-dir: expected a directory, got ''"},
           {"train " + seed + " --input x=a.npy --input x=b.npy", "error: --input x=b.npy: given twice (first as x=a.npy)"},
           {"train " + seed + " --input x=", "--input x=: expected NAME=FILE.npy"},
           {"check " + seed + " --tol nan", "--tol: expected a finite number of at least 0 (such as 1e-6), got 'nan'"},
           {"check " + seed + " --tol -1", "--tol: expected a finite number of at least 0"},
           {"check " + seed + " --tol inf", "--tol: expected a finite number of at least 0"},
           {"check " + seed + " --seed -3", "--seed: expected an integer from 0 to 2^64-1"},
           {"bench " + seed + " --steps 0", "--steps: expected an integer of at least 1, got '0'"},
           {"bench " + seed + " --steps 1.5", "--steps: expected an integer of at least 1, got '1.5'"},
           {"frobnicate", "error: unknown command 'frobnicate' (expected one of: dump, check, train, bench"},
           {"train " + seed + " --bogus", "error: the following argument was not expected: --bogus"},
           {"train", "error: SPEC is required\nrun 'gradc train --help' for the options"},
       }) {
    CAPTURE(c.args);
    test::CommandResult r = test::run_gradc(c.args);
    CAPTURE(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find(c.message) != std::string::npos);
    CHECK(r.err.rfind("error: ", 0) == 0);
    CHECK(r.err.find("Error") == std::string::npos);
    CHECK(longest_digit_run(r.err) < 25);
  }
}
