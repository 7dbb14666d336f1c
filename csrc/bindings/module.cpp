// Entry point of deepconv._emu and deepconv._cuda: the same file, compiled
// with DC_BACKEND_EMU or DC_BACKEND_CUDA and DC_MODULE_NAME set by the build.
#include "bindings/bindings.h"

#if defined(DC_BACKEND_EMU) == defined(DC_BACKEND_CUDA)
#error "define exactly one of DC_BACKEND_EMU and DC_BACKEND_CUDA"
#endif
#ifndef DC_MODULE_NAME
#error "DC_MODULE_NAME must name the module (_emu or _cuda)"
#endif

PYBIND11_MODULE(DC_MODULE_NAME, m) {
#if defined(DC_BACKEND_EMU)
  m.doc() = "deepconv kernels on the CUDA-semantics CPU emulator";
  m.attr("BACKEND") = "emu";
#else
  m.doc() = "deepconv kernels on CUDA devices";
  m.attr("BACKEND") = "cuda";
#endif
  // The runtime first: on the emulator it registers the exception classes
  // that the ops' launches may raise.
  bind_backend_runtime(m);
  bind_ops(m);
}
