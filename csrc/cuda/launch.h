// Raw-pointer launchers of the CUDA kernels: plain C++ on both sides, so the .cu files
// include no torch header and compile with `nvcc -c` on any machine that has nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include "dtwin/drip.h"
#include "dtwin/hh_driver.h"
#include "dtwin/mix.h"
#include "dtwin/wavelet.h"

namespace dtwin {
namespace cuda {

// dtwin::hh_simulate: one thread per neuron on `stream`; returns the launch's error code.
template <class T>
cudaError_t hh_simulate_launch(const hh::Problem<T>& problem, int method, cudaStream_t stream);

// Spectral mode mixing (csrc/include/dtwin/mix.h): `in` of the op's dtype; `w` and `out` each of
// that dtype or float32 (the complex64 weight and its gradient); float accumulation except for
// double.
enum class MixDtype : int { kFloat = 0, kDouble = 1, kHalf = 2, kBFloat16 = 3 };
struct MixArgs {
  mix::Shape shape;
  const void* in;
  mix::Strides in_s;
  bool conj_in;
  const void* w;
  mix::Strides w_s;
  bool conj_w;
  void* out;
  mix::Strides out_s;
  MixDtype dtype;
  MixDtype w_dtype;
  MixDtype out_dtype;
};
cudaError_t mix_launch(const MixArgs& args, cudaStream_t stream);

// Wavelet primitives (csrc/wavelet_op.h, csrc/include/dtwin/wavelet.h): one level of analysis,
// synthesis, or either's transpose, over a batch of strided signals; one thread per output value.
enum class WaveletOp : int { kAnalysis = 0, kAnalysisAdjoint = 1, kSynthesis = 2, kSynthesisAdjoint = 3 };
struct WaveletSignals {  // sample k of signal (a, b) at data + a * sa + b * sb + k * st; data null = absent
  void* data;
  int64_t sa, sb, st, len;
};
struct WaveletArgs {
  WaveletOp op;
  int64_t na, nb;
  // analysis: in[0] = x, out = (lo, hi); analysis adjoint: in = (g_lo, g_hi), out[0] = x gradient;
  // synthesis: in = (a, d), out[0]; synthesis adjoint: in[0] = g, out = (ga, gd)
  WaveletSignals in[2], out[2];
  const void* f[2];  // the filters of the two branches, F each
  int64_t F;
  int mode;
  bool dbl;  // double (else float)
};
cudaError_t wavelet_launch(const WaveletArgs& args, cudaStream_t stream);

// dtwin::drip_step: a first kernel writes z_new, y_new and each block's partial sums into
// `workspace` (drip_step_workspace(B, N) doubles); a second adds them per sample in a fixed order
// and applies the stopping test. Both on `stream`, no host synchronisation.
int64_t drip_step_workspace(int64_t B, int64_t N);
template <class T>
cudaError_t drip_step_launch(const drip::Problem<T>& problem, double* workspace, cudaStream_t stream);

// The architectures this build's device code was compiled for (nvcc's __CUDA_ARCH_LIST__).
const char* arch_list();

}  // namespace cuda
}  // namespace dtwin
