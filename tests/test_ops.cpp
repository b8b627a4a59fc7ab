// The op records (OpCases.h) against the table: a record for every op, an op for every record,
// and cases that call the op they are filed under.
#include <doctest/doctest.h>

#include <algorithm>

#include "OpCases.h"
#include "gradc/gradc.h"
#include "ir/OpTable.h"

using namespace gradc;

namespace {

bool calls(const std::string& spec, OpKind kind) {
  Graph g = load_spec(spec, "record.gir");
  return std::any_of(g.nodes.begin(), g.nodes.end(),
                     [&](const Node& n) { return n.kind == NodeKind::Op && n.op == kind; });
}

}  // namespace

TEST_CASE("ops: every op of the table has a record") {
  for (const OpInfo& op : all_ops()) {
    INFO("op ", op.name, " has no record in tests/OpCases.cpp");
    CHECK(test::find_record(op.name) != nullptr);
  }
}

TEST_CASE("ops: every record names an op of the table, once, with cases and values that call it") {
  for (const test::OpRecord& r : test::op_records()) {
    INFO("record ", r.op);
    std::optional<OpKind> kind = find_op(r.op);
    CHECK_MESSAGE(kind.has_value(), "names no op of the table");
    CHECK(std::count_if(test::op_records().begin(), test::op_records().end(),
                        [&](const test::OpRecord& o) { return o.op == r.op; }) == 1);
    CHECK_FALSE(r.cases.empty());
    CHECK_FALSE(r.values.empty());
    if (!kind) continue;
    for (const test::OpCase& c : r.cases) {
      CAPTURE(c.expr);
      CHECK(calls(test::spec_of(r, c), *kind));
    }
    CHECK(calls(r.typical.decls + "output out = " + r.typical.expr + "\n", *kind));
    for (const test::KnownValue& v : r.values) {
      CAPTURE(v.call);
      std::string decls;
      for (const auto& [name, t] : v.operands) decls += fmt::format("input {} : {}\n", name, t.type);
      CHECK(calls(decls + "output out = " + v.call + "\n", *kind));
    }
  }
}
