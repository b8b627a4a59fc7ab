// Element types and static tensor types of the Graph IR.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace gradc {

enum class DType : uint8_t { F32, F64, I32 };

std::string_view dtype_name(DType t);                   // "f32"
std::optional<DType> parse_dtype(std::string_view s);   // "f32" -> F32
bool is_float(DType t);
int64_t dtype_bytes(DType t);

using Shape = std::vector<int64_t>;

// A tensor type is a dtype and a static shape; rank 0 is a scalar.
struct TensorType {
  DType dtype = DType::F32;
  Shape shape;

  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  bool is_scalar() const { return shape.empty(); }
  int64_t numel() const;
  bool operator==(const TensorType&) const = default;
};

// The element count of `s`, or nullopt past kMaxElements (so that no product overflows).
inline constexpr int64_t kMaxElements = int64_t{1} << 48;
std::optional<int64_t> checked_numel(const Shape& s);

std::string to_string(const Shape& s);        // "[64, 784]"
std::string to_string(const TensorType& t);   // "f32[64, 784]"

}  // namespace gradc

template <>
struct fmt::formatter<gradc::TensorType> : fmt::formatter<std::string_view> {
  auto format(const gradc::TensorType& t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(gradc::to_string(t), ctx);
  }
};
