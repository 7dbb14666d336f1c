// Fibers: user-space threads with their own stacks, switched by hand.
//
// An emulated CUDA thread that reaches a barrier must stop where it is while
// its block-mates catch up, then continue. A fiber is the cheapest way to
// stop a C++ function mid-flight: a context switch saves only the
// callee-saved registers and the stack pointer (a few ns on x86-64 and
// aarch64, hand-written assembly in fiber.cpp), where glibc's swapcontext
// makes a signal-mask syscall (~250 ns) and is kept only as the fallback for
// other processors.
#pragma once

#include <cstddef>

// AddressSanitizer (g++ or clang) must be told about every stack switch.
#if defined(__SANITIZE_ADDRESS__)
#define DC_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DC_EMU_ASAN 1
#endif
#endif

// Where every fiber starts: the first C++ function on a fresh fiber's stack
// (called by the assembly entry stub or the ucontext entry; fiber.cpp).
extern "C" void dc_emu_fiber_main(void* fiber);

namespace dc::emu {

class Fiber {
 public:
  // A fiber runs entry(arg) on its own stack; when entry returns the fiber
  // switches back to whoever resumed it last and never runs again until
  // reset() starts it afresh.
  using Entry = void (*)(void* arg);

  explicit Fiber(std::size_t stack_bytes);
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  void reset(Entry entry, void* arg);
  // From the scheduler: run the fiber until it yields or finishes.
  void resume();
  // From inside the fiber: give control back to the scheduler.
  void yield();
  // From inside the fiber: run `next` (started or fresh) in its place,
  // without a trip through the scheduler; `next` yields to the same
  // scheduler. Only where can_switch_directly().
  void switch_to(Fiber& next);
  static constexpr bool can_switch_directly();
  bool finished() const { return finished_; }

  static const char* switch_kind();  // "x86-64 assembly", "aarch64 assembly", "ucontext"

 private:
  friend void ::dc_emu_fiber_main(void* fiber);

  char* stack_ = nullptr;       // lowest usable address (a guard page lies below)
  std::size_t stack_bytes_ = 0;
  std::size_t mapped_bytes_ = 0;
  void* fiber_sp_ = nullptr;    // saved stack pointer of the suspended fiber
  void* caller_sp_ = nullptr;   // saved stack pointer of the scheduler
  void* native_ = nullptr;      // ucontext storage in the fallback build
  Entry entry_ = nullptr;
  void* arg_ = nullptr;
  bool finished_ = true;
  // AddressSanitizer must be told about stack switches (fiber.cpp). The
  // fake stack (detect_stack_use_after_return) of a suspended fiber, or of
  // one abandoned mid-run, which its next run takes over.
  void* asan_fake_stack_ = nullptr;
  const void* caller_stack_bottom_ = nullptr;
  std::size_t caller_stack_size_ = 0;
};

// Direct switches hand the scheduler's saved stack pointer from fiber to
// fiber; the ucontext fallback keeps the scheduler's context per fiber, and
// AddressSanitizer must be told which stack each switch returns to, so both
// always go through the scheduler.
constexpr bool Fiber::can_switch_directly() {
#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(DC_EMU_FORCE_UCONTEXT) && \
    !defined(DC_EMU_ASAN)
  return true;
#else
  return false;
#endif
}

}  // namespace dc::emu
