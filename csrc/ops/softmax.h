// Launchers of kernels/softmax.cuh (defined in ops/softmax.cu). Plain C++,
// as ops/relu.h. Instantiated for T = float, double and labels L = int32_t,
// int64_t.
#pragma once

#include <cstdint>

#include "common/stream.h"

namespace dc::ops {

// probs[r, :] = softmax(logits[r, :]) for each of n rows of k classes,
// computed stably (row max subtracted). probs must not overlap logits.
template <typename T>
void softmax_fprop(const T* logits, T* probs, std::int64_t n, std::int64_t k, Stream s);

// Fused softmax + cross-entropy: probs as softmax_fprop, and
//   losses[r] = logsumexp(logits[r, :]) - logits[r, labels[r]]   (n,)
//   loss[0]   = sum(losses) / n     (one value; fixed summation order)
// A label outside [0, k) gives a NaN loss for its row and is never used as
// an index (deepconv.ops validates labels before calling). n >= 1.
template <typename T, typename L>
void softmax_xent_fprop(const T* logits, const L* labels, T* probs, T* losses, T* loss,
                        std::int64_t n, std::int64_t k, Stream s);

// dlogits[r, j] = (probs[r, j] - (j == labels[r])) * scale; dlogits == probs
// allowed (in place). A label outside [0, k) subtracts nothing.
template <typename T, typename L>
void softmax_xent_bprop(const T* probs, const L* labels, T* dlogits, std::int64_t n,
                        std::int64_t k, T scale, Stream s);

}  // namespace dc::ops
