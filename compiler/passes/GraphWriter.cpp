#include "passes/GraphWriter.h"

#include <algorithm>

namespace gradc {

ValueId GraphWriter::op(OpKind kind, std::vector<ValueId> args, const Attrs& attrs) {
  return add_op(g_, kind, std::move(args), attrs);
}

ValueId GraphWriter::constant(double value, DType dtype) { return add_constant(g_, value, dtype); }

ValueId GraphWriter::unbroadcast(ValueId v, Shape shape) {
  const Shape from = type(v).shape;
  if (from == shape) return v;
  size_t lead = from.size() - shape.size();
  std::vector<int64_t> axes;
  for (size_t i = 0; i < from.size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && from[i] != 1)) axes.push_back(static_cast<int64_t>(i));
  ValueId summed = axes.empty() ? v : op(OpKind::Sum, {v}, {{"axes", Attr(axes)}});
  return type(summed).shape == shape ? summed : op(OpKind::Reshape, {summed}, {{"shape", Attr(shape)}});
}

ValueId GraphWriter::expand(ValueId v, std::vector<int64_t> axes, Shape shape) {
  Shape kept = shape;
  for (int64_t a : axes) kept[static_cast<size_t>(a)] = 1;
  if (type(v).shape != kept) v = op(OpKind::Reshape, {v}, {{"shape", Attr(kept)}});
  return kept == shape ? v : op(OpKind::BroadcastTo, {v}, {{"shape", Attr(shape)}});
}

}  // namespace gradc
