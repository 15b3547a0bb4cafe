// Raw-pointer launchers of the CUDA kernels: plain C++ on both sides, so the .cu files
// include no torch header and compile with `nvcc -c` on any machine that has nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include "dtwin/hh_driver.h"
#include "dtwin/spectral.h"

namespace dtwin {
namespace cuda {

// dtwin::hh_simulate: one thread per neuron on `stream`; returns the launch's error code.
template <class T>
cudaError_t hh_simulate_launch(const hh::Problem<T>& problem, int method, cudaStream_t stream);

// Spectral mode mixing (csrc/include/dtwin/spectral.h): `in` and `out` of one dtype, `w` of its
// own (the complex64 weight, or modes of the input's dtype); float accumulation except for double.
enum class MixDtype : int { kFloat = 0, kDouble = 1, kHalf = 2, kBFloat16 = 3 };
struct MixArgs {
  spectral::MixShape shape;
  const void* in;
  spectral::ComplexStrides in_s;
  bool conj_in;
  const void* w;
  spectral::ComplexStrides w_s;
  bool conj_w;
  void* out;
  spectral::ComplexStrides out_s;
  MixDtype dtype;
  MixDtype w_dtype;
};
cudaError_t spectral_mix_launch(const MixArgs& args, cudaStream_t stream);

// The architectures this build's device code was compiled for (nvcc's __CUDA_ARCH_LIST__).
const char* arch_list();

}  // namespace cuda
}  // namespace dtwin
