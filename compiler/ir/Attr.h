// Attribute values of op calls, optimizers and initializers, and their schemas.
//
// A schema is written as a short string in the op table, e.g. "axes:ints? keepdims:bool=false":
// each word is NAME:KIND, then `?` (optional, no default) or `=VALUE` (default), or nothing
// (required). Kinds: int, float (accepts ints), bool, name, string, ints (a list of integers),
// pair (two integers; a single integer n means [n, n]), value (a number or a name).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "gradc/Error.h"

namespace gradc {

struct Ident {  // a bare name as an attribute value: `lr=lr_schedule`
  std::string text;
  bool operator==(const Ident&) const = default;
};

struct Attr {
  std::variant<int64_t, double, bool, Ident, std::string, std::vector<int64_t>> value;

  Attr() = default;
  Attr(int v) : value(int64_t{v}) {}
  Attr(int64_t v) : value(v) {}
  Attr(double v) : value(v) {}
  Attr(bool v) : value(v) {}
  Attr(Ident v) : value(std::move(v)) {}
  Attr(std::string v) : value(std::move(v)) {}
  Attr(const char* v) : value(std::string(v)) {}
  Attr(std::vector<int64_t> v) : value(std::move(v)) {}
  Attr(std::initializer_list<int64_t> v) : value(std::vector<int64_t>(v)) {}

  bool is_int() const { return std::holds_alternative<int64_t>(value); }
  bool is_number() const { return is_int() || std::holds_alternative<double>(value); }
  bool is_ident() const { return std::holds_alternative<Ident>(value); }
  int64_t as_int() const { return std::get<int64_t>(value); }
  double as_number() const { return is_int() ? static_cast<double>(as_int()) : std::get<double>(value); }
  bool as_bool() const { return std::get<bool>(value); }
  const std::string& as_ident() const { return std::get<Ident>(value).text; }
  const std::vector<int64_t>& as_ints() const { return std::get<std::vector<int64_t>>(value); }
  bool operator==(const Attr&) const = default;
};

// Attributes in schema order once bound; the parser keeps what the user wrote until then.
struct NamedAttr {
  std::string name;
  Attr value;
  SourceLoc loc;
  bool operator==(const NamedAttr& o) const { return name == o.name && value == o.value; }
};

class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<std::string, Attr>> list);

  const Attr* find(std::string_view name) const;
  bool has(std::string_view name) const { return find(name) != nullptr; }
  const Attr& get(std::string_view name) const;  // asserts presence
  void set(std::string name, Attr value, SourceLoc loc = {});
  void erase(std::string_view name);

  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  bool operator==(const Attrs&) const = default;

 private:
  std::vector<NamedAttr> items_;
};

std::string to_string(const Attr& a);  // canonical spelling, parses back to the same Attr

enum class AttrKind { Int, Float, Bool, Name, String, Ints, Pair, Value };

struct AttrSpec {
  std::string name;
  AttrKind kind;
  bool required = false;
  std::optional<Attr> default_value;  // absent and optional: the op decides
};

// "axes:ints? keepdims:bool=false" -> two specs. Schemas are ours, so a bad one asserts.
std::vector<AttrSpec> parse_schema(std::string_view schema);

// Binds positional values and keyword attributes to a schema: checks names and kinds,
// converts (int -> float, n -> [n, n]), fills defaults, reports missing required ones,
// and returns the attributes in schema order. `what` names the callee in messages.
Attrs bind_attrs(const std::vector<AttrSpec>& schema, std::string_view what,
                 const std::vector<NamedAttr>& positional, const Attrs& keywords,
                 const SourceLoc& call_loc);

}  // namespace gradc
