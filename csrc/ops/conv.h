// Launchers of kernels/conv.cuh (defined in ops/conv_fprop.cu,
// ops/conv_dgrad.cu, ops/conv_wgrad.cu).
//
// Plain C++ (kernels/conv_params.cuh has no CUDA in it), so the pybind11
// bindings can include it. Pointers are device pointers under CUDA and host
// pointers under the emulator. deepconv.ops validates shapes, dtypes and
// devices first; the launchers check the problem (conv_check_params) and
// the workspace size and throw std::invalid_argument otherwise. Every output
// is written with `=`. Instantiated for float and double.
//
// Workspaces (for split-K partial sums) are owned by the caller: ask
// conv2d_<pass>_workspace_bytes<T>(params) and pass at least that many bytes
// (any pointer when it is 0).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "common/stream.h"
#include "kernels/conv_params.cuh"
#include "kernels/conv_precision.h"  // dc::set_conv_precision / conv_precision

namespace dc::ops {

// Which algorithm runs a pass (deepconv.ops' `algorithm` argument): kAuto
// follows the measured rule of ops/conv_winograd.cu; kWinograd throws
// std::invalid_argument naming the reason when the problem does not allow it
// (conv_winograd_unsupported), with the output tile the rule picks, or the
// one named (kWinograd4x4: F(4x4,3x3), kWinograd2x2: F(2x2,3x3));
// kImplicitGemm always applies.
enum class ConvAlgorithm { kAuto, kImplicitGemm, kWinograd, kWinograd4x4, kWinograd2x2 };

// The ConvAlgorithm deepconv.ops names `name` ("auto", "implicit_gemm",
// "winograd", "winograd_4x4", "winograd_2x2"); std::invalid_argument
// (ValueError through pybind11) for any other.
inline ConvAlgorithm conv_algorithm_from_name(const std::string& name) {
  if (name == "auto") return ConvAlgorithm::kAuto;
  if (name == "implicit_gemm") return ConvAlgorithm::kImplicitGemm;
  if (name == "winograd") return ConvAlgorithm::kWinograd;
  if (name == "winograd_4x4") return ConvAlgorithm::kWinograd4x4;
  if (name == "winograd_2x2") return ConvAlgorithm::kWinograd2x2;
  throw std::invalid_argument("algorithm: expected 'auto', 'implicit_gemm', 'winograd', "
                              "'winograd_4x4' or 'winograd_2x2', got '" + name + "'");
}

// y = conv(x, w) + b (b may be null), then max(., 0) if relu.
// x (N, C, H, W), w (K, C/groups, R, S), b (K,), y (N, K, P, Q).
template <typename T>
void conv2d_fprop(const ConvParams& p, const T* x, const T* w, const T* b, T* y, bool relu,
                  void* workspace, std::size_t workspace_bytes, Stream s,
                  ConvAlgorithm algo = ConvAlgorithm::kAuto);
template <typename T>
std::size_t conv2d_fprop_workspace_bytes(const ConvParams& p,
                                     ConvAlgorithm algo = ConvAlgorithm::kAuto);
// The variant conv2d_fprop runs: "implicit_gemm_3x3", "implicit_gemm_fc" or
// "implicit_gemm", with "+split_k" when the reduction is split; or
// "winograd_4x4" / "winograd_2x2".
template <typename T>
std::string conv2d_fprop_variant(const ConvParams& p,
                                 ConvAlgorithm algo = ConvAlgorithm::kAuto);

// dx = gradient of conv(x, w) with respect to x, from dy (N, K, P, Q).
template <typename T>
void conv2d_dgrad(const ConvParams& p, const T* dy, const T* w, T* dx, void* workspace,
                  std::size_t workspace_bytes, Stream s,
                  ConvAlgorithm algo = ConvAlgorithm::kAuto);
template <typename T>
std::size_t conv2d_dgrad_workspace_bytes(const ConvParams& p,
                                     ConvAlgorithm algo = ConvAlgorithm::kAuto);
template <typename T>
std::string conv2d_dgrad_variant(const ConvParams& p,
                                 ConvAlgorithm algo = ConvAlgorithm::kAuto);

// dw (K, C/groups, R, S) and, when db is not null, db (K,), from x and dy.
template <typename T>
void conv2d_wgrad(const ConvParams& p, const T* x, const T* dy, T* dw, T* db, void* workspace,
                  std::size_t workspace_bytes, Stream s,
                  ConvAlgorithm algo = ConvAlgorithm::kAuto);
template <typename T>
std::size_t conv2d_wgrad_workspace_bytes(const ConvParams& p,
                                     ConvAlgorithm algo = ConvAlgorithm::kAuto);
template <typename T>
std::string conv2d_wgrad_variant(const ConvParams& p,
                                 ConvAlgorithm algo = ConvAlgorithm::kAuto);

}  // namespace dc::ops
