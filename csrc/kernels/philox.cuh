// Philox 4x32-10: a counter-based random number generator (Salmon, Moraes,
// Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
//
//   out = philox4x32_10(counter, key)     counter: 4 x 32 bits, key: 2 x 32 bits
//
// A pure function: the same (counter, key) gives the same 128 bits on every
// device, in every launch configuration and in every order of evaluation, so
// a kernel that derives its counter from an element's index (and not from a
// thread's index) draws the same number for that element on a GPU and on the
// emulator. No state lives between calls.
//
// One round, on counter words (c0, c1, c2, c3) and key words (k0, k1):
//   (hi0, lo0) = 0xD2511F53 * c0       full 64-bit products, split in halves
//   (hi1, lo1) = 0xCD9E8D57 * c2
//   (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
// and between rounds the key is bumped by the Weyl constants
//   k0 += 0x9E3779B9, k1 += 0xBB67AE85   (mod 2^32)
// Ten rounds (nine bumps). Checked against the Random123 known-answer vectors
// in tests/test_dropout.py.
//
// The high half of a 32x32 product is spelled as a 64-bit multiply and a
// shift, not __umulhi: the emulator has no __umulhi, and nvcc turns this
// spelling into the same mul.hi / mul.wide instructions.
#pragma once

#include <cstdint>

#include "common/portable.cuh"

namespace dc {

constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr std::uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr std::uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1
constexpr int kPhiloxRounds = 10;

struct PhiloxCounter {
  std::uint32_t v[4];
};

struct PhiloxKey {
  std::uint32_t v[2];
};

__device__ __forceinline__ PhiloxCounter philox4x32_round(PhiloxCounter c, PhiloxKey k) {
  const std::uint64_t p0 = std::uint64_t(kPhiloxM0) * c.v[0];
  const std::uint64_t p1 = std::uint64_t(kPhiloxM1) * c.v[2];
  const std::uint32_t hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
  const std::uint32_t hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
  PhiloxCounter out;
  out.v[0] = hi1 ^ c.v[1] ^ k.v[0];
  out.v[1] = lo1;
  out.v[2] = hi0 ^ c.v[3] ^ k.v[1];
  out.v[3] = lo0;
  return out;
}

// kRounds rounds; Philox 4x32-10 is kRounds = 10 (what dropout uses).
template <int kRounds = kPhiloxRounds>
__device__ __forceinline__ PhiloxCounter philox4x32(PhiloxCounter c, PhiloxKey k) {
#pragma unroll
  for (int r = 0; r < kRounds; ++r) {
    if (r > 0) {
      k.v[0] += kPhiloxW0;
      k.v[1] += kPhiloxW1;
    }
    c = philox4x32_round(c, k);
  }
  return c;
}

// The generator as a kernel, for known-answer tests: out[i] = philox(ctr[i], key[i]).
template <int kRounds>
__global__ void philox4x32_kernel(const std::uint32_t* counters,  // (n, 4)
                                     const std::uint32_t* keys,      // (n, 2)
                                     std::uint32_t* out,             // (n, 4)
                                     std::int64_t n) {
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    PhiloxCounter c;
    PhiloxKey k;
    for (int w = 0; w < 4; ++w) c.v[w] = counters[4 * i + w];
    for (int w = 0; w < 2; ++w) k.v[w] = keys[2 * i + w];
    const PhiloxCounter r = philox4x32<kRounds>(c, k);
    for (int w = 0; w < 4; ++w) out[4 * i + w] = r.v[w];
  }
}

}  // namespace dc
