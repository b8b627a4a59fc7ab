// gradc's fmt-based helpers, for the compiler and the runtime alike: fail() and GRADC_ASSERT
// (which throw the public gradc::Error) and fmt formatters of the public value types.
//
// They live here, not in include/gradc/, so that the public headers need the standard library
// alone; the runtime is the lowest layer (the compiler may use it, never the reverse), so both
// include this one copy.
#pragma once

#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gradc/Error.h"
#include "gradc/Types.h"

namespace gradc {

template <typename... Args>
[[noreturn]] void fail(const SourceLoc& loc, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(loc, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace gradc

// Internal invariant: a failure is a gradc bug, reported as an Error naming the place.
#define GRADC_ASSERT(cond, ...)                                                              \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw ::gradc::Error({__FILE__, __LINE__, 0},                                           \
                           "internal error: " #cond " failed: " + fmt::format(__VA_ARGS__)); \
  } while (0)

template <>
struct fmt::formatter<gradc::TensorType> : fmt::formatter<std::string_view> {
  auto format(const gradc::TensorType& t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(gradc::to_string(t), ctx);
  }
};
