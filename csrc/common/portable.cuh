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
// Kernel bodies never test which compiler they are under; this file does.
#pragma once

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
