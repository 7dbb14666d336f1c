// Launchers of kernels/dropout.cuh and kernels/philox.cuh (defined in
// ops/dropout.cu). Plain C++, as ops/relu.h.
#pragma once

#include <cstdint>

#include "common/stream.h"

namespace dc::ops {

// What one dropout launch multiplies each element by (kernels/dropout.cuh):
//   masked:   m = (philox word of the element >= threshold) ? keep_scale : 0
//   unmasked: m = keep_scale                      (evaluation mode)
// and y = x * m. The caller derives threshold and keep_scale from p and the
// scaling convention (dropout_threshold below; deepconv/ops/dropout.py).
template <typename T>
struct DropoutParams {
  std::uint64_t seed;      // Philox key
  std::uint64_t step;      // high half of the Philox counter
  std::uint32_t threshold; // an element is dropped when its word is < threshold
  T keep_scale;            // multiplier of a kept element
  bool masked;             // false: every element is kept (no random numbers drawn)
};

// The threshold that drops an element with probability p (0 <= p < 1):
// round(p * 2^32), so a uniform 32-bit word is below it with probability
// threshold / 2^32, within 2^-33 of p.
std::uint32_t dropout_threshold(double p);

// y = x * m elementwise over n elements, m as above; x == y allowed. Used
// for the forward (x -> y) and, with the same params, the backward
// (dy -> dx). threads_per_block = 0 picks the default; any other value (a
// multiple of 32, at most 1024) must give bitwise the same y: an element's
// random word depends on its index, never on the launch configuration.
template <typename T>
void dropout_apply(const T* x, T* y, std::int64_t n, const DropoutParams<T>& params,
                   int threads_per_block, Stream s);

// out[i] = Philox4x32-10(counters[i], keys[i]) for i < n; counters and out
// are (n, 4) words, keys (n, 2). For known-answer tests of the generator.
void philox4x32_10(const std::uint32_t* counters, const std::uint32_t* keys, std::uint32_t* out,
                   std::int64_t n, Stream s);

}  // namespace dc::ops
