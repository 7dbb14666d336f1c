// The convolution problem, shared by host and device code (kernels/conv.cuh,
// the launchers in ops/conv_*.cu and the bindings through ops/conv.h).
//
// Plain C++ on purpose (no CUDA or emulator header), so the pybind11 bindings
// can include it: members are constexpr, which device code may call under
// nvcc's --expt-relaxed-constexpr, and the can_implement checks are host-only.
//
// Shapes (NCHW, as everywhere in deepconv):
//   x  (N, C, H, W)          input activations
//   w  (K, C / groups, R, S) filters
//   b  (K,)                  bias
//   y  (N, K, P, Q)          output, P = (H + 2 pad_h - R) / stride_h + 1
// Zero padding, dilation 1. Channel group g reads input channels
// [g C/groups, (g+1) C/groups) and writes output channels
// [g K/groups, (g+1) K/groups).
#pragma once

#include <cstdint>
#include <string>

namespace dc {

struct ConvParams {
  int N = 0, C = 0, H = 0, W = 0;  // input
  int K = 0, R = 0, S = 0;         // filters
  int P = 0, Q = 0;                // output height, width
  int pad_h = 0, pad_w = 0;
  int stride_h = 1, stride_w = 1;
  int groups = 1;

  constexpr int group_channels() const { return C / groups; }  // C per group
  constexpr int group_filters() const { return K / groups; }   // K per group
  constexpr int filter_taps() const { return R * S; }
  constexpr std::int64_t input_plane() const { return std::int64_t(H) * W; }
  constexpr std::int64_t output_plane() const { return std::int64_t(P) * Q; }
  constexpr std::int64_t output_pixels() const { return std::int64_t(N) * P * Q; }
  constexpr std::int64_t input_pixels() const { return std::int64_t(N) * H * W; }
  // Elements of one filter: C/groups * R * S.
  constexpr std::int64_t filter_size() const { return std::int64_t(C / groups) * R * S; }
  constexpr std::int64_t fprop_flops() const {
    return 2 * output_pixels() * K * filter_size();
  }
};

// The output size along one dimension, or 0 when the filter does not fit.
constexpr int conv_output_size(int in, int filter, int pad, int stride) {
  return in + 2 * pad < filter || stride <= 0 ? 0 : (in + 2 * pad - filter) / stride + 1;
}

// Why `p` is not a well-formed problem ("" when it is): every launcher checks
// this first. Reduction lengths of the implicit GEMMs are 32-bit.
inline std::string conv_check_params(const ConvParams& p) {
  if (p.N < 0 || p.C <= 0 || p.H <= 0 || p.W <= 0 || p.K <= 0 || p.R <= 0 || p.S <= 0)
    return "sizes must be positive (N may be 0)";
  if (p.groups <= 0 || p.C % p.groups != 0 || p.K % p.groups != 0)
    return "groups must divide C and K";
  if (p.stride_h <= 0 || p.stride_w <= 0) return "strides must be positive";
  if (p.pad_h < 0 || p.pad_w < 0) return "padding must be >= 0";
  if (p.P != conv_output_size(p.H, p.R, p.pad_h, p.stride_h) ||
      p.Q != conv_output_size(p.W, p.S, p.pad_w, p.stride_w) || p.P <= 0 || p.Q <= 0)
    return "P, Q do not match H, W, R, S, padding and stride";
  if (p.output_pixels() >= (std::int64_t(1) << 31) || p.input_pixels() >= (std::int64_t(1) << 31) ||
      p.filter_size() >= (std::int64_t(1) << 31) ||
      std::int64_t(p.K / p.groups) * p.R * p.S >= (std::int64_t(1) << 31) || p.groups > 65535)
    return "problem too large (N*P*Q, N*H*W, C*R*S must stay below 2^31; groups <= 65535)";
  return "";
}

// Variant checks: "" when the variant applies, else the reason it does not.
// implicit_gemm (general) applies to every well-formed problem.
inline std::string conv_can_implement_3x3(const ConvParams& p) {
  if (p.R != 3 || p.S != 3) return "filter is not 3x3";
  if (p.stride_h != 1 || p.stride_w != 1) return "stride is not 1";
  if (p.pad_h != 1 || p.pad_w != 1) return "padding is not 1";
  return "";
}

// Fully connected: the filter covers the whole (unpadded) input, so each
// output pixel reads one contiguous C/groups*H*W run of x per group.
inline std::string conv_can_implement_fc(const ConvParams& p) {
  if (p.R != p.H || p.S != p.W) return "filter does not cover the input";
  if (p.pad_h != 0 || p.pad_w != 0) return "padding is not 0";
  return "";
}

// Split-K plan: the reduction [0, gemm_k) is cut into `splits` chunks of
// `k_per_split` steps (a multiple of the block's K step), enough for about
// `target_blocks` blocks when the GEMM alone has `tiles` blocks, but never
// chunks shorter than `min_chunk`. A function of the problem and the build
// only, so the summation order (and the result bits) never changes.
struct ConvSplitPlan {
  int splits = 1;
  int k_per_split = 0;
};

constexpr ConvSplitPlan conv_split_plan(std::int64_t tiles, int gemm_k, int block_k,
                                        int target_blocks, int min_chunk) {
  ConvSplitPlan plan;
  std::int64_t splits = tiles >= target_blocks ? 1 : (target_blocks + tiles - 1) / tiles;
  const std::int64_t most = gemm_k / (min_chunk > 0 ? min_chunk : 1);
  if (splits > most) splits = most;
  if (splits > 65535) splits = 65535;
  if (splits < 1) splits = 1;
  std::int64_t per = (gemm_k + splits - 1) / splits;
  per = (per + block_k - 1) / block_k * block_k;
  if (per < 1) per = block_k;
  plan.k_per_split = static_cast<int>(per);
  plan.splits = static_cast<int>(gemm_k == 0 ? 1 : (gemm_k + per - 1) / per);
  return plan;
}

}  // namespace dc
