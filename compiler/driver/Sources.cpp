#include "driver/Sources.h"

#include "runtime/Format.h"
#include "runtime/Npy.h"

namespace gradc {

const Source* find_source(const std::vector<Source>& sources, const std::string& name) {
  for (const Source& s : sources)
    if (s.input == name) return &s;
  return nullptr;
}

std::vector<Source> npy_sources(const Graph& spec, const std::vector<std::pair<std::string, std::string>>& files,
                                const SourceChecks& checks) {
  std::vector<Source> sources;
  for (const auto& [name, file] : files) {
    std::optional<ValueId> id = spec.find(name);
    if (!id || spec[*id].kind != NodeKind::Input) fail({file}, "{}: the spec has no input '{}'", checks.where(name), name);
    if (checks.before_load) checks.before_load(spec[*id]);
    if (find_source(sources, name)) fail({file}, "{}: given twice", checks.where(name));
    Source s{name, file, spec[*id].type, load_npy(file), {}};
    if (checks.after_load) checks.after_load(s, sources);
    sources.push_back(std::move(s));
  }
  return sources;
}

}  // namespace gradc
