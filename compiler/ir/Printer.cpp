#include "ir/Printer.h"

#include <set>

#include <fmt/ranges.h>

namespace gradc {

std::vector<std::string> value_names(const Graph& g) {
  std::set<std::string, std::less<>> used;
  for (const Node& n : g.nodes)
    if (!n.name.empty()) used.insert(n.name);
  std::vector<std::string> names(g.nodes.size());
  int counter = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (!n.name.empty()) {
      names[i] = n.name;
    } else if (n.kind == NodeKind::Constant && n.weak) {
      names[i] = to_string(Attr(n.constant));
    } else {
      std::string name;
      do name = fmt::format("%{}", counter++);
      while (used.count(name));
      names[i] = name;
    }
  }
  return names;
}

namespace {

bool is_inline(const Node& n) { return n.kind == NodeKind::Constant && n.weak && n.name.empty(); }

std::string attr_list(const Attrs& attrs) {
  std::vector<std::string> parts;
  for (const NamedAttr& a : attrs) parts.push_back(fmt::format("{}={}", a.name, to_string(a.value)));
  return fmt::format("{}", fmt::join(parts, ", "));
}

std::string_view leaf_keyword(NodeKind k) {
  switch (k) {
    case NodeKind::Input: return "input";
    case NodeKind::Param: return "param";
    case NodeKind::State: return "state";
    default: return "";
  }
}

}  // namespace

std::string print_spec(const Graph& g) {
  std::vector<std::string> names = value_names(g);
  std::string out = fmt::format("model {}\n", g.name);

  std::string leaves, body;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.is_leaf() && n.kind != NodeKind::Constant) {
      leaves += fmt::format("{} {} : {}", leaf_keyword(n.kind), names[i], n.type);
      if (n.init) {
        leaves += " = " + n.init->kind;
        if (!n.init->args.empty()) leaves += fmt::format("({})", attr_list(n.init->args));
      }
      leaves += "\n";
    } else if (n.kind == NodeKind::Constant) {
      if (!is_inline(n)) body += fmt::format("{} : {} = {}\n", names[i], n.type, to_string(Attr(n.constant)));
    } else {
      std::vector<std::string> parts;
      for (ValueId a : n.args) parts.push_back(names[static_cast<size_t>(a)]);
      if (!n.attrs.empty()) parts.push_back(attr_list(n.attrs));
      body += fmt::format("{} : {} = {}({})\n", names[i], n.type, op_info(n.op).name, fmt::join(parts, ", "));
    }
  }
  std::string tail;
  for (const Output& o : g.outputs) tail += fmt::format("output {}\n", names[static_cast<size_t>(o.value)]);
  if (g.minimize) {
    const Minimize& m = *g.minimize;
    tail += fmt::format("minimize {} with {}({})\n", names[static_cast<size_t>(m.loss)], m.optimizer.kind,
                        attr_list(m.optimizer.args));
  }
  for (const Assign& a : g.assigns)
    tail += fmt::format("assign {} = {}\n", names[static_cast<size_t>(a.target)], names[static_cast<size_t>(a.value)]);

  for (const std::string* section : {&leaves, &body, &tail})
    if (!section->empty()) out += "\n" + *section;
  return out;
}

namespace {

std::string dot_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string print_dot(const Graph& g) {
  std::vector<std::string> names = value_names(g);
  std::set<ValueId> outputs;
  for (const Output& o : g.outputs) outputs.insert(o.value);
  std::string out = fmt::format("digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"monospace\", shape=box];\n",
                                dot_escape(g.name));
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& n = g[id];
    std::string what, style;
    switch (n.kind) {
      case NodeKind::Input: what = "input"; style = ", style=filled, fillcolor=\"#dde8f8\""; break;
      case NodeKind::Param: what = "param"; style = ", style=filled, fillcolor=\"#f8ecd0\""; break;
      case NodeKind::State: what = "state"; style = ", style=filled, fillcolor=\"#e8e8e8\""; break;
      case NodeKind::Constant: what = "constant"; style = ", shape=plaintext"; break;
      case NodeKind::Op: what = std::string(op_info(n.op).name); break;
    }
    if (g.minimize && g.minimize->loss == id) style += ", peripheries=2";
    if (outputs.count(id)) style += ", color=\"#2060c0\", penwidth=2";
    out += fmt::format("  n{} [label=\"{}\\n{} {}\"{}];\n", id, dot_escape(names[static_cast<size_t>(id)]),
                       what, to_string(n.type), style);
  }
  for (ValueId id = 0; id < g.size(); ++id)
    for (ValueId a : g[id].args) out += fmt::format("  n{} -> n{};\n", a, id);
  for (const Assign& a : g.assigns)
    out += fmt::format("  n{} -> n{} [style=dashed, label=\"assign\"];\n", a.value, a.target);
  return out + "}\n";
}

}  // namespace gradc
