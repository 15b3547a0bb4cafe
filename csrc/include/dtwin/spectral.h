// Spectral convolution: the per-element arithmetic of the mode-mixing kernel, shared by the
// CPU and CUDA kernels, and the sizes and strides that describe one mixing call.
//
// One mixing call computes, for every retained mode m = (m1, m2), a complex product
//   out[b, n, m] = sum_j in[b, j, m] * w[j, n, m]      (in and w each optionally conjugated)
// where `in`, `w` and `out` are strided complex arrays (real and imaginary parts at a fixed
// offset: interleaved complex, or the planar layout of a DFT-by-GEMM). The forward pass
// (w = the weight [Cin, Cout, modes]), the input gradient (w = conj(weight) with its channel
// strides exchanged) and the weight gradient (j = batch, in = conj(the input modes), w = the
// output gradient's modes) are all this one contraction, reading the tensors where they lie.
#pragma once

#include "dtwin/macros.h"

namespace dtwin {
namespace spectral {

// Element strides of a strided complex array indexed [b, j, m1, m2] (for w: [j, n, m1, m2]);
// `c` is the offset from a real part to its imaginary part.
struct ComplexStrides {
  int64_t b, j, m1, m2, c;
};

struct MixShape {
  int64_t batch;  // b
  int64_t J;  // contracted index
  int64_t N;  // output index
  int64_t M1, M2;  // retained modes (M1 = 1 in 1D)
};

// acc += a * w (complex), or conj(a) * w
template <class Acc>
DTWIN_HD void complex_mac(Acc& acc_re, Acc& acc_im, Acc a_re, Acc a_im, Acc w_re, Acc w_im) {
  acc_re += a_re * w_re - a_im * w_im;
  acc_im += a_re * w_im + a_im * w_re;
}

// Which transform is cheaper for one axis: a truncated DFT as a matrix product costs about
// 2 * modes multiply-adds per grid point, an FFT about c log2(n). Measured forward+backward on a
// 2-core AVX-512 CPU with MKL (bench/test_spectral.py, test_dft_vs_fft): the DFT wins up to
// 2 * modes ~ 4 log2(n), and at every mode count on grids of 64 points or fewer. Both give the
// same result to rounding.
inline bool dft_is_cheaper(int64_t n, int64_t modes_times_two) {
  int64_t log2n = 0;
  while ((int64_t(1) << (log2n + 1)) <= n) ++log2n;
  return n <= 64 || modes_times_two <= 4 * log2n;
}

}  // namespace spectral
}  // namespace dtwin
