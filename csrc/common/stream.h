// The stream handle launchers receive: a cudaStream_t under CUDA (0 is the
// legacy default stream), ignored by the emulator, which runs every launch to
// completion before returning. Kept as void* so host-only code (bindings,
// ops.h) needs no CUDA header.
#pragma once

namespace dc {
using Stream = void*;
}  // namespace dc
