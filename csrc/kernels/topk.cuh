// Top-k selection per row, and the top-k miss of a label (for top-1 / top-5
// error in evaluation).
//
//   topk:       values[r, t], indices[r, t]  for t < k: row r's t-th entry in
//               the order below      scores: (n, classes); values: (n, k);
//               indices: (n, k) int64
//   topk_miss:  miss[r] = rank(r, labels[r]) >= k      miss: (n,) int32
//               rank(r, c) = number of entries of row r ordered before (r, c)
//
// The order is total, so the result is unique: NaN before every number
// (as torch.topk), then larger values first, and equal values (-0.0 and 0.0
// are equal; so are two NaNs) by the lower column index. Outputs are
// written with `=`.
//
// One warp per row, barrier-free (only warp shuffles; rows are uniform
// across a warp, so every shuffle has all 32 lanes). topk selects k times:
// round t scans the row (lanes striding over it) for the first entry in the
// order that comes after the entry chosen in round t - 1, then a butterfly
// over the 32 lanes' candidates picks the winner. That is k passes over a
// row that stays in cache, k <= 32, and no per-thread lists (which would be
// local memory). Round 0 starts after the sentinel (NaN, column -1), which
// comes before every entry. topk_miss needs one pass: it counts the entries
// before the label's, an exact integer sum; so "label among topk's indices"
// and "topk_miss == 0" agree by construction.
#pragma once

#include <cstdint>
#include <limits>

#include "common/portable.cuh"

namespace dc {

// Whether entry (a, col_a) comes before (b, col_b) in the order above.
template <typename T>
__device__ __forceinline__ bool topk_before(T a, std::int64_t col_a, T b, std::int64_t col_b) {
  const bool a_nan = a != a;
  const bool b_nan = b != b;
  if (a_nan != b_nan) return a_nan;
  if (!a_nan && a != b) return a > b;
  return col_a < col_b;
}

template <typename T>
__global__ void topk_kernel(const T* __restrict__ scores,        // (n, classes)
                            T* __restrict__ values,              // (n, k)
                            std::int64_t* __restrict__ indices,  // (n, k)
                            std::int64_t n, std::int64_t classes, int k) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = blockDim.x / 32;
  for (std::int64_t r = blockIdx.x * warps + threadIdx.x / 32; r < n; r += gridDim.x * warps) {
    const T* x = scores + r * classes;
    T prev = std::numeric_limits<T>::quiet_NaN();
    std::int64_t prev_col = -1;
    for (int t = 0; t < k; ++t) {
      // This lane's first entry after (prev, prev_col); col == classes: none.
      T best = T(0);
      std::int64_t best_col = classes;
      for (std::int64_t j = lane; j < classes; j += 32) {
        const T v = x[j];
        if (topk_before(prev, prev_col, v, j) &&
            (best_col == classes || topk_before(v, j, best, best_col))) {
          best = v;
          best_col = j;
        }
      }
      for (int offset = 16; offset > 0; offset /= 2) {
        const T other = __shfl_xor_sync(0xffffffffu, best, offset);
        const std::int64_t other_col = __shfl_xor_sync(0xffffffffu, best_col, offset);
        if (other_col != classes && (best_col == classes || topk_before(other, other_col, best, best_col))) {
          best = other;
          best_col = other_col;
        }
      }
      if (lane == 0) {
        values[r * k + t] = best;
        indices[r * k + t] = best_col;
      }
      prev = best;
      prev_col = best_col;
    }
  }
}

template <typename T, typename L>
__global__ void topk_miss_kernel(const T* __restrict__ scores,  // (n, classes)
                                 const L* __restrict__ labels,  // (n,)
                                 std::int32_t* __restrict__ miss,  // (n,)
                                 std::int64_t n, std::int64_t classes, std::int64_t k) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = blockDim.x / 32;
  for (std::int64_t r = blockIdx.x * warps + threadIdx.x / 32; r < n; r += gridDim.x * warps) {
    const std::int64_t label = std::int64_t(labels[r]);
    if (label < 0 || label >= classes) {  // the same for the whole warp
      if (lane == 0) miss[r] = 1;
      continue;
    }
    const T* x = scores + r * classes;
    const T target = x[label];
    std::int64_t before = 0;
    for (std::int64_t j = lane; j < classes; j += 32) {
      before += topk_before(x[j], j, target, label) ? 1 : 0;
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      before += __shfl_xor_sync(0xffffffffu, before, offset);
    }
    if (lane == 0) miss[r] = before >= k ? 1 : 0;
  }
}

}  // namespace dc
