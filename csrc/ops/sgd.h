// Launcher of kernels/sgd.cuh (defined in ops/sgd.cu). Plain C++, as
// ops/relu.h.
#pragma once

#include <cstdint>

#include "common/stream.h"

namespace dc::ops {

// Tensors per kernel launch: the launch's parameter struct carries one
// SgdTensor per tensor and must stay under CUDA's 4 KiB kernel-parameter
// limit; sgd_update splits longer lists into several launches.
constexpr int kSgdMaxTensorsPerLaunch = 64;

// One parameter tensor to update: n elements each of weights w, velocity v
// and gradient g, with its own hyper-parameters (so biases can take a
// different learning rate or no weight decay).
template <typename T>
struct SgdTensor {
  T* w;
  T* v;
  const T* g;
  std::int64_t n;
  T lr;            // epsilon
  T momentum;      // mu
  T weight_decay;  // lambda
};

// For every tensor, elementwise:
//   v <- momentum*v - weight_decay*lr*w - lr*g
//   w <- w + v
// (the exact rounding is written out in kernels/sgd.cuh). Tensors with n == 0
// are skipped; count == 0 launches nothing.
template <typename T>
void sgd_update(const SgdTensor<T>* tensors, int count, Stream s);

}  // namespace dc::ops

namespace dc {
using ops::kSgdMaxTensorsPerLaunch;
}  // namespace dc
