#include "ir/Types.h"

#include <fmt/ranges.h>

namespace gradc {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::I32: return "i32";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view s) {
  if (s == "f32") return DType::F32;
  if (s == "f64") return DType::F64;
  if (s == "i32") return DType::I32;
  return std::nullopt;
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F64; }

int64_t dtype_bytes(DType t) { return t == DType::F64 ? 8 : 4; }

int64_t TensorType::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::optional<int64_t> checked_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0 || (d > 0 && n > kMaxElements / d)) return std::nullopt;
    n *= d;
  }
  return n;
}

std::string to_string(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

std::string to_string(const TensorType& t) {
  return fmt::format("{}{}", dtype_name(t.dtype), to_string(t.shape));
}

}  // namespace gradc
