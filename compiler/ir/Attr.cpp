#include "ir/Attr.h"

#include <algorithm>
#include <charconv>

#include <fmt/ranges.h>

namespace gradc {

Attrs::Attrs(std::initializer_list<std::pair<std::string, Attr>> list) {
  for (auto& [name, value] : list) set(name, value);
}

const Attr* Attrs::find(std::string_view name) const {
  for (const NamedAttr& a : items_)
    if (a.name == name) return &a.value;
  return nullptr;
}

const Attr& Attrs::get(std::string_view name) const {
  const Attr* a = find(name);
  GRADC_ASSERT(a != nullptr, "attribute '{}' is not bound", name);
  return *a;
}

void Attrs::set(std::string name, Attr value, SourceLoc loc) {
  for (NamedAttr& a : items_)
    if (a.name == name) {
      a.value = std::move(value);
      a.loc = std::move(loc);
      return;
    }
  items_.push_back({std::move(name), std::move(value), std::move(loc)});
}

void Attrs::erase(std::string_view name) {
  std::erase_if(items_, [&](const NamedAttr& a) { return a.name == name; });
}

static std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

// Shortest text that reads back as the same double, always recognisable as a float.
static std::string float_text(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // "n": inf and nan
  return s;
}

std::string to_string(const Attr& a) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) return fmt::format("{}", v);
        if constexpr (std::is_same_v<T, double>) return float_text(v);
        if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
        if constexpr (std::is_same_v<T, Ident>) return v.text;
        if constexpr (std::is_same_v<T, std::string>) return quote(v);
        if constexpr (std::is_same_v<T, std::vector<int64_t>>)
          return fmt::format("[{}]", fmt::join(v, ", "));
      },
      a.value);
}

static AttrKind parse_kind(std::string_view k) {
  if (k == "int") return AttrKind::Int;
  if (k == "float") return AttrKind::Float;
  if (k == "bool") return AttrKind::Bool;
  if (k == "name") return AttrKind::Name;
  if (k == "string") return AttrKind::String;
  if (k == "ints") return AttrKind::Ints;
  if (k == "pair") return AttrKind::Pair;
  if (k == "value") return AttrKind::Value;
  GRADC_ASSERT(false, "unknown attribute kind '{}' in a schema", k);
}

static Attr parse_default(AttrKind kind, std::string_view text) {
  if (text == "true" || text == "false") return Attr(text == "true");
  if (kind == AttrKind::Name) return Attr(Ident{std::string(text)});
  if (kind == AttrKind::Float || kind == AttrKind::Value) {
    double v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    GRADC_ASSERT(ec == std::errc() && p == text.data() + text.size(), "bad default '{}'", text);
    return Attr(v);
  }
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  GRADC_ASSERT(ec == std::errc() && p == text.data() + text.size(), "bad default '{}'", text);
  if (kind == AttrKind::Pair) return Attr(std::vector<int64_t>{v, v});
  if (kind == AttrKind::Ints) return Attr(std::vector<int64_t>{v});
  return Attr(v);
}

std::vector<AttrSpec> parse_schema(std::string_view schema) {
  std::vector<AttrSpec> specs;
  bool keyword_only = false;
  size_t pos = 0;
  while (pos < schema.size()) {
    if (schema[pos] == ' ') {
      ++pos;
      continue;
    }
    size_t end = std::min(schema.find(' ', pos), schema.size());
    std::string_view word = schema.substr(pos, end - pos);
    pos = end;
    if (word == "*") {
      GRADC_ASSERT(!keyword_only, "schema '{}' has two '*'", schema);
      keyword_only = true;
      continue;
    }
    size_t colon = word.find(':');
    GRADC_ASSERT(colon != std::string_view::npos, "schema word '{}' lacks a kind", word);
    AttrSpec spec;
    spec.name = std::string(word.substr(0, colon));
    spec.keyword_only = keyword_only;
    std::string_view rest = word.substr(colon + 1);
    size_t eq = rest.find('=');
    if (!rest.empty() && rest.back() == '?') {
      spec.kind = parse_kind(rest.substr(0, rest.size() - 1));
    } else if (eq != std::string_view::npos) {
      spec.kind = parse_kind(rest.substr(0, eq));
      spec.default_value = parse_default(spec.kind, rest.substr(eq + 1));
    } else {
      spec.kind = parse_kind(rest);
      spec.required = true;
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

static std::string_view kind_text(AttrKind k) {
  switch (k) {
    case AttrKind::Int: return "an integer";
    case AttrKind::Float: return "a number";
    case AttrKind::Bool: return "true or false";
    case AttrKind::Name: return "a name";
    case AttrKind::String: return "a string";
    case AttrKind::Ints: return "a list of integers like [0, 1]";
    case AttrKind::Pair: return "an integer or a list of two integers like [2, 2]";
    case AttrKind::Value: return "a number or the name of an input";
  }
  return "?";
}

// Converts a written value to the schema's kind, or nullopt when it does not fit.
static std::optional<Attr> convert(AttrKind kind, const Attr& a) {
  switch (kind) {
    case AttrKind::Int:
      if (a.is_int()) return a;
      break;
    case AttrKind::Float:
      if (a.is_number()) return Attr(a.as_number());
      break;
    case AttrKind::Bool:
      if (std::holds_alternative<bool>(a.value)) return a;
      break;
    case AttrKind::Name:  // PyTorch spells these as strings: approximate='tanh'
      if (a.is_ident()) return a;
      if (const auto* text = std::get_if<std::string>(&a.value)) return Attr(Ident{*text});
      break;
    case AttrKind::String:
      if (std::holds_alternative<std::string>(a.value)) return a;
      break;
    case AttrKind::Ints:
      if (a.is_int()) return Attr(std::vector<int64_t>{a.as_int()});
      if (std::holds_alternative<std::vector<int64_t>>(a.value)) return a;
      break;
    case AttrKind::Pair:
      if (a.is_int()) return Attr(std::vector<int64_t>{a.as_int(), a.as_int()});
      if (std::holds_alternative<std::vector<int64_t>>(a.value) && a.as_ints().size() == 2) return a;
      break;
    case AttrKind::Value:
      if (a.is_number()) return Attr(a.as_number());
      if (a.is_ident()) return a;
      break;
  }
  return std::nullopt;
}

Attrs bind_attrs(const std::vector<AttrSpec>& schema, std::string_view what,
                 const std::vector<NamedAttr>& positional, const Attrs& keywords,
                 const SourceLoc& call_loc) {
  size_t by_position = 0;  // the names before `*`
  while (by_position < schema.size() && !schema[by_position].keyword_only) ++by_position;
  if (positional.size() > by_position) {
    const NamedAttr& extra = positional[by_position];
    if (by_position == schema.size())
      fail(extra.loc, "{} takes at most {} argument{}, got {}", what, schema.size(), schema.size() == 1 ? "" : "s",
           positional.size());
    std::vector<std::string> first, by_name;
    for (size_t i = 0; i < schema.size(); ++i) (i < by_position ? first : by_name).push_back(schema[i].name);
    std::vector<std::string> written;
    for (const std::string& k : by_name) written.push_back(fmt::format("{}={}", k, to_string(extra.value)));
    std::string names = first.empty() ? "" : fmt::format(" ({})", fmt::join(first, ", "));
    fail(extra.loc, "{} takes at most {} positional argument{}{}, got {}: {} {} keyword-only (write {})", what,
         by_position, by_position == 1 ? "" : "s", names, positional.size(), fmt::join(by_name, " and "),
         by_name.size() == 1 ? "is" : "are", fmt::join(written, " or "));
  }
  for (const NamedAttr& kw : keywords) {
    auto it = std::find_if(schema.begin(), schema.end(),
                           [&](const AttrSpec& s) { return s.name == kw.name; });
    if (it == schema.end()) {
      std::vector<std::string> names;
      for (const AttrSpec& s : schema) names.push_back(s.name);
      if (names.empty()) fail(kw.loc, "{} takes no attributes, got '{}'", what, kw.name);
      fail(kw.loc, "{} has no attribute '{}' (expected one of: {})", what, kw.name,
           fmt::join(names, ", "));
    }
    if (static_cast<size_t>(it - schema.begin()) < positional.size())
      fail(kw.loc, "{}: '{}' is given twice, by position and by name", what, kw.name);
  }
  Attrs bound;
  for (size_t i = 0; i < schema.size(); ++i) {
    const AttrSpec& spec = schema[i];
    const NamedAttr* given = nullptr;
    if (i < positional.size()) given = &positional[i];
    for (const NamedAttr& kw : keywords)
      if (kw.name == spec.name) given = &kw;
    if (given == nullptr) {
      if (spec.required) fail(call_loc, "{}: missing attribute '{}' ({})", what, spec.name, kind_text(spec.kind));
      if (spec.default_value) bound.set(spec.name, *spec.default_value);
      continue;
    }
    std::optional<Attr> value = convert(spec.kind, given->value);
    if (!value)
      fail(given->loc, "{}: '{}' must be {}, got {}", what, spec.name, kind_text(spec.kind),
           to_string(given->value));
    bound.set(spec.name, std::move(*value), given->loc);
  }
  return bound;
}

}  // namespace gradc
