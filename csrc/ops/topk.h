// Launchers of kernels/topk.cuh (defined in ops/topk.cu). Plain C++, as
// ops/relu.h. Instantiated for T = float, double and labels L = int32_t,
// int64_t.
#pragma once

#include <cstdint>

#include "common/stream.h"

namespace dc::ops {

// The largest k supported by topk (one selection pass per value).
constexpr int kTopkMaxK = 32;

// For each of n rows of `classes` scores: the k highest, in descending
// order, with their column indices. Order: NaN above every number, then by
// value, ties (equal values, -0.0 == 0.0, NaN with NaN) broken by the lower
// index. 1 <= k <= min(classes, kTopkMaxK).
template <typename T>
void topk(const T* scores, T* values, std::int64_t* indices, std::int64_t n,
          std::int64_t classes, int k, Stream s);

// miss[r] = 1 when labels[r] is not among row r's top k (in the order
// above: its rank, the number of entries ordered before it, is >= k), else
// 0. Labels outside [0, classes) count as misses and are never used as an
// index. 1 <= k <= classes (no kTopkMaxK limit: one counting pass).
template <typename T, typename L>
void topk_miss(const T* scores, const L* labels, std::int32_t* miss, std::int64_t n,
               std::int64_t classes, std::int64_t k, Stream s);

}  // namespace dc::ops
