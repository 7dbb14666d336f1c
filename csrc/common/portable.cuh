// The one header that lets a kernel compile under nvcc and under the host
// compiler (against the CUDA-semantics CPU emulator in csrc/emu/).
//
// Kernels are written in plain CUDA C++. The only things they may not spell
// the CUDA way are the three that a CPU cannot emulate without help:
//   DC_SHARED(Type, name)          instead of  __shared__ Type name;
//   DC_DYNAMIC_SHARED(Type, name)  instead of  extern __shared__ Type name[];
//   dc::vload<V>(p) / dc::vstore(p, v)  for float2/float4/... accesses, so
//                                  the emulator can fault on misalignment
//                                  exactly where a GPU would.
// and the instructions CUDA C++ has no words for, which are inline PTX under
// nvcc and calls into the emulator (csrc/emu/async_copy.cpp, warp_matrix.cpp)
// otherwise:
//   dc::cp_async_ca<kBytes>(smem, gmem, src_bytes)  cp.async.ca (4/8/16 bytes;
//   dc::cp_async_cg(smem, gmem, src_bytes)            .cg: 16), zero-filling
//                                  past src_bytes; dc::cp_async_commit(),
//   dc::cp_async_wait<N>()         cp.async.commit_group / wait_group N;
//   dc::lds(p)                     a shared-memory read the emulator checks
//                                  against cp.async copies not yet visible;
//   dc::check_shared(p, bytes)     the same check alone, before plain reads;
//   dc::cvt_rna_tf32(x)            cvt.rna.tf32.f32;
//   dc::mma_m16n8k8_tf32(d, a, b, c)  mma.sync.aligned.m16n8k8.row.col.f32.tf32;
//   dc::ldmatrix<kCount, kTrans>(out, row)  ldmatrix.sync.aligned.m8n8.x{1,2,4}.
// cp.async, cvt.rna.tf32 and mma.sync need sm_80: compiled for an older GPU
// they fall back to a synchronous copy, the same rounding in integer
// arithmetic, and the same product from warp shuffles.
// And one they may use for a large read-only kernel parameter:
//   dc::GridConstant<Type>         a by-value parameter all threads share;
//                                  .get() gives a const reference to it.
//                                  On the GPU it IS the by-value struct (in
//                                  the kernel parameter space); the emulator
//                                  calls the kernel once per thread, and a
//                                  4 KiB struct by value would be copied for
//                                  every one, so there it is a pointer to the
//                                  launcher's object (launches are synchronous
//                                  there, so the object outlives the launch).
// And one loop annotation:
//   DC_HOST_UNROLL(n)              g++'s `#pragma GCC unroll n` (a loop the
//                                  emulator's build must unroll before it
//                                  vectorises); nothing under nvcc, which
//                                  has `#pragma unroll` and warns on GCC's.
// Kernel bodies never test which compiler they are under; this file does.
#pragma once

#include <cstddef>
#include <cstdint>

#define DC_PRAGMA(text) _Pragma(#text)
#if defined(__CUDACC__)
#define DC_HOST_UNROLL(n)
#else
#define DC_HOST_UNROLL(n) DC_PRAGMA(GCC unroll n)
#endif

// Whether this device code may use sm_80's PTX (cp.async, cvt.rna.tf32,
// mma.sync, ldmatrix); where not, the functions below fall back to plain
// CUDA. -DDC_NO_SM80_PTX turns it off for GPGPU-Sim, whose PTX front end
// knows none of them (it rejects the whole program at load): the
// simulated-GPU job then runs the sm_75 main loop on its sm_86 target, fp32
// only (conv_device_has_tf32 says no).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(DC_NO_SM80_PTX)
#define DC_SM80_PTX 1
#else
#define DC_SM80_PTX 0
#endif

#if defined(__CUDACC__)

#include <cuda_runtime.h>

// Named through an alias so that array types (float[32][33]) work too.
namespace dc::detail {
template <typename T>
struct type_identity { using type = T; };
}  // namespace dc::detail

#define DC_SHARED(Type, name) __shared__ typename ::dc::detail::type_identity<Type>::type name
#define DC_DYNAMIC_SHARED(Type, name)                        \
  extern __shared__ __align__(16) unsigned char dc_dynamic_shared_[]; \
  Type* name = reinterpret_cast<Type*>(dc_dynamic_shared_)

namespace dc {
template <typename V, typename T>
__device__ __forceinline__ V vload(const T* p) {
  return *reinterpret_cast<const V*>(p);
}
template <typename V, typename T>
__device__ __forceinline__ void vstore(T* p, const V& v) {
  *reinterpret_cast<V*>(p) = v;
}

template <typename T>
__device__ __forceinline__ T lds(const T* p) {
  return *p;
}
__device__ __forceinline__ void check_shared(const void*, std::size_t) {}

template <int kBytes>
__device__ __forceinline__ void cp_async_ca(void* smem, const void* gmem, int src_bytes = kBytes) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if DC_SM80_PTX
  const unsigned int dst = static_cast<unsigned int>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(gmem),
               "n"(kBytes), "r"(src_bytes)
               : "memory");
#else
  unsigned char* d = static_cast<unsigned char*>(smem);
  const unsigned char* s = static_cast<const unsigned char*>(gmem);
  for (int i = 0; i < kBytes; ++i) d[i] = i < src_bytes ? s[i] : 0;
#endif
}

__device__ __forceinline__ void cp_async_cg(void* smem, const void* gmem, int src_bytes = 16) {
#if DC_SM80_PTX
  const unsigned int dst = static_cast<unsigned int>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(src_bytes)
               : "memory");
#else
  cp_async_ca<16>(smem, gmem, src_bytes);
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if DC_SM80_PTX
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#if DC_SM80_PTX
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#endif
}

__device__ __forceinline__ float cvt_rna_tf32(float x) {
#if DC_SM80_PTX
  unsigned int u;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(u) : "f"(x));
  return __uint_as_float(u);
#else
  const unsigned int u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __uint_as_float(0x7fffffffu);
  if ((u & 0x7fffffffu) == 0x7f800000u) return x;
  return __uint_as_float((u + 0x1000u) & 0xffffe000u);
#endif
}

__device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const float (&a)[4],
                                                 const float (&b)[2], const float (&c)[4]) {
#if DC_SM80_PTX
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(__float_as_uint(a[0])), "r"(__float_as_uint(a[1])), "r"(__float_as_uint(a[2])),
        "r"(__float_as_uint(a[3])), "r"(__float_as_uint(b[0])), "r"(__float_as_uint(b[1])),
        "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  // The same product from the fragment layouts: lane (g, t) needs row g and
  // g + 8 of A (held by lanes 4g .. 4g+3) and columns 2t, 2t + 1 of B.
  const int lane = threadIdx.x % 32;
  const int g = lane >> 2, t = lane & 3;
  float acc[4] = {c[0], c[1], c[2], c[3]};
  for (int k = 0; k < 8; ++k) {
    const int half = k >> 2;  // a0/a1 and b0 hold k < 4, a2/a3 and b1 k >= 4
    const float a_lo = __shfl_sync(0xffffffffu, a[2 * half], 4 * g + (k & 3));
    const float a_hi = __shfl_sync(0xffffffffu, a[2 * half + 1], 4 * g + (k & 3));
    const float b0 = __shfl_sync(0xffffffffu, b[half], 4 * (2 * t) + (k & 3));
    const float b1 = __shfl_sync(0xffffffffu, b[half], 4 * (2 * t + 1) + (k & 3));
    const float ta = __uint_as_float(__float_as_uint(a_lo) & 0xffffe000u);
    const float tb = __uint_as_float(__float_as_uint(a_hi) & 0xffffe000u);
    const float u0 = __uint_as_float(__float_as_uint(b0) & 0xffffe000u);
    const float u1 = __uint_as_float(__float_as_uint(b1) & 0xffffe000u);
    acc[0] = fmaf(ta, u0, acc[0]);
    acc[1] = fmaf(ta, u1, acc[1]);
    acc[2] = fmaf(tb, u0, acc[2]);
    acc[3] = fmaf(tb, u1, acc[3]);
  }
  for (int i = 0; i < 4; ++i) d[i] = acc[i];
#endif
}

template <int kCount, bool kTrans = false>
__device__ __forceinline__ void ldmatrix(std::uint32_t (&out)[kCount], const void* row) {
  static_assert(kCount == 1 || kCount == 2 || kCount == 4, "ldmatrix loads .x1, .x2 or .x4");
  const unsigned int addr = static_cast<unsigned int>(__cvta_generic_to_shared(row));
  if constexpr (kCount == 1 && !kTrans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
                 : "=r"(out[0]) : "r"(addr));
  } else if constexpr (kCount == 1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                 : "=r"(out[0]) : "r"(addr));
  } else if constexpr (kCount == 2 && !kTrans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(out[0]), "=r"(out[1]) : "r"(addr));
  } else if constexpr (kCount == 2) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(out[0]), "=r"(out[1]) : "r"(addr));
  } else if constexpr (!kTrans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(out[0]), "=r"(out[1]), "=r"(out[2]), "=r"(out[3]) : "r"(addr));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(out[0]), "=r"(out[1]), "=r"(out[2]), "=r"(out[3]) : "r"(addr));
  }
}

template <typename T>
struct GridConstant {
  T value;
  __host__ GridConstant(const T& v) : value(v) {}  // NOLINT: implicit, as a by-value T
  __device__ __forceinline__ const T& get() const { return value; }
};
}  // namespace dc

#else  // host compiler: the emulator provides the CUDA vocabulary

#include "emu/emu.h"

#define DC_SHARED(Type, name)                          \
  static ::dc::emu::SharedSite dc_shared_site_##name; \
  auto& name = ::dc::emu::shared_variable<Type>(dc_shared_site_##name, #name)
#define DC_DYNAMIC_SHARED(Type, name) \
  Type* name = reinterpret_cast<Type*>(::dc::emu::dynamic_shared())

namespace dc {
template <typename V, typename T>
inline V vload(const T* p) {
  ::dc::emu::check_vector_alignment(p, alignof(V), "load");
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
inline void vstore(T* p, const V& v) {
  ::dc::emu::check_vector_alignment(p, alignof(V), "store");
  __builtin_memcpy(p, &v, sizeof(V));
}

template <typename T>
inline T lds(const T* p) {
  ::dc::emu::check_shared_read(p, sizeof(T));
  return *p;
}
inline void check_shared(const void* p, std::size_t bytes) {
  ::dc::emu::check_shared_read(p, bytes);
}

template <int kBytes>
inline void cp_async_ca(void* smem, const void* gmem, int src_bytes = kBytes) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
  ::dc::emu::cp_async(smem, gmem, kBytes, src_bytes, false);
}
inline void cp_async_cg(void* smem, const void* gmem, int src_bytes = 16) {
  ::dc::emu::cp_async(smem, gmem, 16, src_bytes, true);
}
inline void cp_async_commit() { ::dc::emu::cp_async_commit(); }
template <int kPending>
inline void cp_async_wait() {
  ::dc::emu::cp_async_wait(kPending);
}

inline float cvt_rna_tf32(float x) { return ::dc::emu::cvt_rna_tf32(x); }

inline void mma_m16n8k8_tf32(float (&d)[4], const float (&a)[4], const float (&b)[2],
                             const float (&c)[4]) {
  ::dc::emu::mma_m16n8k8_tf32(d, a, b, c);
}

template <int kCount, bool kTrans = false>
inline void ldmatrix(std::uint32_t (&out)[kCount], const void* row) {
  static_assert(kCount == 1 || kCount == 2 || kCount == 4, "ldmatrix loads .x1, .x2 or .x4");
  ::dc::emu::ldmatrix(out, kCount, kTrans, row);
}

template <typename T>
class GridConstant {
 public:
  GridConstant(const T& v) : value_(&v) {}  // NOLINT: implicit, as a by-value T
  const T& get() const { return *value_; }

 private:
  const T* value_;
};
}  // namespace dc

#endif

// Which launch configuration the launchers (csrc/ops/*.cu) choose: tile
// shapes, threads per block, elements per thread, split-K goals. 1 under
// nvcc; on the emulator 0, except in the test-only module _emu_gputiles
// (built with DC_EMU_GPU_CONFIG), which runs the GPU's choices on the CPU so
// that pytest catches a wrong GPU tile (tests/test_conv_gpu_tiles.py).
// Launchers test this, never __CUDACC__, for such choices.
#if defined(__CUDACC__) || defined(DC_EMU_GPU_CONFIG)
#define DC_GPU_CONFIG 1
#else
#define DC_GPU_CONFIG 0
#endif

// Whether the code being compiled may pipeline through cp.async: the
// emulator (which checks it) and GPUs from sm_80 on. Older GPUs' kernels
// keep register staging (kernels/conv.cuh), and so does a build with
// -DDC_NO_SM80_PTX (see DC_SM80_PTX).
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800) || defined(DC_NO_SM80_PTX)
#define DC_HAS_CP_ASYNC 0
#else
#define DC_HAS_CP_ASYNC 1
#endif
