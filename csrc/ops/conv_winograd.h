// Winograd launchers (ops/conv_winograd.cu; kernels/conv_winograd.cuh) and
// the rule that picks between them and the implicit GEMMs. conv2d_fprop /
// dgrad / wgrad (ops/conv_{fprop,dgrad,wgrad}.cu) call conv_winograd_tile
// first and hand the problem here when it says so.
#pragma once

#include <cstddef>
#include <string>

#include "common/stream.h"
#include "kernels/conv_params.cuh"
#include "ops/conv.h"

namespace dc::ops {

enum class ConvPassKind { kFprop, kDgrad, kWgrad };

// "" when Winograd applies to p (3x3 filter, stride 1, padding <= 2), else
// the reason it does not.
std::string conv_winograd_unsupported(const ConvParams& p);

// The Winograd output tile to run p with: 4 (F(4x4,3x3)), 2 (F(2x2,3x3)),
// or 0 for the implicit GEMM. kImplicitGemm gives 0; kWinograd a tile or
// std::invalid_argument naming `op` and the reason; kAuto the measured rule
// (see the comment in ops/conv_winograd.cu).
int conv_winograd_tile(const ConvParams& p, ConvPassKind pass, ConvAlgorithm algo, const char* op);

template <typename T>
void conv2d_fprop_winograd(const ConvParams& p, int tile, const T* x, const T* w, const T* b,
                           T* y, bool relu, void* workspace, std::size_t workspace_bytes,
                           Stream s);
template <typename T>
void conv2d_dgrad_winograd(const ConvParams& p, int tile, const T* dy, const T* w, T* dx,
                           void* workspace, std::size_t workspace_bytes, Stream s);
// dw only: conv2d_wgrad runs the bias gradient for every algorithm.
template <typename T>
void conv2d_wgrad_winograd(const ConvParams& p, int tile, const T* x, const T* dy, T* dw,
                           void* workspace, std::size_t workspace_bytes, Stream s);
// Bytes of transformed operands and GEMM results the pass needs.
template <typename T>
std::size_t conv2d_winograd_workspace_bytes(const ConvParams& p, ConvPassKind pass, int tile);
// "winograd_4x4" / "winograd_2x2".
std::string conv2d_winograd_variant(int tile);

}  // namespace dc::ops
