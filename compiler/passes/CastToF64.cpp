#include "passes/CastToF64.h"

#include "passes/ShapeInference.h"

namespace gradc {

Graph cast_to_f64(Graph g) {
  for (Node& n : g.nodes) {
    if (n.type.dtype == DType::F32) n.type.dtype = DType::F64;
    if (n.declared && n.declared->dtype == DType::F32) n.declared->dtype = DType::F64;
    if (const Attr* dt = n.attrs.find("dtype"); dt && dt->is_ident() && dt->as_ident() == "f32")
      n.attrs.set("dtype", Attr(Ident{"f64"}));
  }
  return infer_shapes(std::move(g));
}

}  // namespace gradc
