// One record per op of the table (as ggml's tests/test-backend-ops.cpp): its typical cases as
// spec text, the type each gives, whether it has a gradient, its tolerances and its values
// computed by hand. The suites iterate the records: test_shapes.cpp checks each case's type,
// test_autodiff.cpp its gradient against finite differences, test_jit_ops.cpp the JIT against
// the interpreter in f32 and f64, test_interp.cpp the known values; test_ops.cpp requires a
// record for every op of the table, and a table op for every record.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gradc/Interpreter.h"

namespace gradc::test {

// A typical call of the op, as spec text.
struct OpCase {
  std::string decls;     // its params and inputs: "param p : f32[3, 4]\n"
  std::string expr;      // an expression over them that calls the op: "log(add(square(p), 0.5))"
  std::string type;      // the expression's type by the shape rule: "f32[3, 4]"
  std::string minimize;  // set when EXPR is itself a loss: the optimizer that minimizes it

  OpCase(std::string decls, std::string expr, std::string type, std::string minimize = {})
      : decls(std::move(decls)), expr(std::move(expr)), type(std::move(type)), minimize(std::move(minimize)) {}
};

struct Tolerances {
  double f32 = 1e-5;       // JIT against the interpreter, relative (test::relative_error)
  double f64 = 1e-12;      // the same in f64
  double gradient = 1e-6;  // autodiff against central finite differences in f64, relative
};

// Values computed by hand: `call` over the operands (fed as inputs of their types) gives
// `expected`, each element within `tol` relative to max(1, |expected|).
struct KnownValue {
  std::string call;
  std::vector<std::pair<std::string, interp::Tensor>> operands;
  std::vector<double> expected;
  double tol;
  std::string type;  // the result's type, where the case is about it ("" = not checked)

  KnownValue(std::string call, std::vector<std::pair<std::string, interp::Tensor>> operands,
             std::vector<double> expected, double tol = 1e-6, std::string type = {})
      : call(std::move(call)),
        operands(std::move(operands)),
        expected(std::move(expected)),
        tol(tol),
        type(std::move(type)) {}
};

struct OpRecord {
  std::string_view op;        // the op's name in the table (include/gradc/Ops.def)
  std::vector<OpCase> cases;  // small enough for finite differences and the JIT, in f32 (f64 by substitution)
  OpCase typical;             // a call at a model's size, for the shape rule alone
  std::vector<KnownValue> values;
  bool gradient = true;  // false for the adjoint ops: autodiff refuses them, the JIT runs them through predict
  Tolerances tol = {};
};

// Every record, in the table's order.
const std::vector<OpRecord>& op_records();
const OpRecord* find_record(std::string_view op);

// The spec that runs a case: `out = EXPR`, an output, weighted into `loss = sum(mul(out, r))`
// so that every element has a weight of its own, minimized with sgd; a loss case minimizes EXPR
// itself with its optimizer; for an op without a gradient, `out` is only an output (predict).
std::string spec_of(const OpRecord& record, const OpCase& c);
// The weighted form above whatever the record says (what autodiff refuses for the adjoints).
std::string weighted_spec(const OpCase& c);
// The same spec in f64: every f32 (types and one_hot's dtype) replaced.
std::string in_f64(std::string spec);

}  // namespace gradc::test
