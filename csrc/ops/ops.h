// Host-side declarations of every op launcher (csrc/ops/*.cu).
//
// Plain C++: no CUDA or emulator header, so the pybind11 bindings (host C++
// in both modules) can include it. Pointers are device pointers under CUDA
// and host pointers under the emulator; sizes are element counts. Launchers
// check only what they must to launch safely; deepconv.ops validates shapes,
// dtypes and devices before calling them. Instantiated for float and double.
#pragma once

#include <cstdint>

#include "common/stream.h"

namespace dc::ops {

// --- relu (kernels/relu.cuh) ---------------------------------------------

// y = x < 0 ? 0 : x elementwise; x == y allowed; NaN stays NaN.
template <typename T>
void relu_fprop(const T* x, T* y, std::int64_t n, Stream s);

// dx = y > 0 ? dy : 0 elementwise, y the forward output; dy == dx allowed.
template <typename T>
void relu_bprop(const T* y, const T* dy, T* dx, std::int64_t n, Stream s);

// --- sgd (kernels/sgd.cuh) -----------------------------------------------

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
