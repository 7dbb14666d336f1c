// The pieces of a deepconv extension module (_emu or _cuda), each defined in
// its own translation unit and called from module.cpp.
//   bind_ops              ops_bindings.cpp: the launchers in ops/ops.h
//   bind_backend_runtime  cuda_runtime_bindings.cpp in _cuda (devices, driver),
//                         emu_runtime_bindings.cpp in _emu (settings, errors)
// Host C++ only: pybind11 is never seen by nvcc.
#pragma once

#include <pybind11/pybind11.h>

void bind_ops(pybind11::module_& m);
void bind_backend_runtime(pybind11::module_& m);
