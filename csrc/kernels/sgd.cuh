// SGD with momentum and weight decay (Krizhevsky et al. 2012, section 5),
// for a whole list of parameter tensors in one launch.
//
// For each tensor, elementwise, with epsilon = lr, mu = momentum,
// lambda = weight_decay:
//
//   v <- mu*v - lambda*epsilon*w - epsilon*g
//   w <- w + v
//
// Both v and w are overwritten (`=`); g is only read. The new w uses the new
// v, as in AlexNet (and Caffe), not PyTorch's v <- mu*v + g, w <- w - lr*v.
//
// Rounding, spelled out so that the CUDA build and the emulator produce the
// same bits for the same inputs. nvcc contracts a*b + c into one FMA by
// default (--fmad=true) and g++ 12 does too (-ffp-contract=fast is its
// default in every -std mode for C++), but each contracts whatever patterns
// its optimiser happens to see. So every multiply that feeds an add is an
// explicit fma, which both compilers leave alone, and the rest has nothing
// left to contract:
//
//   decay = lambda * epsilon                      (once per tensor, rounded)
//   p     = mu * v                                (rounded)
//   q     = fma(-decay, w, p)                     (one rounding)
//   v'    = fma(-epsilon, g, q)                   (one rounding)
//   w'    = w + v'                                (rounded)
//
// fma is correctly rounded on both sides (an instruction on the GPU, the FMA
// instruction or glibc's exact software fma on the host), so the two builds
// agree to the bit; tests may compare them exactly.
//
// Launch layout: the kernel receives one SgdBatch by value (CUDA's kernel
// parameter space, <= 4 KiB; a dc::GridConstant, so the emulator does not
// copy it for every thread) describing up to kSgdMaxTensorsPerLaunch
// tensors. Tensor t owns the blocks [block_start[t], block_start[t+1]) of a
// 1-D grid and walks its own elements with a grid-stride loop over just those
// blocks; a block finds its tensor by binary search over block_start. Empty
// tensors get no entry (the launcher drops them), so every range is non-empty.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/portable.cuh"
#include "ops/sgd.h"

namespace dc {

constexpr int kSgdThreadsPerBlock = 256;
// Consecutive elements a thread updates per step of its grid-stride loop.
// One on a GPU (a warp's accesses coalesce); 64 on the emulator, where the
// per-thread cost (the scheduler's call, finding the tensor) was most of the
// update's time and a 64-element loop compiles to packed FMAs: vgg_small's
// 2.3M parameters took 4.9 ms with one element per thread, 0.5 ms with 64
// (2-core EPYC, old and new builds alternated, medians of 15). Every element
// still gets the same operations, so the results keep their bits.
#if DC_GPU_CONFIG
constexpr int kSgdRun = 1;
#else
constexpr int kSgdRun = 64;
#endif
// Elements a block covers per pass of its grid-stride loop, times passes
// before the per-tensor block cap kicks in.
constexpr std::int64_t kSgdElementsPerBlock = 4 * kSgdThreadsPerBlock * kSgdRun;
// Caps one tensor's blocks so a launch stays at most 64 * 1024 blocks; a
// 100M-element tensor still gets 256K threads, enough to fill an H100.
constexpr std::int64_t kSgdMaxBlocksPerTensor = 1024;

template <typename T>
struct SgdBatch {
  ops::SgdTensor<T> tensors[kSgdMaxTensorsPerLaunch];
  // block_start[t] is tensor t's first block; block_start[count] == gridDim.x.
  unsigned int block_start[kSgdMaxTensorsPerLaunch + 1];
  int count;
};
static_assert(sizeof(SgdBatch<double>) <= 4096, "SgdBatch must fit CUDA's 4 KiB kernel parameters");

__device__ __forceinline__ float sgd_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double sgd_fma(double a, double b, double c) { return fma(a, b, c); }

// The largest t with block_start[t] <= block, i.e. the tensor owning `block`.
template <typename T>
__device__ __forceinline__ int sgd_find_tensor(const SgdBatch<T>& batch, unsigned int block) {
  int lo = 0;
  int hi = batch.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (batch.block_start[mid] <= block) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

template <typename T>
__global__ void sgd_update_kernel(const GridConstant<SgdBatch<T>> param) {
  const SgdBatch<T>& batch = param.get();
  const int t = sgd_find_tensor(batch, blockIdx.x);
  T* w = batch.tensors[t].w;        // (n,)
  T* v = batch.tensors[t].v;        // (n,)
  const T* g = batch.tensors[t].g;  // (n,)
  const std::int64_t n = batch.tensors[t].n;
  const T lr = batch.tensors[t].lr;
  const T momentum = batch.tensors[t].momentum;
  const T decay = batch.tensors[t].weight_decay * lr;
  const unsigned int first_block = batch.block_start[t];
  const unsigned int blocks = batch.block_start[t + 1] - first_block;

  const std::int64_t stride = std::int64_t(blocks) * blockDim.x * kSgdRun;
  for (std::int64_t begin = (std::int64_t(blockIdx.x - first_block) * blockDim.x + threadIdx.x) *
                            kSgdRun;
       begin < n; begin += stride) {
    const std::int64_t end = begin + kSgdRun < n ? begin + kSgdRun : n;
    for (std::int64_t i = begin; i < end; ++i) {
      const T p = momentum * v[i];
      const T q = sgd_fma(-decay, w[i], p);
      const T v_new = sgd_fma(-lr, g[i], q);
      v[i] = v_new;
      w[i] = w[i] + v_new;
    }
  }
}

}  // namespace dc
