// Element types and static tensor types, shared by the compiler and the runtime (header-only,
// so that the runtime links no part of the compiler).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// The most dims a tensor may have (numpy's limit before 2.0): specs, .npy, safetensors and IDX
// files alike, so that no pass recursing over dims can run out of stack.
inline constexpr int64_t kMaxRank = 32;

// Size arithmetic (element counts, bytes, arena offsets, FLOPs, sizes read from file headers)
// goes through these, the one place that knows about overflow. checked_*: nullopt when the
// result does not fit in int64. saturating_*: INT64_MAX instead, for totals that are only
// compared with a limit or printed (a sum of sizes, a FLOP count); operands must be >= 0.
std::optional<int64_t> checked_mul(int64_t a, int64_t b);
std::optional<int64_t> checked_add(int64_t a, int64_t b);
int64_t saturating_mul(int64_t a, int64_t b);
int64_t saturating_add(int64_t a, int64_t b);
int64_t saturating_bytes(const TensorType& t);  // numel * element size

std::string to_string(const Shape& s);        // "[64, 784]"
std::string to_string(const TensorType& t);   // "f32[64, 784]"

// ---- definitions
inline std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::I32: return "i32";
  }
  return "?";
}

inline std::optional<DType> parse_dtype(std::string_view s) {
  if (s == "f32") return DType::F32;
  if (s == "f64") return DType::F64;
  if (s == "i32") return DType::I32;
  return std::nullopt;
}

inline bool is_float(DType t) { return t == DType::F32 || t == DType::F64; }

inline int64_t dtype_bytes(DType t) { return t == DType::F64 ? 8 : 4; }

// Whether a finite number keeps its meaning as an f32: not inf (beyond 3.4e38), and not 0 unless
// it is 0 (below the smallest subnormal, 1.4e-45). For literals, initializers, hyper-parameters
// and fed scalars that an f32 model would take.
inline bool fits_f32(double v) {
  float f = static_cast<float>(v);
  return f - f == 0 && (v == 0 || f != 0);  // f - f is NaN for inf and NaN (no <cmath> in this header)
}

inline int64_t TensorType::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

inline std::optional<int64_t> checked_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0 || (d > 0 && n > kMaxElements / d)) return std::nullopt;
    n *= d;
  }
  return n;
}

inline std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<int64_t> checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline int64_t saturating_mul(int64_t a, int64_t b) { return checked_mul(a, b).value_or(INT64_MAX); }
inline int64_t saturating_add(int64_t a, int64_t b) { return checked_add(a, b).value_or(INT64_MAX); }

inline int64_t saturating_bytes(const TensorType& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n = saturating_mul(n, d);
  return saturating_mul(n, dtype_bytes(t.dtype));
}

inline std::string to_string(const Shape& s) {
  std::string text = "[";
  for (size_t i = 0; i < s.size(); ++i) text += (i > 0 ? ", " : "") + std::to_string(s[i]);
  return text + "]";
}

inline std::string to_string(const TensorType& t) {
  return std::string(dtype_name(t.dtype)) + to_string(t.shape);
}

}  // namespace gradc
