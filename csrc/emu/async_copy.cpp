// cp.async on the emulator: copies that land when their issuing thread's
// cp.async.wait_group covers them, and the checks that a GPU leaves to chance
// (see emu.h for the contract).
//
// Why deferred rather than copied at issue: a read of the destination before
// the wait then sees what a GPU may well show there (the old contents, or
// race-check mode's poison) instead of the right data by luck, so a missing
// wait changes results even where no check looks. The checks themselves
// (AsyncCopyError) use a map of the block's shared memory, one 16-bit entry
// per 4-byte word (AsyncState in runtime_internal.h): who has a copy in
// flight there, or has landed one that the next __syncthreads publishes.
//
// Cost: blocks that never issue a cp.async pay one flag test per checked
// read (tl_context.async_active) and nothing at barriers. Blocks that do pay
// per copy (a few map entries), per wait (the copies), per barrier (the
// words landed since the last one) and per checked read (its words): cheap
// next to the fiber switches of the barriers they already have, and always
// on, so a pipelining bug fails every test run rather than only race checks.
#include <algorithm>
#include <cstring>
#include <sstream>

#include "emu/runtime_internal.h"

namespace dc::emu {

using detail::tl_context;

namespace {

constexpr std::size_t kWordBytes = 4;

Worker& async_worker(const char* what) {
  Worker* w = tl_context.worker;
  if (w == nullptr || tl_context.thread == nullptr) {
    throw Error(std::string(what) + " called outside a kernel");
  }
  return *w;
}

int thread_linear(const Worker& w) {
  return static_cast<int>(tl_context.thread - w.threads.data());
}

// The shared-memory byte offset of p, or -1 when p is not in the block's
// shared memory.
std::ptrdiff_t shared_offset(const Worker& w, const void* p) {
  const char* c = static_cast<const char*>(p);
  if (c < w.arena || c >= w.arena + kMaxSharedBytes) return -1;
  return c - w.arena;
}

void start_tracking(Worker& w) {
  if (w.async.used) return;
  w.async.used = true;
  tl_context.async_active = true;
  if (w.async.words.empty()) w.async.words.assign(kMaxSharedBytes / kWordBytes, 0);
  const std::size_t n = static_cast<std::size_t>(w.launch->threads_per_block);
  if (w.async.threads.size() < n) w.async.threads.resize(n);
}

std::string word_state(std::uint16_t v, int me) {
  const int owner = (v & ~kAsyncLanded) - 1;
  std::ostringstream out;
  if (owner == me) {
    out << "its own cp.async there has not completed (no cp.async.wait_group covers its group)";
  } else if (v & kAsyncLanded) {
    out << "thread " << owner << "'s cp.async there has landed, but no __syncthreads has "
        << "published it to the other threads";
  } else {
    out << "thread " << owner << "'s cp.async there is still in flight";
  }
  return out.str();
}

// Performs copy c and marks its words landed for thread `me`.
void land(Worker& w, const AsyncCopy& c, int me) {
  std::memcpy(c.dst, c.src, static_cast<std::size_t>(c.src_bytes));
  std::memset(c.dst + c.src_bytes, 0, static_cast<std::size_t>(c.cp_bytes - c.src_bytes));
  const std::size_t first = static_cast<std::size_t>(c.dst - w.arena) / kWordBytes;
  for (std::size_t i = 0; i < static_cast<std::size_t>(c.cp_bytes) / kWordBytes; ++i) {
    w.async.words[first + i] = static_cast<std::uint16_t>(kAsyncLanded | (me + 1));
    w.async.landed.push_back(static_cast<std::uint32_t>(first + i));
  }
}

}  // namespace

void async_block_start(Worker& w) {
  for (std::uint32_t i : w.async.touched) w.async.words[i] = 0;
  w.async.touched.clear();
  w.async.landed.clear();
  for (AsyncThread& t : w.async.threads) t = AsyncThread{};
  w.async.used = false;
  tl_context.async_active = false;
}

void async_barrier(Worker& w) {
  for (std::uint32_t i : w.async.landed) {
    if (w.async.words[i] & kAsyncLanded) w.async.words[i] = 0;
  }
  w.async.landed.clear();
}

void cp_async(void* shared_dst, const void* global_src, int cp_bytes, int src_bytes,
              bool cache_global) {
  Worker& w = async_worker("cp.async");
  const char* kind = cache_global ? "cp.async.cg" : "cp.async.ca";
  if (cp_bytes != 4 && cp_bytes != 8 && cp_bytes != 16) {
    throw Error(where_thread() + ": " + kind + " copies 4, 8 or 16 bytes, not " +
                std::to_string(cp_bytes));
  }
  if (cache_global && cp_bytes != 16) {
    throw Error(where_thread() + ": cp.async.cg copies 16 bytes only, not " +
                std::to_string(cp_bytes));
  }
  if (src_bytes < 0 || src_bytes > cp_bytes) {
    throw Error(where_thread() + ": " + kind + " src-size " + std::to_string(src_bytes) +
                " outside [0, " + std::to_string(cp_bytes) + "]");
  }
  const std::ptrdiff_t offset = shared_offset(w, shared_dst);
  if (offset < 0 || static_cast<std::size_t>(offset) + cp_bytes > kMaxSharedBytes) {
    throw Error(where_thread() + ": " + kind + " destination " +
                std::to_string(reinterpret_cast<std::uintptr_t>(shared_dst)) +
                " is not in the block's shared memory");
  }
  check_vector_alignment(shared_dst, static_cast<std::size_t>(cp_bytes), "cp.async destination");
  check_vector_alignment(global_src, static_cast<std::size_t>(cp_bytes), "cp.async source");
  start_tracking(w);
  const int me = thread_linear(w);
  const std::size_t first = static_cast<std::size_t>(offset) / kWordBytes;
  for (std::size_t i = 0; i < static_cast<std::size_t>(cp_bytes) / kWordBytes; ++i) {
    const std::uint16_t v = w.async.words[first + i];
    // Overwriting one's own landed data is ordinary; anything else in
    // flight or unpublished there makes the final contents order-dependent.
    if (v != 0 && v != (kAsyncLanded | (me + 1))) {
      std::ostringstream out;
      out << where_thread() << ": " << kind << " to shared byte " << offset + 4 * i
          << " while " << word_state(v, me);
      throw AsyncCopyError(out.str());
    }
    w.async.words[first + i] = static_cast<std::uint16_t>(me + 1);
    w.async.touched.push_back(static_cast<std::uint32_t>(first + i));
  }
  if (w.launch->race_check) std::memset(shared_dst, kPoisonByte, static_cast<std::size_t>(cp_bytes));
  AsyncThread& t = w.async.threads[static_cast<std::size_t>(me)];
  t.pending.push_back(AsyncCopy{static_cast<char*>(shared_dst),
                                static_cast<const char*>(global_src), cp_bytes, src_bytes,
                                t.committed + 1});
}

void cp_async_commit() {
  Worker& w = async_worker("cp.async.commit_group");
  // An empty group is legal (a pipeline's prologue past the last stage) and
  // completes at once; numbering it keeps wait_group N counting right.
  start_tracking(w);
  ++w.async.threads[static_cast<std::size_t>(thread_linear(w))].committed;
}

void cp_async_wait(int pending_groups) {
  Worker& w = async_worker("cp.async.wait_group");
  if (pending_groups < 0) throw Error(where_thread() + ": cp.async.wait_group N needs N >= 0");
  if (!w.async.used) return;  // nothing ever issued in this block
  const int me = thread_linear(w);
  AsyncThread& t = w.async.threads[static_cast<std::size_t>(me)];
  const int done = t.committed - pending_groups;  // groups 1 .. done must complete
  auto remaining = std::stable_partition(t.pending.begin(), t.pending.end(),
                                         [&](const AsyncCopy& c) { return c.group > done; });
  for (auto it = remaining; it != t.pending.end(); ++it) land(w, *it, me);
  t.pending.erase(remaining, t.pending.end());
}

bool async_read_ready(const void* p, std::size_t bytes) {
  Worker* w = tl_context.worker;
  if (w == nullptr || !w->async.used || bytes == 0) return true;
  const std::ptrdiff_t offset = shared_offset(*w, p);
  if (offset < 0) return true;  // global memory: not cp.async's business
  const int me = thread_linear(*w);
  const std::size_t first = static_cast<std::size_t>(offset) / kWordBytes;
  const std::size_t last = (static_cast<std::size_t>(offset) + bytes - 1) / kWordBytes;
  for (std::size_t i = first; i <= last; ++i) {
    const std::uint16_t v = w->async.words[i];
    if (v != 0 && v != (kAsyncLanded | (me + 1))) return false;
  }
  return true;
}

[[noreturn]] void throw_async_read(const void* p, std::size_t bytes) {
  Worker& w = *tl_context.worker;
  const int me = thread_linear(w);
  const std::size_t offset = static_cast<std::size_t>(shared_offset(w, p));
  std::uint16_t state = 0;
  std::size_t at = offset;
  for (std::size_t i = offset / kWordBytes; i <= (offset + bytes - 1) / kWordBytes; ++i) {
    const std::uint16_t v = w.async.words[i];
    if (v != 0 && v != (kAsyncLanded | (me + 1))) {
      state = v;
      at = i * kWordBytes;
      break;
    }
  }
  std::ostringstream out;
  out << where_thread() << ": reads " << bytes << " bytes of shared memory at byte " << at
      << " before they are visible to it: " << word_state(state, me);
  throw AsyncCopyError(out.str());
}

}  // namespace dc::emu
