// The convolutions' float math, chosen per process as PyTorch's
// torch.backends.cudnn.allow_tf32 chooses it (deepconv.set_conv_precision):
//   kFp32  FMAs in float (the default: results agree with float64 to float
//          rounding, which the gradient checks and PyTorch parity tests rely on)
//   kTf32  tensor cores (mma.sync m16n8k8 TF32): operands rounded to 10
//          mantissa bits, sums in float; on GPUs older than sm_80, and for
//          double, kFp32 is used instead.
// Plain C++ (the bindings include it). One setting per compiled module, read
// by each launch: kernels/conv.cuh's conv_launch_implicit_gemm swaps the
// tile for its TF32 twin (same block shape, so the same split-K workspace).
#pragma once

#include <atomic>
#include <stdexcept>
#include <string>

namespace dc {

enum class ConvPrecision : int { kFp32 = 0, kTf32 = 1 };

inline std::atomic<int>& conv_precision_setting() {
  static std::atomic<int> setting{static_cast<int>(ConvPrecision::kFp32)};
  return setting;
}
inline ConvPrecision conv_precision() {
  return static_cast<ConvPrecision>(conv_precision_setting().load(std::memory_order_relaxed));
}
inline void set_conv_precision(ConvPrecision p) {
  conv_precision_setting().store(static_cast<int>(p), std::memory_order_relaxed);
}

inline const char* conv_precision_name(ConvPrecision p) {
  return p == ConvPrecision::kTf32 ? "tf32" : "fp32";
}
inline ConvPrecision conv_precision_from_name(const std::string& name) {
  if (name == "fp32") return ConvPrecision::kFp32;
  if (name == "tf32") return ConvPrecision::kTf32;
  throw std::invalid_argument("precision: expected 'fp32' or 'tf32', got '" + name + "'");
}

}  // namespace dc
