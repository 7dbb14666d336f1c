// Helpers shared by the op bindings (csrc/bindings/<op>_bindings.cpp).
//
// Each op family's bindings live in their own file and register themselves
// with DC_REGISTER_BINDINGS, so adding an op touches no shared file:
// module.cpp calls every registered function, in name order.
//
// Conventions (docs/internals.md): pointers arrive as plain integers
// (ndarray.ctypes.data, cupy's data.ptr), sizes as element counts, the dtype
// as "float32" / "float64", the stream as an integer cudaStream_t (0 =
// default; the emulator ignores it). No validation beyond what a launch needs
// to be safe: deepconv.ops checks shapes, contiguity and devices first. The
// GIL is released around every launch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common/stream.h"

namespace dc::bindings {

namespace py = pybind11;

using BindFunction = void (*)(py::module_&);

// Every registered bind function, filled by static initialisers before the
// module's init function runs.
std::vector<std::pair<std::string, BindFunction>>& registered_bindings();

struct BindingsRegistrar {
  BindingsRegistrar(const char* name, BindFunction fn) {
    registered_bindings().emplace_back(name, fn);
  }
};

template <typename T>
inline T* as_ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

inline dc::Stream as_stream(std::uintptr_t stream) { return reinterpret_cast<dc::Stream>(stream); }

// Calls f(T{}) with T the C++ type named by `dtype`.
template <typename F>
void dispatch_dtype(const std::string& dtype, F&& f) {
  if (dtype == "float32") {
    f(float{});
  } else if (dtype == "float64") {
    f(double{});
  } else {
    throw py::value_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
  }
}

// Calls f(T{}, L{}) with T named by `dtype` and the label type L by
// `label_dtype` ("int32" / "int64").
template <typename F>
void dispatch_dtype_and_labels(const std::string& dtype, const std::string& label_dtype, F&& f) {
  dispatch_dtype(dtype, [&](auto zero) {
    if (label_dtype == "int32") {
      f(zero, std::int32_t{});
    } else if (label_dtype == "int64") {
      f(zero, std::int64_t{});
    } else {
      throw py::value_error("label_dtype must be 'int32' or 'int64', got '" + label_dtype + "'");
    }
  });
}

}  // namespace dc::bindings

#define DC_REGISTER_BINDINGS(name, function) \
  static ::dc::bindings::BindingsRegistrar dc_bindings_registrar_##name(#name, function)
