// The emulator's semantics kernels: each one small, each exercising one CUDA
// behaviour that deepconv's kernels rely on (barriers, warp collectives,
// atomics, shared memory) or one check the emulator must make (barrier
// divergence, shared-memory races, misaligned vector accesses, launch
// limits). Plain CUDA through common/portable.cuh, so they compile under nvcc
// too and could be run on a GPU to confirm that the emulator agrees.
// Declarations and result layouts: semantics.h.
#include "emu/selftest/semantics.h"

#include <cstdint>

#include "common/launch.cuh"

namespace dc::selftest {
namespace {

constexpr unsigned int kFullMask = 0xffffffffu;
constexpr int kMaxThreads = 1024;

__device__ __forceinline__ std::int64_t global_index() {
  return std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}

// (a) ------------------------------------------------------------------------
__global__ void block_sum_kernel(const float* x, float* out, std::int64_t n) {
  DC_SHARED(float[kMaxThreads], partial);
  const unsigned int tid = threadIdx.x;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  float acc = 0.0f;
  for (std::int64_t i = global_index(); i < n; i += stride) acc += x[i];
  partial[tid] = acc;
  __syncthreads();
  for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
    if (tid < half) partial[tid] += partial[tid + half];
    __syncthreads();
  }
  if (tid == 0) out[blockIdx.x] = partial[0];
}

// (b) ------------------------------------------------------------------------
__global__ void warp_shuffles_kernel(const float* x, float* down, float* xor_total, float* bcast,
                                     float* scan, float* seg16, double* rot) {
  const std::int64_t i = global_index();
  const int lane = threadIdx.x % warpSize;
  const std::int64_t warp = i / warpSize;
  const float v = x[i];

  float s = v;
  for (int offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(kFullMask, s, offset);
  if (lane == 0) down[warp] = s;

  float b = v;
  for (int offset = 16; offset > 0; offset /= 2) b += __shfl_xor_sync(kFullMask, b, offset);
  xor_total[i] = b;

  bcast[i] = __shfl_sync(kFullMask, v, int(warp % warpSize));

  float c = v;
  for (int offset = 1; offset < 32; offset *= 2) {
    const float left = __shfl_up_sync(kFullMask, c, offset);
    if (lane >= offset) c += left;
  }
  scan[i] = c;

  float h = v;
  for (int offset = 8; offset > 0; offset /= 2) h += __shfl_xor_sync(kFullMask, h, offset, 16);
  seg16[i] = h;

  rot[i] = __shfl_sync(kFullMask, 0.5 * double(v), (lane + 1) % warpSize);
}

// (c) ------------------------------------------------------------------------
__global__ void warp_votes_kernel(const int* pred, unsigned int* ballot, int* any, int* all) {
  const std::int64_t i = global_index();
  const bool p = pred[i] != 0;
  const unsigned int bits = __ballot_sync(kFullMask, p);
  const int some = __any_sync(kFullMask, p);
  const int every = __all_sync(kFullMask, p);
  if (threadIdx.x % warpSize == 0) {
    const std::int64_t warp = i / warpSize;
    ballot[warp] = bits;
    any[warp] = some;
    all[warp] = every;
  }
}

// (d) ------------------------------------------------------------------------
__global__ void block_votes_kernel(const int* pred, int* count, int* all, int* any) {
  const bool p = pred[global_index()] != 0;
  const int n = __syncthreads_count(p);
  const int every = __syncthreads_and(p);
  const int some = __syncthreads_or(p);
  if (threadIdx.x == 0) {
    count[blockIdx.x] = n;
    all[blockIdx.x] = every;
    any[blockIdx.x] = some;
  }
}

// (e) ------------------------------------------------------------------------
__global__ void atomics_kernel(const int* x, std::int64_t n, int* isum, float* fsum, double* dsum,
                               int* imax, int* cas_count, int* ticket_counter, int* tickets) {
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = global_index(); i < n; i += stride) {
    atomicAdd(isum, x[i]);
    atomicAdd(fsum, float(x[i]));
    atomicAdd(dsum, double(x[i]));
    atomicMax(imax, x[i]);
    int seen = atomicAdd(cas_count, 0);
    for (;;) {
      const int before = atomicCAS(cas_count, seen, seen + 1);
      if (before == seen) break;
      seen = before;
    }
    tickets[i] = atomicAdd(ticket_counter, 1);
  }
}

// (f) ------------------------------------------------------------------------
__global__ void dynamic_shared_reverse_kernel(const float* x, float* y, int per_block) {
  DC_DYNAMIC_SHARED(float, buffer);
  const std::int64_t base = std::int64_t(blockIdx.x) * per_block;
  for (int j = threadIdx.x; j < per_block; j += blockDim.x) buffer[j] = x[base + j];
  __syncthreads();
  for (int j = threadIdx.x; j < per_block; j += blockDim.x) y[base + j] = buffer[per_block - 1 - j];
}

// (g) ------------------------------------------------------------------------
// The bug under test: the read of slot tid-1 is not separated by a barrier
// from thread tid-1's write of it, so the result depends on which of the two
// threads the scheduler runs first.
__global__ void racy_neighbour_kernel(const float* x, float* y, bool barrier_first) {
  DC_SHARED(float[kMaxThreads], slot);
  const unsigned int tid = threadIdx.x;
  const std::int64_t i = global_index();
  slot[tid] = x[i];
  if (barrier_first) {
    __syncthreads();
    slot[tid] = 2.0f * slot[tid];
  }
  y[i] = tid > 0 ? slot[tid - 1] : slot[tid];
}

// (h) ------------------------------------------------------------------------
__global__ void divergent_barrier_kernel(int* out, int mode) {
  const bool low = threadIdx.x < 16;
  if (mode == 0) {
    if (low) __syncthreads();
  } else if (mode == 1) {
    if (low) {
      __syncthreads();
    } else {
      __syncthreads();
    }
  } else {
    __syncthreads();
  }
  out[global_index()] = 1;
}

// (i) ------------------------------------------------------------------------
__global__ void vector_copy_kernel(const float* x, float* y, std::int64_t n4) {
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = global_index(); i < n4; i += stride) {
    dc::vstore(y + 4 * i, dc::vload<float4>(x + 4 * i));
  }
}

// (j, k) ---------------------------------------------------------------------
__global__ void write_indices_kernel(int* out) {
  const std::int64_t threads_per_block = std::int64_t(blockDim.x) * blockDim.y * blockDim.z;
  const std::int64_t block =
      (std::int64_t(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const std::int64_t thread =
      (std::int64_t(threadIdx.z) * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  int* o = out + 12 * (block * threads_per_block + thread);
  o[0] = blockIdx.x;
  o[1] = blockIdx.y;
  o[2] = blockIdx.z;
  o[3] = threadIdx.x;
  o[4] = threadIdx.y;
  o[5] = threadIdx.z;
  o[6] = blockDim.x;
  o[7] = blockDim.y;
  o[8] = blockDim.z;
  o[9] = gridDim.x;
  o[10] = gridDim.y;
  o[11] = gridDim.z;
}

// (l) ------------------------------------------------------------------------
// Warp 0 leaves without touching a barrier; warp 1's collectives involve only
// its own 32 lanes, so they must complete (warp-scoped rendezvous).
__global__ void warp1_shuffle_kernel(const float* x, float* out) {
  if (threadIdx.x < 32) return;
  const int lane = threadIdx.x % warpSize;
  float v = x[global_index()];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  out[std::int64_t(blockIdx.x) * 32 + lane] = v;
}

// Benchmark ------------------------------------------------------------------
__global__ void barrier_loop_kernel(float* out, int iters, bool barriers) {
  DC_SHARED(float[kMaxThreads], slot);
  const unsigned int tid = threadIdx.x;
  slot[tid] = float(tid);
  for (int k = 0; k < iters; ++k) {
    slot[tid] = slot[tid] * 0.5f + 1.0f;
    if (barriers) __syncthreads();
  }
  out[global_index()] = slot[tid];
}

LaunchConfig config_1d(unsigned int blocks, unsigned int threads, std::size_t shared = 0) {
  return LaunchConfig{dim3(blocks), dim3(threads), shared, nullptr};
}

}  // namespace

void block_sum(const float* x, float* out, std::int64_t n, unsigned int blocks,
               unsigned int threads) {
  launch(block_sum_kernel, "block_sum", config_1d(blocks, threads), x, out, n);
}

void warp_shuffles(const float* x, float* down, float* xor_total, float* bcast, float* scan,
                   float* seg16, double* rot, unsigned int blocks, unsigned int threads) {
  launch(warp_shuffles_kernel, "warp_shuffles", config_1d(blocks, threads), x, down, xor_total,
         bcast, scan, seg16, rot);
}

void warp_votes(const int* pred, unsigned int* ballot, int* any, int* all, unsigned int blocks,
                unsigned int threads) {
  launch(warp_votes_kernel, "warp_votes", config_1d(blocks, threads), pred, ballot, any, all);
}

void block_votes(const int* pred, int* count, int* all, int* any, unsigned int blocks,
                 unsigned int threads) {
  launch(block_votes_kernel, "block_votes", config_1d(blocks, threads), pred, count, all, any);
}

void atomics(const int* x, std::int64_t n, int* isum, float* fsum, double* dsum, int* imax,
             int* cas_count, int* ticket_counter, int* tickets, unsigned int blocks,
             unsigned int threads) {
  launch(atomics_kernel, "atomics", config_1d(blocks, threads), x, n, isum, fsum, dsum, imax,
         cas_count, ticket_counter, tickets);
}

void dynamic_shared_reverse(const float* x, float* y, int per_block, unsigned int blocks,
                            unsigned int threads) {
  const std::size_t bytes = std::size_t(per_block) * sizeof(float);
  launch(dynamic_shared_reverse_kernel, "dynamic_shared_reverse",
         config_1d(blocks, threads, bytes), x, y, per_block);
}

void racy_neighbour(const float* x, float* y, bool barrier_first, unsigned int blocks,
                    unsigned int threads) {
  launch(racy_neighbour_kernel, "racy_neighbour", config_1d(blocks, threads), x, y,
         barrier_first);
}

void divergent_barrier(int* out, int mode, unsigned int threads) {
  launch(divergent_barrier_kernel, "divergent_barrier", config_1d(1, threads), out, mode);
}

void vector_copy(const float* x, float* y, std::int64_t load_offset, std::int64_t store_offset,
                 std::int64_t n4) {
  launch(vector_copy_kernel, "vector_copy", config_1d(blocks_for(n4, 128, 64), 128),
         x + load_offset, y + store_offset, n4);
}

void write_indices(int* out, Dims grid, Dims block, std::size_t shared_bytes) {
  LaunchConfig cfg{dim3(grid.x, grid.y, grid.z), dim3(block.x, block.y, block.z), shared_bytes,
                   nullptr};
  launch(write_indices_kernel, "write_indices", cfg, out);
}

void warp1_shuffle(const float* x, float* out, unsigned int blocks) {
  launch(warp1_shuffle_kernel, "warp1_shuffle", config_1d(blocks, 64), x, out);
}

void barrier_loop(float* out, int iters, bool barriers, unsigned int blocks,
                  unsigned int threads) {
  launch(barrier_loop_kernel, "barrier_loop", config_1d(blocks, threads), out, iters, barriers);
}

}  // namespace dc::selftest
