// Schemas of attributes (of op calls, optimizers and initializers); the values are gradc/Attr.h's.
//
// A schema is written as a short string in the op table, e.g. "axes:ints? keepdims:bool=false":
// each word is NAME:KIND, then `?` (optional, no default) or `=VALUE` (default), or nothing
// (required). Kinds: int, float (accepts ints), bool, name, string, ints (a list of integers),
// pair (two integers; a single integer n means [n, n]), value (a number or a name). A word `*`
// makes the names after it keyword-only, as in Python: "lr:value=0.001 * clip_norm:float?".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gradc/Attr.h"
#include "runtime/Format.h"

namespace gradc {

enum class AttrKind { Int, Float, Bool, Name, String, Ints, Pair, Value };

struct AttrSpec {
  std::string name;
  AttrKind kind;
  bool required = false;
  std::optional<Attr> default_value;  // absent and optional: the op decides
  bool keyword_only = false;          // after `*` in the schema: never bound by position
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
