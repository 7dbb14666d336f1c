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
class GridConstant {
 public:
  GridConstant(const T& v) : value_(&v) {}  // NOLINT: implicit, as a by-value T
  const T& get() const { return *value_; }

 private:
  const T* value_;
};
}  // namespace dc

#endif
