// The pieces of a deepconv extension module (_emu or _cuda):
//   module.cpp                 the entry point, below
//   <op>_bindings.cpp          one per op family, registered with
//                              DC_REGISTER_BINDINGS (bindings/common.h)
//   emu_runtime_bindings.cpp   bind_backend_runtime in _emu (settings, errors)
//   cuda_runtime_bindings.cpp  bind_backend_runtime in _cuda (devices, driver)
// Host C++ only: pybind11 is never seen by nvcc.
#pragma once

#include <pybind11/pybind11.h>

void bind_backend_runtime(pybind11::module_& m);
