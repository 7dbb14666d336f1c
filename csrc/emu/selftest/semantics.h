// Launchers of the emulator's semantics kernels (semantics.cu), as plain C++
// for selftest_bindings.cpp. Each kernel exercises one CUDA behaviour the
// emulator promises (DESIGN.md §3); tests/test_emulator_semantics.py checks
// the results against numpy and the errors against the Python classes.
// Pointers are host pointers (the emulator's "device" memory is host memory).
#pragma once

#include <cstddef>
#include <cstdint>

namespace dc::selftest {

struct Dims {
  unsigned int x = 1, y = 1, z = 1;
};

// (a) out[b] = sum of x[i] over the block's grid-stride elements, by a
// shared-memory tree with __syncthreads. threads: a power of two <= 1024.
void block_sum(const float* x, float* out, std::int64_t n, unsigned int blocks,
               unsigned int threads);

// (b) per warp of x (n = blocks * threads, threads a multiple of 32):
//   down[w]  total via __shfl_down_sync (lane 0's value)
//   xor[i]   total via __shfl_xor_sync butterfly (every lane)
//   bcast[i] x[32*w + w % 32]       via __shfl_sync
//   scan[i]  inclusive prefix sum    via __shfl_up_sync
//   seg16[i] total of the lane's 16-lane half via __shfl_xor_sync(width 16)
//   rot[i]   0.5 * x[32*w + (lane+1) % 32] as a double (8-byte shuffle)
void warp_shuffles(const float* x, float* down, float* xor_total, float* bcast, float* scan,
                   float* seg16, double* rot, unsigned int blocks, unsigned int threads);

// (c) per warp w: ballot[w], any[w], all[w] of pred != 0.
void warp_votes(const int* pred, unsigned int* ballot, int* any, int* all, unsigned int blocks,
                unsigned int threads);

// (d) per block b: __syncthreads_count / _and / _or of pred != 0.
void block_votes(const int* pred, int* count, int* all, int* any, unsigned int blocks,
                 unsigned int threads);

// (e) over x[0..n) from many blocks: isum += x, fsum += float(x),
// dsum += double(x), imax = max, cas_count += 1 per element through an
// atomicCAS loop, tickets[i] = atomicAdd(ticket_counter, 1).
void atomics(const int* x, std::int64_t n, int* isum, float* fsum, double* dsum, int* imax,
             int* cas_count, int* ticket_counter, int* tickets, unsigned int blocks,
             unsigned int threads);

// (f) each block reverses its `per_block` floats through dynamic shared
// memory of per_block * 4 bytes.
void dynamic_shared_reverse(const float* x, float* y, int per_block, unsigned int blocks,
                            unsigned int threads);

// (g) deliberately racy: y[i] = the left neighbour's shared slot, read with
// no barrier after the neighbour wrote it. barrier_first: the race sits after
// a first __syncthreads (fiber mode) instead of in a barrier-free block.
void racy_neighbour(const float* x, float* y, bool barrier_first, unsigned int blocks,
                    unsigned int threads);

// (h) mode 0: `if (threadIdx.x < 16) __syncthreads();` (the rest exit);
// mode 1: the two halves wait at two different __syncthreads; mode 2: a
// correct barrier (no error). out[i] = 1 for every thread that finishes.
void divergent_barrier(int* out, int mode, unsigned int threads);

// (i) y[4i..4i+4) = x[4i..4i+4) via float4, at element offsets into x / y.
void vector_copy(const float* x, float* y, std::int64_t load_offset, std::int64_t store_offset,
                 std::int64_t n4);

// (j, k) each thread writes blockIdx, threadIdx, blockDim, gridDim (x, y, z
// each: 12 ints) at out[12 * (linear block * threads per block + linear
// thread)]. Any configuration is passed through, so invalid ones raise.
void write_indices(int* out, Dims grid, Dims block, std::size_t shared_bytes);

// (l) blocks of 64: warp 0 returns at once, warp 1 reduces x by
// __shfl_xor_sync; out[32*b + lane] = warp 1's total.
void warp1_shuffle(const float* x, float* out, unsigned int blocks);

// Benchmark: `iters` rounds of a shared-memory update per thread, with a
// __syncthreads after each round when `barriers`. out[i] = the final value.
void barrier_loop(float* out, int iters, bool barriers, unsigned int blocks,
                  unsigned int threads);

// ---- sm_80 instructions (matrix_semantics.cu) ----------------------------------

// (m) y[i] = cvt.rna.tf32.f32(x[i]).
void cvt_tf32(const float* x, float* y, std::int64_t n);

// (n) one mma.sync.m16n8k8 TF32 per warp; a (warps, 32, 4), b (warps, 32, 2),
// c and d (warps, 32, 4) are the lanes' fragment registers. round_inputs:
// a and b pass through cvt.rna.tf32.f32 first.
void mma_tf32(const float* a, const float* b, const float* c, float* d, unsigned int warps,
              bool round_inputs);

// (o) one warp: rows (32, 8) of 16-bit elements are staged in shared memory,
// lane l names row slot[l] to ldmatrix .x{count} (.trans); out (32, 4)
// receives each lane's registers (count of them).
void ldmatrix_rows(const std::uint16_t* rows, const int* slot, std::uint32_t* out, int count,
                   bool trans);

// (p) blocks of 64 threads stream `tiles` tiles of 256 floats each through
// a 3-stage cp.async ring (x, y: blocks * tiles * 256 floats; elements past
// `valid` of a block's x are zero-filled by src-size); y = 2 * the right-hand
// neighbour thread's 4 floats. mode 0 correct; 1 no wait_group, 2 no barrier
// after it, 3 a slot refilled before the barrier: AsyncCopyError.
void async_ring(const float* x, float* y, int tiles, int valid, int mode, unsigned int blocks);

}  // namespace dc::selftest
