#include "ir/Graph.h"

#include "gradc/Init.h"

namespace gradc {

ValueId Graph::add(Node n) {
  nodes.push_back(std::move(n));
  return size() - 1;
}

ValueId Graph::viewed(ValueId id) const {
  while ((*this)[id].kind == NodeKind::Op && op_info((*this)[id].op).form == FusionForm::View) id = (*this)[id].args[0];
  return id;
}

std::optional<ClassIds> no_class_ids(const Graph&, const Node&) { return std::nullopt; }

// softmax_cross_entropy(logits, labels): i32 labels are class ids over the logits' last axis
// (f32 labels are probabilities).
std::optional<ClassIds> class_ids_of_labels(const Graph& g, const Node& n) {
  if (g[n.args[1]].type.dtype != DType::I32) return std::nullopt;
  return ClassIds{1, g[n.args[0]].type.shape.back()};
}

std::optional<ClassIds> class_ids_of_one_hot(const Graph&, const Node& n) {
  return ClassIds{0, n.attrs.get("classes").as_int()};
}

// gather's ids index the table (gather_grad's: the table's shape) along axis.
std::optional<ClassIds> class_ids_of_gather(const Graph& g, const Node& n) {
  int64_t axis = n.attrs.get("axis").as_int();
  const Shape& table = n.op == OpKind::Gather ? g[n.args[0]].type.shape : n.attrs.get("shape").as_ints();
  if (axis < 0 || axis >= static_cast<int64_t>(table.size())) return std::nullopt;
  return ClassIds{1, table[static_cast<size_t>(axis)]};
}

ValueId add_constant(Graph& g, double value, DType dtype, const SourceLoc& loc) {
  Node k;
  k.kind = NodeKind::Constant;
  k.constant = value;
  k.type = TensorType{dtype, {}};
  k.loc = loc;
  return g.add(std::move(k));
}

std::string unused_name(std::unordered_set<std::string>& taken, const std::string& base) {
  std::string name = base;
  for (int i = 1; taken.count(name); ++i) name = fmt::format("{}{}", base, i);
  taken.insert(name);
  return name;
}

int64_t class_count(const Graph& g, ValueId input) {
  for (const Node& n : g.nodes) {
    if (n.kind != NodeKind::Op) continue;
    std::optional<ClassIds> ids = op_info(n.op).class_ids(g, n);
    if (ids && n.args[ids->operand] == input) return ids->classes;
  }
  return 1;
}

bool is_assign_step(const Graph& g) { return !g.minimize && !g.assigns.empty(); }

std::optional<ValueId> step_loss(const Graph& g) {
  if (g.minimize) return g.minimize->loss;
  if (is_assign_step(g) && !g.outputs.empty()) return g.outputs.front().value;
  return std::nullopt;
}

std::vector<bool> live_values(const Graph& g) {
  std::vector<bool> live(g.nodes.size(), false);
  for (const Output& o : g.outputs) live[static_cast<size_t>(o.value)] = true;
  if (g.minimize) live[static_cast<size_t>(g.minimize->loss)] = true;
  for (const Assign& a : g.assigns) live[static_cast<size_t>(a.value)] = live[static_cast<size_t>(a.target)] = true;
  for (ValueId id = g.size(); id-- > 0;)
    if (live[static_cast<size_t>(id)])
      for (ValueId a : g[id].args) live[static_cast<size_t>(a)] = true;
  return live;
}

void copy_results(const Graph& from, const std::vector<ValueId>& map, Graph& to) {
  auto at = [&](ValueId v) { return map[static_cast<size_t>(v)]; };
  for (const Output& o : from.outputs) to.outputs.push_back({at(o.value), o.loc});
  if (from.minimize) to.minimize = Minimize{at(from.minimize->loss), from.minimize->optimizer, from.minimize->loc};
  for (const Assign& a : from.assigns) to.assigns.push_back({at(a.target), at(a.value), a.loc});
}

std::optional<ValueId> Graph::find(std::string_view name) const {
  for (ValueId id = 0; id < size(); ++id)
    if (nodes[static_cast<size_t>(id)].name == name) return id;
  return std::nullopt;
}

std::vector<ValueId> Graph::leaves(NodeKind kind) const {
  std::vector<ValueId> ids;
  for (ValueId id = 0; id < size(); ++id)
    if (nodes[static_cast<size_t>(id)].kind == kind) ids.push_back(id);
  return ids;
}

// Initializers: the runtime's (gradc/Init.h), their schemas parsed once.
const std::vector<AttrSpec>* init_schema(std::string_view kind) {
  static const std::vector<std::pair<std::string_view, std::vector<AttrSpec>>> table = [] {
    std::vector<std::pair<std::string_view, std::vector<AttrSpec>>> t;
    for (const InitKind& k : init_kinds()) t.emplace_back(k.name, parse_schema(k.schema));
    return t;
  }();
  for (const auto& [name, schema] : table)
    if (name == kind) return &schema;
  return nullptr;
}

std::string_view init_names() {
  static const std::string names = [] {
    std::string n;
    for (const InitKind& k : init_kinds()) n += (n.empty() ? "" : ", ") + std::string(k.name);
    return n;
  }();
  return names;
}

// Optimizers: defaults are torch.optim's (Adam eps=1e-8, AdamW weight_decay=0.01).
// `momentum` has no default in the optimizer named after it. clip_norm absent = no clipping;
// weight_decay absent = 0 (sgd, momentum and adam's coupled L2 term, torch.optim.SGD's and
// Adam's weight_decay). By position only DESIGN.md's signatures (sgd(lr), momentum(lr, momentum,
// nesterov), ...): the names after `*` are keyword-only, so sgd(0.1, 0.2) is refused rather than
// taken as clip_norm=0.2.
const std::vector<AttrSpec>* optimizer_schema(std::string_view kind) {
  static const std::vector<std::pair<std::string_view, std::vector<AttrSpec>>> table = {
      {"sgd", parse_schema("lr:value=0.001 * weight_decay:float? clip_norm:float?")},
      {"momentum", parse_schema("lr:value=0.001 momentum:float nesterov:bool=false * weight_decay:float? "
                                "clip_norm:float?")},
      {"adam", parse_schema("lr:value=0.001 beta1:float=0.9 beta2:float=0.999 eps:float=1e-8 * "
                            "weight_decay:float? clip_norm:float?")},
      {"adamw", parse_schema("lr:value=0.001 beta1:float=0.9 beta2:float=0.999 eps:float=1e-8 "
                             "weight_decay:float=0.01 * clip_norm:float?")},
  };
  for (const auto& [name, schema] : table)
    if (name == kind) return &schema;
  return nullptr;
}

std::string_view optimizer_names() { return "sgd, momentum, adam, adamw"; }

}  // namespace gradc
