// The median of timed runs, as every bench program reports them (the upper middle of an even count).
#pragma once

#include <algorithm>
#include <vector>

namespace gradc::bench_util {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace gradc::bench_util
