# The CUDA build: module _cuda from the same bindings (host C++; pybind11 is
# never compiled by nvcc) plus csrc/ops/*.cu compiled by nvcc. Built when
# DEEPCONV_CUDA is ON, or AUTO and a working CUDA compiler is found.
include_guard(GLOBAL)

if(DEEPCONV_CUDA STREQUAL "OFF")
  message(STATUS "deepconv: DEEPCONV_CUDA=OFF; building the emulator backend only")
  return()
endif()

# nvcc is often installed without being put on PATH. CMake's own search (and
# check_language, which skips its test when CMAKE_CUDA_COMPILER is already
# set) looks at CUDACXX, so point that at the usual install locations.
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  # PATH only, as CMake's own compiler search does.
  find_program(_deepconv_nvcc_on_path nvcc PATHS ENV PATH NO_DEFAULT_PATH NO_CACHE)
  if(NOT _deepconv_nvcc_on_path)
    foreach(root IN ITEMS "$ENV{CUDA_HOME}" "$ENV{CUDA_PATH}" /usr/local/cuda)
      if(root AND EXISTS "${root}/bin/nvcc")
        message(STATUS "deepconv: nvcc is not on PATH; trying ${root}/bin/nvcc")
        set(ENV{CUDACXX} "${root}/bin/nvcc")
        break()
      endif()
    endforeach()
  endif()
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(DEEPCONV_CUDA STREQUAL "ON")
    message(FATAL_ERROR "deepconv: DEEPCONV_CUDA=ON but no working CUDA compiler was found "
                        "(put nvcc on PATH or set CUDACXX)")
  endif()
  message(WARNING "deepconv: no CUDA compiler found; building the emulator backend only")
  return()
endif()

# Default architectures (README, "Building"): where nvidia-smi lists GPUs,
# SASS for their compute capabilities only, plus PTX for the newest of them
# (each architecture is a full nvcc back-end pass per launcher: one instead of
# five is most of a GPU machine's install time). Without a GPU to look at,
# SASS for every supported generation plus PTX for the newest, so that later
# GPUs can JIT. Overridable with -DCMAKE_CUDA_ARCHITECTURES or CUDAARCHS;
# DEEPCONV_CUDA_DETECT_ARCHS=OFF always builds the full list (wheels for
# other machines).
option(DEEPCONV_CUDA_DETECT_ARCHS "Build only the architectures of the GPUs nvidia-smi lists" ON)
set(_deepconv_all_archs "75-real;80-real;86-real;89-real;90")
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(_deepconv_archs_default "${_deepconv_all_archs}")
  if(DEEPCONV_CUDA_DETECT_ARCHS)
    deepconv_detect_gpu_architectures(_deepconv_detected)
    if(_deepconv_detected)
      set(_deepconv_archs_default "${_deepconv_detected}")
      message(STATUS "deepconv: GPUs found (nvidia-smi); building for ${_deepconv_detected} only "
                     "(-DDEEPCONV_CUDA_DETECT_ARCHS=OFF for ${_deepconv_all_archs})")
    endif()
  endif()
  set(CMAKE_CUDA_ARCHITECTURES "${_deepconv_archs_default}" CACHE STRING
      "CUDA architectures for deepconv._cuda")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

file(GLOB DEEPCONV_CUDA_OP_SOURCES CONFIGURE_DEPENDS "${DEEPCONV_CSRC}/ops/*.cu")
list(SORT DEEPCONV_CUDA_OP_SOURCES)
deepconv_add_module(_cuda CUDA
  SOURCES "${DEEPCONV_CSRC}/bindings/module.cpp" $<TARGET_OBJECTS:dc_op_bindings>
          "${DEEPCONV_CSRC}/bindings/cuda_runtime_bindings.cpp"
          ${DEEPCONV_CUDA_OP_SOURCES}
  LIBRARIES CUDA::cudart_static)
# cudart is linked explicitly above; keep CMake from adding a second copy.
set_target_properties(_cuda PROPERTIES CUDA_RUNTIME_LIBRARY None)
target_compile_options(_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 --expt-relaxed-constexpr -Xptxas=-warn-spills>)
# What architectures() reports, e.g. "75-real;80-real;86-real;89-real;90"
# (the semicolons escaped so that CMake keeps it one definition).
string(REPLACE ";" "\\;" _deepconv_archs "${CMAKE_CUDA_ARCHITECTURES}")
target_compile_definitions(_cuda PRIVATE "DC_CUDA_ARCHITECTURES=\"${_deepconv_archs}\"")
message(STATUS "deepconv: building _cuda with ${CMAKE_CUDA_COMPILER} "
               "(CUDA ${CMAKE_CUDA_COMPILER_VERSION}) for ${CMAKE_CUDA_ARCHITECTURES}")
