// What a CUDA kernel sees when it is compiled by the host compiler: the CUDA
// vocabulary (keywords, built-in variables, vector types, intrinsics,
// barriers, warp collectives, atomics), implemented by the emulator runtime.
//
// Semantics (DESIGN §3): a launch runs to completion before returning;
// blocks run in parallel on a pool of OS threads; the threads of one block
// run on one OS thread, first as a plain loop and, from the first barrier or
// warp collective on, as fibers that meet at each rendezvous. Every check
// raises a dc::emu::Error subclass whose message names the kernel.
//
// Kernels include this only through common/portable.cuh.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- keywords -------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// __restrict__ is understood by g++ and clang as it is.

// ---- built-in types ---------------------------------------------------------
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// Alignments as in CUDA's vector_types.h: they decide what a vector access
// may assume, so they must match the GPU for the misalignment check to mean
// anything.
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned int x, y; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };

inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned int x, unsigned int y) { return {x, y}; }
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) {
  return {x, y, z, w};
}
inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return {x, y, z}; }

namespace dc::emu {

// ---- errors ---------------------------------------------------------------
// Out-of-line virtual destructors give each class one typeinfo, in the
// runtime library, so every module that loads it catches the same types.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~Error() override;
};
class BarrierDivergence : public Error {
 public:
  using Error::Error;
  ~BarrierDivergence() override;
};
class MisalignedAccess : public Error {
 public:
  using Error::Error;
  ~MisalignedAccess() override;
};
class LaunchConfigError : public Error {
 public:
  using Error::Error;
  ~LaunchConfigError() override;
};
// A shared-memory read (or a cp.async into it) that races with a cp.async:
// the data is not yet visible to the reading thread (async_copy.cpp).
class AsyncCopyError : public Error {
 public:
  using Error::Error;
  ~AsyncCopyError() override;
};

// ---- per-OS-thread execution context ----------------------------------------
struct Worker;
struct ThreadState;
struct Launch;

struct Context {
  uint3 thread_idx;
  uint3 block_idx;
  uint3 block_dim;  // uint3, not dim3: the context must be constant-initialised
  uint3 grid_dim;
  ThreadState* thread;  // the emulated thread now running on this OS thread
  Worker* worker;  // the OS thread's scheduler state
  Launch* launch;
  const char* kernel_name;
  // The running block has issued a cp.async: shared reads made through
  // dc::lds / ldmatrix are checked against the copies not yet visible.
  bool async_active;
};

namespace detail {
// One per OS thread; fibers never migrate between OS threads, so the
// scheduler rewrites it before resuming each emulated thread.
// __thread: constant-initialised, so no TLS wrapper calls; initial-exec: a
// plain %fs-relative access from the kernel modules, where the default
// model would call __tls_get_addr on every threadIdx read. 64 bytes fit
// easily in the static TLS that glibc keeps for libraries loaded later.
extern __thread Context tl_context __attribute__((tls_model("initial-exec")));
}  // namespace detail

// ---- shared memory ----------------------------------------------------------
// One static object per DC_SHARED declaration site; its address is the key
// under which the running launch keeps the variable's offset in the block's
// shared-memory arena.
struct SharedSite {
  char unused;
};
void* shared_address(SharedSite& site, std::size_t bytes, std::size_t align, const char* name);
void* dynamic_shared();

template <typename T>
inline T& shared_variable(SharedSite& site, const char* name) {
  return *static_cast<T*>(shared_address(site, sizeof(T), alignof(T), name));
}

// ---- checks -------------------------------------------------------------------
[[noreturn]] void throw_misaligned(const void* p, std::size_t align, const char* what);
inline void check_vector_alignment(const void* p, std::size_t align, const char* what) {
  if (reinterpret_cast<std::uintptr_t>(p) % align != 0) throw_misaligned(p, align, what);
}

// ---- barriers and warp collectives (runtime.cpp) -------------------------------
enum class BarrierKind : int { kPlain, kCount, kAnd, kOr };
int sync_threads(const char* site, BarrierKind kind, int predicate);

enum class WarpOp : int {
  kSync, kBallot, kAny, kAll, kShfl, kShflUp, kShflDown, kShflXor, kCompute
};
std::uint64_t warp_collective(const char* site, WarpOp op, unsigned int mask, std::uint64_t value,
                              int arg, int width);
unsigned int active_mask();

// A warp-wide instruction whose result is computed once for the warp
// (mma.sync, ldmatrix): every lane in `mask` posts a pointer to its own
// operands and result slots; once all of them have arrived, fn(lanes, mask)
// runs with lanes[l] = lane l's pointer (null outside the mask) while every
// lane is suspended, its locals alive, and writes each lane's results.
// `what` names the instruction in divergence messages; lanes meeting at
// different instructions (different fn) is a divergence.
using WarpComputeFn = void (*)(void* const* lanes, unsigned int mask);
void warp_compute(const char* what, unsigned int mask, void* lane_data, WarpComputeFn fn);

// ---- warp matrix instructions, lane by lane from the PTX ISA (warp_matrix.cpp) ----
// cvt.rna.tf32.f32: round to 10 mantissa bits, ties away from zero; the low
// 13 bits of the result are 0. Inf stays Inf, a finite value past the
// largest TF32 rounds to Inf, NaN becomes the canonical 0x7fffffff.
float cvt_rna_tf32(float x);
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 for the calling lane:
// a[4], b[2], c[4] are its fragments (PTX ISA "Matrix Fragments for
// mma.m16n8k8", .tf32), d[4] receives its part of D = A * B + C.
void mma_m16n8k8_tf32(float* d, const float* a, const float* b, const float* c);
// ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16: `row` is this
// lane's row address (lanes 8i .. 8i+7 give matrix i's rows); out[i]
// receives this lane's 32 bits of matrix i.
void ldmatrix(std::uint32_t* out, int count, bool trans, const void* row);

// ---- cp.async (async_copy.cpp) ------------------------------------------------------
// The copies land (are performed) when the issuing thread's wait_group
// covers their group; until then the destination holds what it held (race
// check mode: poison). A landed copy is visible to its thread at once and to
// the block's other threads after the next __syncthreads; reading it
// earlier through dc::lds / ldmatrix, or issuing a copy over bytes another
// thread's copy has not yet published, raises AsyncCopyError.
void cp_async(void* shared_dst, const void* global_src, int cp_bytes, int src_bytes,
              bool cache_global);
void cp_async_commit();
void cp_async_wait(int pending_groups);  // cp.async.wait_group N
[[noreturn]] void throw_async_read(const void* p, std::size_t bytes);
bool async_read_ready(const void* p, std::size_t bytes);
inline void check_shared_read(const void* p, std::size_t bytes) {
  if (detail::tl_context.async_active && !async_read_ready(p, bytes)) throw_async_read(p, bytes);
}

template <typename T>
inline T shuffle(const char* site, WarpOp op, unsigned int mask, T var, int arg, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "warp shuffles move values of at most 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  bits = warp_collective(site, op, mask, bits, arg, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// ---- launch (runtime.cpp runs it) -------------------------------------------------
struct LaunchSpec {
  const char* name;
  dim3 grid;
  dim3 block;
  std::size_t dynamic_shared_bytes;
  void* closure;
  // Runs the kernel for the emulated thread described by tl_context.
  void (*run_one)(void* closure);
  // Runs the kernel for threads order[*next] ... order[count-1] in turn,
  // as one loop the compiler can inline the kernel into; returns early,
  // after finishing the current thread, once *stop is set.
  void (*run_loop)(void* closure, const int* order, const uint3* index, int count, int* next,
                   ThreadState* const* threads, const bool* stop);
};
void run_launch(const LaunchSpec& spec);

template <typename... KernelArgs>
void launch(void (*kernel)(KernelArgs...), const char* name, dim3 grid, dim3 block,
            std::size_t dynamic_shared_bytes, KernelArgs... args) {
  struct Closure {
    void (*kernel)(KernelArgs...);
    std::tuple<KernelArgs...> args;
  };
  Closure closure{kernel, std::tuple<KernelArgs...>(args...)};
  LaunchSpec spec;
  spec.name = name;
  spec.grid = grid;
  spec.block = block;
  spec.dynamic_shared_bytes = dynamic_shared_bytes;
  spec.closure = &closure;
  spec.run_one = [](void* p) {
    auto* c = static_cast<Closure*>(p);
    std::apply(c->kernel, c->args);
  };
  spec.run_loop = [](void* p, const int* order, const uint3* index, int count, int* next,
                     ThreadState* const* threads, const bool* stop) {
    auto* c = static_cast<Closure*>(p);
    Context& ctx = detail::tl_context;
    while (*next < count) {
      const int t = order[(*next)++];
      ctx.thread_idx = index[t];
      ctx.thread = threads[t];
      std::apply(c->kernel, c->args);
      if (*stop) return;
    }
  };
  run_launch(spec);
}

// ---- host-side settings ---------------------------------------------------------
struct Settings {
  int threads;             // OS worker threads running blocks (including the caller)
  bool race_check;         // permuted schedules + poisoned shared memory
  std::uint64_t seed;      // drives the permutations in race-check mode
  std::size_t stack_bytes; // per emulated thread (fiber)
  const char* context_switch;
  bool sanitizer;
};
Settings settings();
void set_num_threads(int threads);  // 0: one per core (or DEEPCONV_EMU_THREADS)
void set_race_check(bool enabled, std::uint64_t seed);

}  // namespace dc::emu

// ---- built-in variables -----------------------------------------------------------
#define threadIdx (::dc::emu::detail::tl_context.thread_idx)
#define blockIdx (::dc::emu::detail::tl_context.block_idx)
#define blockDim (::dc::emu::detail::tl_context.block_dim)
#define gridDim (::dc::emu::detail::tl_context.grid_dim)
constexpr int warpSize = 32;

// ---- barriers and warp collectives --------------------------------------------------
#define DC_EMU_STR2(x) #x
#define DC_EMU_STR(x) DC_EMU_STR2(x)
#define DC_EMU_SITE __FILE__ ":" DC_EMU_STR(__LINE__)

#define __syncthreads() \
  ((void)::dc::emu::sync_threads(DC_EMU_SITE, ::dc::emu::BarrierKind::kPlain, 1))
#define __syncthreads_count(pred) \
  ::dc::emu::sync_threads(DC_EMU_SITE, ::dc::emu::BarrierKind::kCount, (pred) ? 1 : 0)
#define __syncthreads_and(pred) \
  ::dc::emu::sync_threads(DC_EMU_SITE, ::dc::emu::BarrierKind::kAnd, (pred) ? 1 : 0)
#define __syncthreads_or(pred) \
  ::dc::emu::sync_threads(DC_EMU_SITE, ::dc::emu::BarrierKind::kOr, (pred) ? 1 : 0)
// __VA_OPT__, not ##__VA_ARGS__: the latter keeps the comma of an empty
// __syncwarp() in strict (-std=c++17) mode.
#define __syncwarp(...) ::dc::emu::detail::syncwarp_at(DC_EMU_SITE __VA_OPT__(, ) __VA_ARGS__)
#define __ballot_sync(mask, pred)                                                           \
  static_cast<unsigned int>(::dc::emu::warp_collective(DC_EMU_SITE, ::dc::emu::WarpOp::kBallot, \
                                                       (mask), (pred) ? 1 : 0, 0, 32))
#define __any_sync(mask, pred)                                                           \
  static_cast<int>(::dc::emu::warp_collective(DC_EMU_SITE, ::dc::emu::WarpOp::kAny, (mask), \
                                              (pred) ? 1 : 0, 0, 32))
#define __all_sync(mask, pred)                                                           \
  static_cast<int>(::dc::emu::warp_collective(DC_EMU_SITE, ::dc::emu::WarpOp::kAll, (mask), \
                                              (pred) ? 1 : 0, 0, 32))
#define __shfl_sync(mask, var, ...) \
  ::dc::emu::detail::shfl_at(DC_EMU_SITE, ::dc::emu::WarpOp::kShfl, (mask), (var), __VA_ARGS__)
#define __shfl_up_sync(mask, var, ...) \
  ::dc::emu::detail::shfl_at(DC_EMU_SITE, ::dc::emu::WarpOp::kShflUp, (mask), (var), __VA_ARGS__)
#define __shfl_down_sync(mask, var, ...)                                                   \
  ::dc::emu::detail::shfl_at(DC_EMU_SITE, ::dc::emu::WarpOp::kShflDown, (mask), (var), \
                             __VA_ARGS__)
#define __shfl_xor_sync(mask, var, ...) \
  ::dc::emu::detail::shfl_at(DC_EMU_SITE, ::dc::emu::WarpOp::kShflXor, (mask), (var), __VA_ARGS__)
#define __activemask() ::dc::emu::active_mask()

namespace dc::emu::detail {
inline void syncwarp_at(const char* site, unsigned int mask = 0xffffffffu) {
  warp_collective(site, WarpOp::kSync, mask, 0, 0, 32);
}
template <typename T>
inline T shfl_at(const char* site, WarpOp op, unsigned int mask, T var, int arg, int width = 32) {
  return shuffle<T>(site, op, mask, var, arg, width);
}
}  // namespace dc::emu::detail

// ---- atomics: real atomics, since blocks run on several OS threads --------------------
namespace dc::emu::detail {
template <typename T, typename F>
inline T atomic_update(T* address, F f) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(address, &old, f(old), true, __ATOMIC_SEQ_CST,
                                      __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T, typename U>
inline T float_atomic_add(T* address, T value) {
  static_assert(sizeof(T) == sizeof(U), "same width");
  U* bits = reinterpret_cast<U*>(address);
  U old = __atomic_load_n(bits, __ATOMIC_RELAXED);
  for (;;) {
    T current;
    std::memcpy(&current, &old, sizeof(T));
    T next = current + value;
    U next_bits;
    std::memcpy(&next_bits, &next, sizeof(T));
    if (__atomic_compare_exchange_n(bits, &old, next_bits, true, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED)) {
      return current;
    }
  }
}
}  // namespace dc::emu::detail

#define DC_EMU_INT_ATOMICS(T)                                                             \
  inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }   \
  inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }   \
  inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); } \
  inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); }   \
  inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }     \
  inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); }   \
  inline T atomicMin(T* a, T v) {                                                         \
    return ::dc::emu::detail::atomic_update(a, [v](T o) { return o < v ? o : v; });       \
  }                                                                                       \
  inline T atomicMax(T* a, T v) {                                                         \
    return ::dc::emu::detail::atomic_update(a, [v](T o) { return o > v ? o : v; });       \
  }                                                                                       \
  inline T atomicCAS(T* a, T compare, T v) {                                              \
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
    return compare;                                                                       \
  }
DC_EMU_INT_ATOMICS(int)
DC_EMU_INT_ATOMICS(unsigned int)
DC_EMU_INT_ATOMICS(unsigned long long)
#undef DC_EMU_INT_ATOMICS

inline float atomicAdd(float* a, float v) {
  return ::dc::emu::detail::float_atomic_add<float, std::uint32_t>(a, v);
}
inline double atomicAdd(double* a, double v) {
  return ::dc::emu::detail::float_atomic_add<double, std::uint64_t>(a, v);
}
inline float atomicExch(float* a, float v) {
  float old;
  __atomic_exchange(a, &v, &old, __ATOMIC_SEQ_CST);
  return old;
}
// CUDA's atomicInc: old >= limit ? 0 : old + 1.
inline unsigned int atomicInc(unsigned int* a, unsigned int limit) {
  return ::dc::emu::detail::atomic_update(
      a, [limit](unsigned int o) { return o >= limit ? 0u : o + 1u; });
}

// ---- memory fences: the emulator's blocks synchronise through atomics and
// the end of the launch; a fence orders this OS thread's accesses.
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

// ---- loads ------------------------------------------------------------------------------
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

// ---- math intrinsics: the fast GPU forms computed with the accurate host ones --------------
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }

// CUDA's overloaded min/max for device code.
#define DC_EMU_MINMAX(T)                           \
  inline T min(T a, T b) { return a < b ? a : b; } \
  inline T max(T a, T b) { return a > b ? a : b; }
DC_EMU_MINMAX(int)
DC_EMU_MINMAX(unsigned int)
DC_EMU_MINMAX(long long)
DC_EMU_MINMAX(unsigned long long)
#undef DC_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- bit intrinsics ------------------------------------------------------------------------
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned int>(x)); }
inline int __clzll(long long x) {
  return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline int __float_as_int(float x) {
  int i;
  std::memcpy(&i, &x, 4);
  return i;
}
inline unsigned int __float_as_uint(float x) {
  unsigned int i;
  std::memcpy(&i, &x, 4);
  return i;
}
inline float __int_as_float(int i) {
  float x;
  std::memcpy(&x, &i, 4);
  return x;
}
inline float __uint_as_float(unsigned int i) {
  float x;
  std::memcpy(&x, &i, 4);
  return x;
}
inline long long __double_as_longlong(double x) {
  long long i;
  std::memcpy(&i, &x, 8);
  return i;
}
inline double __longlong_as_double(long long i) {
  double x;
  std::memcpy(&x, &i, 8);
  return x;
}
