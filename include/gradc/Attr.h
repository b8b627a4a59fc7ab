// Attribute values of op calls, optimizers and initializers: what GraphBuilder calls take
// (`b.softmax(x, {{"axis", 1}})`) and a Graph's nodes hold. Their schemas are ir/Attr.h's.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
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

}  // namespace gradc
