#include "emu/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>

#if defined(DC_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(DC_EMU_FORCE_UCONTEXT)
#define DC_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

#if defined(DC_EMU_ASM_SWITCH)
// dc_emu_switch(save, load): push the callee-saved registers (and the FP
// control state, which the ABI also makes callee-saved) on the current
// stack, store the stack pointer in *save, load `load` as the stack pointer
// and pop the same frame from there. A new fiber's stack is laid out as if
// it had switched out just before entering dc_emu_fiber_start.
extern "C" void dc_emu_switch(void** save, void* load);
extern "C" void dc_emu_fiber_start();

#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl dc_emu_switch\n"
    ".hidden dc_emu_switch\n"
    ".type dc_emu_switch,@function\n"
    "dc_emu_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  subq $8, %rsp\n"
    "  stmxcsr (%rsp)\n"
    "  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n"
    "  fldcw 4(%rsp)\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size dc_emu_switch, .-dc_emu_switch\n"
    ".globl dc_emu_fiber_start\n"
    ".hidden dc_emu_fiber_start\n"
    ".type dc_emu_fiber_start,@function\n"
    "dc_emu_fiber_start:\n"
    "  movq %r12, %rdi\n"
    "  andq $-16, %rsp\n"
    "  call dc_emu_fiber_main\n"
    "  ud2\n"
    ".size dc_emu_fiber_start, .-dc_emu_fiber_start\n");
// Slots of the initial frame, in 8-byte words from the saved stack pointer.
namespace {
constexpr int kFrameWords = 8;  // fp control, r15, r14, r13, r12, rbx, rbp, return address
constexpr int kArgSlot = 4;     // r12 carries the fiber to dc_emu_fiber_start
constexpr int kReturnSlot = 7;
}  // namespace
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl dc_emu_switch\n"
    ".hidden dc_emu_switch\n"
    ".type dc_emu_switch,%function\n"
    "dc_emu_switch:\n"
    "  sub sp, sp, #176\n"
    "  stp x19, x20, [sp, #0]\n"
    "  stp x21, x22, [sp, #16]\n"
    "  stp x23, x24, [sp, #32]\n"
    "  stp x25, x26, [sp, #48]\n"
    "  stp x27, x28, [sp, #64]\n"
    "  stp x29, x30, [sp, #80]\n"
    "  stp d8, d9, [sp, #96]\n"
    "  stp d10, d11, [sp, #112]\n"
    "  stp d12, d13, [sp, #128]\n"
    "  stp d14, d15, [sp, #144]\n"
    "  mrs x9, fpcr\n"
    "  str x9, [sp, #160]\n"
    "  mov x9, sp\n"
    "  str x9, [x0]\n"
    "  mov sp, x1\n"
    "  ldr x9, [sp, #160]\n"
    "  msr fpcr, x9\n"
    "  ldp x19, x20, [sp, #0]\n"
    "  ldp x21, x22, [sp, #16]\n"
    "  ldp x23, x24, [sp, #32]\n"
    "  ldp x25, x26, [sp, #48]\n"
    "  ldp x27, x28, [sp, #64]\n"
    "  ldp x29, x30, [sp, #80]\n"
    "  ldp d8, d9, [sp, #96]\n"
    "  ldp d10, d11, [sp, #112]\n"
    "  ldp d12, d13, [sp, #128]\n"
    "  ldp d14, d15, [sp, #144]\n"
    "  add sp, sp, #176\n"
    "  ret\n"
    ".size dc_emu_switch, .-dc_emu_switch\n"
    ".globl dc_emu_fiber_start\n"
    ".hidden dc_emu_fiber_start\n"
    ".type dc_emu_fiber_start,%function\n"
    "dc_emu_fiber_start:\n"
    "  mov x0, x19\n"
    "  bl dc_emu_fiber_main\n"
    "  brk #0\n"
    ".size dc_emu_fiber_start, .-dc_emu_fiber_start\n");
namespace {
constexpr int kFrameWords = 22;  // 176 bytes: x19..x30, d8..d15, fpcr, padding
constexpr int kArgSlot = 0;      // x19 carries the fiber to dc_emu_fiber_start
constexpr int kReturnSlot = 11;  // x30
constexpr int kFpcrSlot = 20;
}  // namespace
#endif
#endif  // DC_EMU_ASM_SWITCH

namespace dc::emu {

namespace {
std::size_t page_size() {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}
}  // namespace

Fiber::Fiber(std::size_t stack_bytes) {
  const std::size_t page = page_size();
  stack_bytes_ = (stack_bytes + page - 1) / page * page;
  mapped_bytes_ = stack_bytes_ + page;
  // Pages are committed only when touched, so generous stacks cost address
  // space, not memory. The lowest page is a guard: a kernel that overflows
  // its stack faults at once instead of corrupting a neighbour's.
  void* base = mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) throw std::bad_alloc();
  mprotect(base, page, PROT_NONE);
  stack_ = static_cast<char*>(base) + page;
#if !defined(DC_EMU_ASM_SWITCH)
  native_ = new ucontext_t[2];
#endif
}

Fiber::~Fiber() {
  munmap(stack_ - page_size(), mapped_bytes_);
#if !defined(DC_EMU_ASM_SWITCH)
  delete[] static_cast<ucontext_t*>(native_);
#endif
}

const char* Fiber::switch_kind() {
#if defined(DC_EMU_ASM_SWITCH) && defined(__x86_64__)
  return "x86-64 assembly";
#elif defined(DC_EMU_ASM_SWITCH) && defined(__aarch64__)
  return "aarch64 assembly";
#else
  return "ucontext";
#endif
}

#if !defined(DC_EMU_ASM_SWITCH)
namespace {
// makecontext passes int arguments only: split the pointer in two.
void ucontext_entry(unsigned int hi, unsigned int lo) {
  auto bits = (static_cast<std::uintptr_t>(hi) << 32) | lo;
  dc_emu_fiber_main(reinterpret_cast<void*>(bits));
  std::abort();  // not reached; returning here would end the OS thread (uc_link is null)
}
}  // namespace
#endif

void Fiber::reset(Entry entry, void* arg) {
#if defined(DC_EMU_ASAN)
  // A fiber abandoned mid-run (its launch failed while it waited at a
  // rendezvous) never unwound its frames, so their redzones are still
  // poisoned in the shadow of its stack. The next run's instrumented frames
  // rewrite the shadow of their own slots only; uninstrumented code below
  // them trips over the rest. So did __asan_handle_no_return (g++ calls it
  // before every noreturn call: a throw, std::abort): it hands a local of its
  // own to the intercepted sigaltstack, which found it "overflowing" a stale
  // redzone. That was the root cause of the stack-buffer-overflow reports in
  // dc_emu_fiber_main (why there: see it) and, at -O3, in kernels that
  // throw. A fiber that finished returned from every frame but the
  // outermost two (dc_emu_fiber_main, yield), which have no redzones:
  // nothing to clear, and resets stay cheap (dev/emu_asan checks both).
  if (!finished_) __asan_unpoison_memory_region(stack_, stack_bytes_);
#endif
  entry_ = entry;
  arg_ = arg;
  finished_ = false;
#if defined(DC_EMU_ASM_SWITCH)
  auto top = reinterpret_cast<std::uintptr_t>(stack_ + stack_bytes_) & ~std::uintptr_t{15};
  auto* frame = reinterpret_cast<std::uint64_t*>(top) - kFrameWords - 2;
  for (int i = 0; i < kFrameWords; ++i) frame[i] = 0;
  frame[kArgSlot] = reinterpret_cast<std::uint64_t>(this);
  frame[kReturnSlot] = reinterpret_cast<std::uint64_t>(&dc_emu_fiber_start);
#if defined(__x86_64__)
  // The fiber starts with the scheduler's floating-point control state.
  std::uint32_t mxcsr;
  std::uint16_t x87;
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(x87));
  frame[0] = mxcsr | (static_cast<std::uint64_t>(x87) << 32);
#else
  std::uint64_t fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  frame[kFpcrSlot] = fpcr;
#endif
  fiber_sp_ = frame;
#else
  auto* contexts = static_cast<ucontext_t*>(native_);
  getcontext(&contexts[0]);
  contexts[0].uc_stack.ss_sp = stack_;
  contexts[0].uc_stack.ss_size = stack_bytes_;
  contexts[0].uc_link = nullptr;
  auto bits = reinterpret_cast<std::uintptr_t>(this);
  makecontext(&contexts[0], reinterpret_cast<void (*)()>(&ucontext_entry), 2,
              static_cast<unsigned int>(bits >> 32), static_cast<unsigned int>(bits));
#endif
}

void Fiber::resume() {
#if defined(DC_EMU_ASAN)
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, stack_, stack_bytes_);
#endif
#if defined(DC_EMU_ASM_SWITCH)
  dc_emu_switch(&caller_sp_, fiber_sp_);
#else
  auto* contexts = static_cast<ucontext_t*>(native_);
  swapcontext(&contexts[1], &contexts[0]);
#endif
#if defined(DC_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

void Fiber::yield() {
#if defined(DC_EMU_ASAN)
  // A finished fiber's stack is dead: nullptr tells ASan to destroy its fake
  // stack, so the next run must not take it over.
  if (finished_) asan_fake_stack_ = nullptr;
  __sanitizer_start_switch_fiber(finished_ ? nullptr : &asan_fake_stack_, caller_stack_bottom_,
                                 caller_stack_size_);
#endif
#if defined(DC_EMU_ASM_SWITCH)
  dc_emu_switch(&fiber_sp_, caller_sp_);
#else
  auto* contexts = static_cast<ucontext_t*>(native_);
  swapcontext(&contexts[0], &contexts[1]);
#endif
#if defined(DC_EMU_ASAN)
  __sanitizer_finish_switch_fiber(asan_fake_stack_, &caller_stack_bottom_, &caller_stack_size_);
#endif
}

void Fiber::switch_to(Fiber& next) {
#if defined(DC_EMU_ASM_SWITCH)
  if constexpr (can_switch_directly()) {
    next.caller_sp_ = caller_sp_;
    dc_emu_switch(&fiber_sp_, next.fiber_sp_);
    return;
  }
#endif
  (void)next;
  std::abort();  // callers check can_switch_directly()
}

}  // namespace dc::emu

// The first C++ function on a fresh fiber's stack. Under AddressSanitizer,
// finishing the switch must come before anything enters the ASan runtime.
// It used to be done by a separate trampoline that ended in std::abort();
// from -O1 up g++ infers that such a function never returns and calls
// __asan_handle_no_return before calling it: here, at every fiber start,
// with ASan still mid-switch. On a stack reused after a failed launch that
// call met the stale redzones that reset() now clears (at -O0 nothing is
// inferred, hence no report there), and the report could not even describe
// the frame (a failed CHECK in GetStackFrameAccessByAddr). So the switch is
// finished here, first, and this function contains no noreturn call; nor is
// it inferred noreturn, since yield() returns as far as g++ knows.
extern "C" void dc_emu_fiber_main(void* self) {
  auto* fiber = static_cast<dc::emu::Fiber*>(self);
#if defined(DC_EMU_ASAN)
  // A fiber abandoned mid-run takes over its own old fake stack (or none).
  __sanitizer_finish_switch_fiber(fiber->asan_fake_stack_, &fiber->caller_stack_bottom_,
                                  &fiber->caller_stack_size_);
#endif
  // entry must not throw: the scheduler's entries catch everything, since an
  // exception cannot unwind past the bottom of a fiber's stack.
  fiber->entry_(fiber->arg_);
  fiber->finished_ = true;
  fiber->yield();
  // Not reached: a finished fiber is never resumed without reset(). Should it
  // be, the entry stub traps (ud2 / brk) and ucontext_entry aborts.
}
