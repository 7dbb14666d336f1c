// Launchers of kernels/relu.cuh (defined in ops/relu.cu).
//
// Plain C++ (no CUDA or emulator header), so the pybind11 bindings can
// include it. Pointers are device pointers under CUDA and host pointers under
// the emulator; sizes are element counts. deepconv.ops validates shapes,
// dtypes and devices before calling. Instantiated for float and double.
#pragma once

#include <cstdint>

#include "common/stream.h"

namespace dc::ops {

// y = x < 0 ? 0 : x elementwise; x == y allowed; NaN stays NaN.
template <typename T>
void relu_fprop(const T* x, T* y, std::int64_t n, Stream s);

// dx = y > 0 ? dy : 0 elementwise, y the forward output; dy == dx allowed.
template <typename T>
void relu_bprop(const T* y, const T* dy, T* dx, std::int64_t n, Stream s);

}  // namespace dc::ops
