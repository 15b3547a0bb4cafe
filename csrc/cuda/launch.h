// Raw-pointer launchers of the CUDA kernels: plain C++ on both sides, so the .cu files
// include no torch header and compile with `nvcc -c` on any machine that has nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include "dtwin/hh_driver.h"

namespace dtwin {
namespace cuda {

// dtwin::hh_simulate: one thread per neuron on `stream`; returns the launch's error code.
template <class T>
cudaError_t hh_simulate_launch(const hh::Problem<T>& problem, int method, cudaStream_t stream);

// The architectures this build's device code was compiled for (nvcc's __CUDA_ARCH_LIST__).
const char* arch_list();

}  // namespace cuda
}  // namespace dtwin
