// The runtime's tensor: a dtype, a static shape and the bytes, row-major. What checkpoints,
// datasets and (later) the Session hand around. Needs neither LLVM nor the compiler.
#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "gradc/Error.h"
#include "gradc/Types.h"

namespace gradc {

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }

// Tensor bytes start on a 64-byte cache line. malloc's 16 bytes would put a large tensor at
// 16 past a line (glibc's mmap'ed blocks), so a GEMM task's 128-byte column chunk of every row
// would share a line with its neighbour's, which the other thread is writing at the same time.
template <typename T> struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheLineAllocator() = default;
  template <typename U> CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, size_t n) { ::operator delete(p, n * sizeof(T), kAlign); }
  template <typename U> bool operator==(const CacheLineAllocator<U>&) const { return true; }
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(TensorType type)  // zero-filled
      : type_(std::move(type)), bytes_(static_cast<size_t>(type_.numel() * dtype_bytes(type_.dtype))) {}

  template <typename T>
  static Tensor of(Shape shape, const std::vector<T>& values) {
    Tensor t(TensorType{dtype_of<T>(), std::move(shape)});
    if (static_cast<int64_t>(values.size()) != t.numel())
      misuse(__LINE__, "values.size() == numel()", std::to_string(values.size()) + " values for " + to_string(t.type()));
    if (!values.empty()) std::memcpy(t.data(), values.data(), t.bytes());
    return t;
  }

  const TensorType& type() const { return type_; }
  DType dtype() const { return type_.dtype; }
  const Shape& shape() const { return type_.shape; }
  int64_t numel() const { return type_.numel(); }
  size_t bytes() const { return bytes_.size(); }
  std::byte* data() { return bytes_.data(); }
  const std::byte* data() const { return bytes_.data(); }

  // The elements as T; asserts that T is the dtype's C++ type.
  template <typename T> T* as() {
    if (dtype_of<T>() != dtype())
      misuse(__LINE__, "dtype_of<T>() == dtype()",
             "a " + std::string(dtype_name(dtype())) + " tensor read as " + std::string(dtype_name(dtype_of<T>())));
    return reinterpret_cast<T*>(bytes_.data());
  }
  template <typename T> const T* as() const { return const_cast<Tensor*>(this)->as<T>(); }

  bool operator==(const Tensor&) const = default;

 private:
  // GRADC_ASSERT's message without fmt (runtime/Format.h), which public headers do not include.
  [[noreturn]] static void misuse(int line, const char* cond, const std::string& what) {
    throw Error({__FILE__, line, 0}, std::string("internal error: ") + cond + " failed: " + what);
  }

  TensorType type_;
  std::vector<std::byte, CacheLineAllocator<std::byte>> bytes_;
};

// The first element of a float tensor that is NaN or infinite, or -1 (always for i32). For
// checkpoints, which are written and read only of finite params and state.
inline int64_t first_nonfinite(const Tensor& t) {
  auto scan = [&](const auto* v) -> int64_t {
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!(v[i] - v[i] == 0)) return i;  // NaN for NaN and inf (no <cmath> in public headers)
    return -1;
  };
  if (t.dtype() == DType::F32) return scan(t.as<float>());
  if (t.dtype() == DType::F64) return scan(t.as<double>());
  return -1;
}
inline double element_as_double(const Tensor& t, int64_t i) {
  return t.dtype() == DType::F32 ? double(t.as<float>()[i]) : t.dtype() == DType::F64 ? t.as<double>()[i] : t.as<int32_t>()[i];
}

}  // namespace gradc
