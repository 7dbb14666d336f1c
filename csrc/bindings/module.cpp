// Entry point of deepconv._emu and deepconv._cuda: the same file, compiled
// with DC_BACKEND_EMU or DC_BACKEND_CUDA and DC_MODULE_NAME set by the build.
#include <algorithm>

#include "bindings/bindings.h"
#include "bindings/common.h"

namespace dc::bindings {
std::vector<std::pair<std::string, BindFunction>>& registered_bindings() {
  static std::vector<std::pair<std::string, BindFunction>> functions;
  return functions;
}
}  // namespace dc::bindings

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
  auto functions = dc::bindings::registered_bindings();
  std::sort(functions.begin(), functions.end());
  for (const auto& entry : functions) entry.second(m);
}
