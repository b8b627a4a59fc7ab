#include "ir/OpTable.h"

namespace gradc {

const std::vector<OpInfo>& all_ops() {
  static const std::vector<OpInfo> table = {
#define OP(Id, spelling, arity, traits, schema, infer, eval, grad, emit, form, gemm, kinks, fold, expand, class_ids, ...) \
  {OpKind::Id, #spelling, arity, traits, parse_schema(schema), infer, FusionForm::form, gemm, expand, class_ids},
#include "gradc/Ops.def"
  };
  return table;
}

const OpInfo& op_info(OpKind kind) { return all_ops().at(static_cast<size_t>(kind)); }

std::optional<OpKind> find_op(std::string_view name) {
  for (const OpInfo& op : all_ops())
    if (op.name == name) return op.kind;
  return std::nullopt;
}

std::string arity_mismatch(const OpInfo& op, size_t got) {
  if (op.arity == kVariadic) return got == 0 ? fmt::format("{} takes at least 1 operand, got 0", op.name) : "";
  if (static_cast<int>(got) == op.arity) return "";
  return fmt::format("{} takes {} operand{}, got {}", op.name, op.arity, op.arity == 1 ? "" : "s", got);
}

TensorType infer_type(OpKind kind, const std::vector<TensorType>& args, Attrs& attrs,
                      const SourceLoc& loc) {
  const OpInfo& op = op_info(kind);
  if (std::string bad = arity_mismatch(op, args.size()); !bad.empty()) fail(loc, "{}", bad);
  ShapeCtx ctx{op, args, attrs, loc};
  TensorType result = op.infer(ctx);
  // Canonical attributes are in schema order, whatever order the rule filled them in.
  Attrs ordered;
  for (const AttrSpec& spec : op.attrs)
    for (const NamedAttr& a : attrs)
      if (a.name == spec.name) ordered.set(a.name, a.value, a.loc);
  attrs = std::move(ordered);
  if (result.rank() > kMaxRank)
    fail(loc, "{} would give a result of rank {}; a shape has at most {} dimensions (gradc's limit)", op.name,
         result.rank(), kMaxRank);
  if (!checked_numel(result.shape)) fail(loc, "{} would give {}, more than 2^48 elements", op.name, result);
  return result;
}

std::optional<Shape> broadcast_shapes(const Shape& a, const Shape& b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace gradc
