#include "ir/Kernel.h"

#include <fmt/ranges.h>

#include "ir/Printer.h"

namespace gradc {

namespace {

const char* kind_name(KernelKind k) {
  switch (k) {
    case KernelKind::Loop: return "loop";
    case KernelKind::MatMul: return "matmul";
    case KernelKind::Conv: return "conv";
    case KernelKind::RowWise: return "rowwise";
    case KernelKind::Alone: return "alone";
  }
  return "?";
}

std::string where(const KernelProgram& p, const std::vector<std::string>& names, const Location& l) {
  switch (l.kind) {
    case Location::None: return "-";
    case Location::Arena: return fmt::format("arena+{}", l.offset);
    case Location::Leaf: return "slot " + names[static_cast<size_t>(l.node)];
    case Location::Output: return "output " + names[static_cast<size_t>(l.node)];
    case Location::Assigned: return "into " + names[static_cast<size_t>(l.node)];
  }
  (void)p;
  return "?";
}

std::string values(const KernelProgram& p, const std::vector<std::string>& names, const std::vector<ValueId>& ids) {
  std::vector<std::string> parts;
  for (ValueId v : ids) {
    std::string at = p.locations.empty() ? "" : " @ " + where(p, names, p.locations[static_cast<size_t>(v)]);
    parts.push_back(fmt::format("{} : {}{}", names[static_cast<size_t>(v)], p.graph[v].type, at));
  }
  return parts.empty() ? "(none)" : fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace

std::string print_kernels(const KernelProgram& p) {
  std::vector<std::string> names = value_names(p.graph);
  std::string out = fmt::format("# {} kernels, {} final copies\n", p.kernels.size(), p.copies.size());
  for (size_t i = 0; i < p.kernels.size(); ++i) {
    const Kernel& k = p.kernels[i];
    out += fmt::format("\nkernel k{}.{}\n", i, k.name);
    out += fmt::format("  kind: {}\n", kind_name(k.kind));
    std::vector<std::string> members;
    for (ValueId m : k.members) members.push_back(fmt::format("{} = {}", names[static_cast<size_t>(m)], op_info(p.graph[m].op).name));
    out += fmt::format("  members: {}\n", fmt::join(members, ", "));
    if (k.kind == KernelKind::MatMul || k.kind == KernelKind::Conv)
      out += fmt::format("  operands: {}{}, {}{}\n", names[static_cast<size_t>(k.a)], k.a_transposed ? " (read transposed)" : "",
                         names[static_cast<size_t>(k.b)], k.b_transposed ? " (read transposed)" : "");
    if (k.kind == KernelKind::RowWise) out += fmt::format("  rows of: {}\n", names[static_cast<size_t>(k.rows)]);
    out += fmt::format("  inputs: {}\n", values(p, names, k.inputs));
    out += fmt::format("  outputs: {}\n", values(p, names, k.outputs));
    for (const auto& [v, why] : k.unfused) out += fmt::format("  not fused: {}: {}\n", names[static_cast<size_t>(v)], why);
    std::string loops = fmt::format("{}", fmt::join(k.domain, " x "));
    if (k.kind == KernelKind::MatMul) loops += fmt::format(" x {} (sum)", p.graph[k.a].type.shape[k.a_transposed ? p.graph[k.a].type.rank() - 2 : p.graph[k.a].type.rank() - 1]);
    if (k.kind == KernelKind::Conv) {
      const Shape& w = p.graph[k.b].type.shape;  // [O, C, KH, KW]: each result sums over C x KH x KW
      loops += fmt::format(" x {} x {} x {} (sum)", w[1], w[2], w[3]);
    }
    out += fmt::format("  loops: {}\n", k.domain.empty() ? "(one element)" : loops);
    out += fmt::format("  flops: {}, bytes: {}\n", k.flops, k.bytes);
  }
  for (const FinalCopy& c : p.copies)
    out += fmt::format("\ncopy {} : {} from {} to {}\n", names[static_cast<size_t>(c.value)], p.graph[c.value].type,
                       where(p, names, c.from), where(p, names, c.to));
  return out;
}

std::string print_plan(const KernelProgram& p) {
  std::vector<std::string> names = value_names(p.graph);
  std::string out = fmt::format("# {} buffers in the arena; live ranges are kernel indices ({} = the final copies)\n",
                                p.buffers.size(), p.kernels.size());
  out += fmt::format("{:<24} {:>12} {:>12} {:>10}\n", "value", "bytes", "offset", "live");
  for (const ArenaBuffer& b : p.buffers)
    out += fmt::format("{:<24} {:>12} {:>12} {:>10}\n", names[static_cast<size_t>(b.value)], b.bytes, b.offset,
                       fmt::format("{}..{}", b.first, b.last));
  out += fmt::format("arena: {} bytes\n", p.arena_bytes);
  out += fmt::format("naive: {} bytes\n", p.naive_bytes);
  out += fmt::format("lower bound: {} bytes\n", p.lower_bound_bytes);
  out += fmt::format("# naive: every value the graph computes in a buffer of its own (no fusion, no sharing);\n"
                     "# these {} buffers each on its own would take {} bytes; lower bound: the most bytes live at once\n",
                     p.buffers.size(), p.unshared_bytes);
  return out;
}

}  // namespace gradc
