// The CUDA side of bind_backend_runtime (deepconv._cuda only): device
// discovery and the build's architecture list, through the CUDA runtime API.
//
// Host C++ (cudart is linked statically). Nothing here may raise just
// because the machine has no GPU or no driver: device_count() is then 0 and
// device_status() carries CUDA's own explanation, so `import deepconv` works
// everywhere and the backend can say why CUDA is unavailable.
#include <cstdint>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/bindings.h"

namespace py = pybind11;

namespace {

#define DC_STRINGIZE_IMPL(x) #x
#define DC_STRINGIZE(x) DC_STRINGIZE_IMPL(x)

// The build passes CMAKE_CUDA_ARCHITECTURES, e.g. "75-real;80-real;90", as a
// string literal or as bare tokens; stringizing covers both, and the quotes a
// literal brings along are stripped below.
#if defined(DC_CUDA_ARCHITECTURES)
constexpr const char* kArchitecturesSpec = DC_STRINGIZE(DC_CUDA_ARCHITECTURES);
#else
constexpr const char* kArchitecturesSpec = "";
#endif

[[noreturn]] void throw_cuda_error(cudaError_t err, const std::string& what) {
  cudaGetLastError();  // clear it, so the next call does not report it again
  throw std::runtime_error("CUDA error in " + what + ": " + cudaGetErrorString(err));
}

// "75-real" -> sm_75; "75-virtual" -> compute_75; "75" -> sm_75 and
// compute_75 (CMake's meaning: SASS plus PTX). Other entries (CMake's "all",
// "native") are passed through unchanged.
std::vector<std::string> parse_architectures(std::string spec) {
  std::vector<std::string> out;
  for (char& c : spec) {
    if (c == '"' || c == ',' || c == ' ') c = ';';
  }
  std::size_t start = 0;
  while (start <= spec.size()) {
    std::size_t end = spec.find(';', start);
    if (end == std::string::npos) end = spec.size();
    const std::string entry = spec.substr(start, end - start);
    start = end + 1;
    if (entry.empty()) continue;
    const std::size_t dash = entry.find('-');
    const std::string number = entry.substr(0, dash);
    const std::string kind = dash == std::string::npos ? "" : entry.substr(dash + 1);
    const bool numeric = !number.empty() && number.find_first_not_of("0123456789") == std::string::npos;
    if (!numeric || (kind != "" && kind != "real" && kind != "virtual")) {
      out.push_back(entry);
      continue;
    }
    if (kind != "virtual") out.push_back("sm_" + number);
    if (kind != "real") out.push_back("compute_" + number);
  }
  return out;
}

int device_count() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

std::string device_status() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    // With no driver installed at all CUDA says "driver version is
    // insufficient", which sends users looking for an upgrade; say what it is.
    int driver = 0;
    if (cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0) {
      return std::string("no CUDA driver found (libcuda.so could not be loaded): ") +
             cudaGetErrorString(err);
    }
    cudaGetLastError();
    return cudaGetErrorString(err);
  }
  if (count == 0) return cudaGetErrorString(cudaErrorNoDevice);
  return "ok";
}

py::dict device_properties(int index) {
  const int count = device_count();
  if (index < 0 || index >= count) {
    throw py::value_error("index must be in [0, " + std::to_string(count) + "), got " +
                          std::to_string(index) + " (" + device_status() + ")");
  }
  cudaDeviceProp prop{};
  const cudaError_t err = cudaGetDeviceProperties(&prop, index);
  if (err != cudaSuccess) throw_cuda_error(err, "cudaGetDeviceProperties");
  py::dict d;
  d["name"] = std::string(prop.name);
  d["compute_capability"] = py::make_tuple(prop.major, prop.minor);
  d["multiprocessors"] = prop.multiProcessorCount;
  d["total_memory"] = static_cast<std::uint64_t>(prop.totalGlobalMem);
  d["shared_memory_per_block"] = static_cast<std::uint64_t>(prop.sharedMemPerBlock);
  d["shared_memory_per_block_optin"] = static_cast<std::uint64_t>(prop.sharedMemPerBlockOptin);
  d["shared_memory_per_multiprocessor"] =
      static_cast<std::uint64_t>(prop.sharedMemPerMultiprocessor);
  d["registers_per_block"] = prop.regsPerBlock;
  d["max_threads_per_block"] = prop.maxThreadsPerBlock;
  d["warp_size"] = prop.warpSize;
  d["l2_cache_bytes"] = prop.l2CacheSize;
  d["pci_bus_id"] = prop.pciBusID;
  return d;
}

int runtime_version() {
  int version = 0;
  if (cudaRuntimeGetVersion(&version) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return version;
}

int driver_version() {
  int version = 0;
  if (cudaDriverGetVersion(&version) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return version;
}

void synchronize() {
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = cudaDeviceSynchronize();
  }
  if (err != cudaSuccess) throw_cuda_error(err, "cudaDeviceSynchronize");
}

}  // namespace

void bind_backend_runtime(py::module_& m) {
  m.def("device_count", &device_count, "Number of usable CUDA devices; 0 on any error.");
  m.def("device_status", &device_status,
        "\"ok\" when a CUDA device is usable, else CUDA's text for why not.");
  m.def("device_properties", &device_properties, py::arg("index"),
        "A dict with name, compute_capability (major, minor), multiprocessors, total_memory, "
        "and shared-memory / thread limits of device `index`.");
  m.def("architectures", [] { return parse_architectures(kArchitecturesSpec); },
        "The GPU code this binary carries: sm_XY (SASS) and compute_XY (PTX) entries.");
  m.def("runtime_version", &runtime_version, "CUDA runtime version, e.g. 13000 for 13.0.");
  m.def("driver_version", &driver_version,
        "Newest CUDA version the installed driver supports; 0 without a driver.");
  m.def("synchronize", &synchronize, "Wait for all work on the current device.");
}
