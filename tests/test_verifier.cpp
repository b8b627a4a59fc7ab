// The verifier catches graphs that passes (or hand-built code) could break, and reports every
// failure, not only the first.
#include <doctest/doctest.h>

#include "TestUtil.h"
#include "gradc/gradc.h"
#include "ir/Verifier.h"

using namespace gradc;

namespace {

Graph seed() { return load_spec_file(test::source_path("samples/specs/seed_mlp.gir")); }

bool mentions(const std::vector<Error>& errors, std::string_view piece) {
  for (const Error& e : errors)
    if (std::string_view(e.what()).find(piece) != std::string_view::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("verifier: every sample spec verifies") {
  for (const std::string& spec : test::sample_specs()) {
    CAPTURE(spec);
    CHECK(verify(load_spec_file(test::source_path(spec))).empty());
  }
}

TEST_CASE("verifier: operands must be defined before use (SSA order)") {
  Graph g = seed();
  Node& h = g[*g.find("h")];
  h.args[0] = *g.find("loss");  // a later value
  CHECK(mentions(verify(g), "not defined before it"));
}

TEST_CASE("verifier: a stored type that disagrees with the shape rule") {
  Graph g = seed();
  g[*g.find("logits")].type = TensorType{DType::F32, {64, 11}};
  std::vector<Error> errors = verify(g);
  CHECK(mentions(errors, "'logits' has type f32[64, 11] but add of its operands gives f32[64, 10]"));
}

TEST_CASE("verifier: wrong dtypes, operand counts, attributes, names") {
  Graph g = seed();
  g[*g.find("b1")].type.dtype = DType::I32;  // a param must be float; add of f32 and i32 fails
  g[*g.find("probs")].attrs.set("bogus", Attr(int64_t{1}));
  g[*g.find("h")].args.push_back(*g.find("x"));
  g[*g.find("w2")].name = "w1";
  std::vector<Error> errors = verify(g);
  CHECK(errors.size() >= 4);  // all of them, not just the first
  CHECK(mentions(errors, "param 'b1' must be a float tensor"));
  CHECK(mentions(errors, "attribute 'bogus'"));
  CHECK(mentions(errors, "relu takes 1 operand, got 2"));
  CHECK(mentions(errors, "'w1' is defined twice"));
}

TEST_CASE("verifier: loss, optimizer and assigns") {
  Graph g = seed();
  g.minimize->loss = *g.find("logits");
  g.minimize->optimizer.kind = "adagrad";
  g.assigns.push_back({*g.find("x"), *g.find("h"), {}});
  g.assigns.push_back({*g.find("w2"), *g.find("h"), {}});
  g.assigns.push_back({*g.find("w2"), *g.find("h"), {}});
  std::vector<Error> errors = verify(g);
  CHECK(mentions(errors, "minimize needs a float scalar loss"));
  CHECK(mentions(errors, "unknown optimizer 'adagrad'"));
  CHECK(mentions(errors, "assign needs a param or state, but 'x' is not one"));
  CHECK(mentions(errors, "the new value is f32[64, 10] but 'w2' is f32[10, 10]"));
  CHECK(mentions(errors, "'w2' is assigned twice"));
  CHECK_THROWS_AS(verify_or_throw(g), Error);
}

TEST_CASE("verifier: attributes must be canonical, as shape inference leaves them") {
  Graph g = seed();
  g[*g.find("probs")].attrs.set("axis", Attr(int64_t{-1}));  // canonical form is axis=1
  CHECK(mentions(verify(g), "not in canonical form"));
}
