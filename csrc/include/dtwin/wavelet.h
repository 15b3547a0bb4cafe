// Discrete wavelet transform: the index arithmetic of one level, shared by the CPU and CUDA
// kernels, in PyWavelets' conventions (pywt.dwt / pywt.idwt, checked against it in the tests).
//
// One analysis level of a signal x of length L with a filter f of even length F:
//   y[i] = sum_j f[j] x[ext(2 i + s - j)],   i < n
// with, per boundary mode,
//   symmetric:     n = floor((L + F - 1) / 2), s = 1,     ext = half-sample symmetric extension
//   periodization: n = ceil(L / 2),            s = F / 2, ext = periodic, odd L padded by x[L-1]
// One synthesis level from n coefficients (approximation and detail, each with its filter):
//   symmetric:     out[2 t + r] = sum_{j < F/2} g[2 j + r] c[t + F/2 - 1 - j],  length 2 n - F + 2
//                  (PyWavelets' "valid" upsampling convolution with the reconstruction filters)
//   periodization: out[p] = sum_{j : p + j - s even} f[j] c[((p + j - s) / 2) mod n],  length 2 n
//                  (the exact transpose of periodization analysis, with the decomposition filters)
// The backward passes use the transposes ("adjoints") of both, which fold the extension back.
#pragma once

#include "dtwin/macros.h"

namespace dtwin {
namespace wavelet {

enum Mode : int { kSymmetric = 0, kPeriodization = 1 };

DTWIN_HD int64_t floor_mod(int64_t a, int64_t m) {
  const int64_t r = a % m;
  return r < 0 ? r + m : r;
}

DTWIN_HD int64_t analysis_len(int64_t L, int64_t F, int mode) {
  return mode == kSymmetric ? (L + F - 1) / 2 : (L + 1) / 2;
}

DTWIN_HD int64_t analysis_offset(int64_t F, int mode) { return mode == kSymmetric ? 1 : F / 2; }

DTWIN_HD int64_t synthesis_len(int64_t n, int64_t F, int mode) {
  return mode == kSymmetric ? 2 * n - F + 2 : 2 * n;
}

// The sample of a length-L signal that extended position m reads.
DTWIN_HD int64_t extend(int64_t m, int64_t L, int mode) {
  if (mode == kSymmetric) {
    const int64_t r = floor_mod(m, 2 * L);
    return r >= L ? 2 * L - 1 - r : r;
  }
  const int64_t Lp = L + (L & 1);
  const int64_t r = floor_mod(m, Lp);
  return r == L ? L - 1 : r;
}

// Extended positions that analysis reads: [first, last] of 2 i + s - j over i < n, j < F.
DTWIN_HD int64_t analysis_first(int64_t F, int mode) { return analysis_offset(F, mode) - (F - 1); }
DTWIN_HD int64_t analysis_last(int64_t n, int64_t F, int mode) { return 2 * (n - 1) + analysis_offset(F, mode); }

// Symmetric synthesis: the coefficient index that output pair t and tap pair j read.
DTWIN_HD int64_t synthesis_symmetric_index(int64_t t, int64_t j, int64_t F) { return t + F / 2 - 1 - j; }

// ---- one output value of each primitive, as a gather -----------------------------------------
//
// S is a float/double (one CUDA thread) or a SIMD vector of signals (CPU). The accessors receive
// unreduced positions, so that no modulo sits in the tap loops: the CPU gathers the extended
// windows once per group of signals, a CUDA thread reduces each position itself.

// y[i] = sum_j f[j] x[ext(2 i + s - j)]; get_ext(m) = x[extend(m)]
template <class S, class T, class GetExt>
DTWIN_HD S analysis_point(int64_t i, const T* f, int64_t F, int mode, GetExt get_ext) {
  const int64_t base = 2 * i + analysis_offset(F, mode);
  S acc(T(0));
  for (int64_t j = 0; j < F; ++j) acc = acc + get_ext(base - j) * f[j];
  return acc;
}

// Calls fn(m) for every extended position m in [first, last] that reads sample k of a length-L
// signal: the preimages of k under `extend`.
template <class Fn>
DTWIN_HD void for_each_preimage(int64_t k, int64_t L, int mode, int64_t first, int64_t last, Fn fn) {
  const bool symmetric = mode == kSymmetric;
  const int64_t period = symmetric ? 2 * L : L + (L & 1);
  // symmetric: k and its mirror 2L-1-k; periodization: k, and position L (a copy of sample L-1) for odd L
  const int64_t reps[2] = {k, symmetric ? 2 * L - 1 - k : L};
  const int count = (symmetric || ((L & 1) && k == L - 1)) ? 2 : 1;
  for (int r = 0; r < count; ++r) {
    int64_t m = reps[r] + period * ((first - reps[r]) / period);
    while (m < first) m += period;
    for (; m <= last; m += period) fn(m);
  }
}

// The transpose of analysis: x[k] = sum over the positions m that read k, and the taps j with
// 2 i + s - j = m (0 <= i < n), of f[j] g[i]; get(i) = g[i].
template <class S, class T, class Get>
DTWIN_HD S analysis_adjoint_point(int64_t k, const T* f, int64_t F, int64_t L, int64_t n, int mode, Get get) {
  const int64_t s = analysis_offset(F, mode);
  S acc(T(0));
  for_each_preimage(k, L, mode, analysis_first(F, mode), analysis_last(n, F, mode), [&](int64_t m) {
    for (int64_t j = ((m - s) & 1) ? 1 : 0; j < F; j += 2) {
      const int64_t i = (m - s + j) / 2;
      if (i >= 0 && i < n) acc = acc + get(i) * f[j];
    }
  });
  return acc;
}

// out[p] of one synthesis level (symmetric: reconstruction filter g, get(t) = c[t] with t in
// [0, n); periodization: decomposition filter, get(u) = c[u mod n] for an unreduced u).
template <class S, class T, class Get>
DTWIN_HD S synthesis_point(int64_t p, const T* g, int64_t F, int mode, Get get) {
  S acc(T(0));
  if (mode == kSymmetric) {
    const int64_t t = p / 2, r = p % 2;
    for (int64_t j = 0; j < F / 2; ++j) acc = acc + get(synthesis_symmetric_index(t, j, F)) * g[2 * j + r];
    return acc;
  }
  for (int64_t j = (p + F / 2) & 1; j < F; j += 2) acc = acc + get((p + j - F / 2) / 2) * g[j];
  return acc;
}

// The transpose of synthesis: coefficient k from the output gradient of Lg samples (symmetric:
// get(q) = grad[q], q < Lg checked here; periodization: get(q) = grad[q mod 2n] or 0 when that is
// >= Lg, for an unreduced q; its transpose is analysis on 2 n samples).
template <class S, class T, class Get>
DTWIN_HD S synthesis_adjoint_point(int64_t k, const T* g, int64_t F, int64_t Lg, int mode, Get get) {
  S acc(T(0));
  if (mode == kSymmetric) {
    for (int64_t j = 0; j < F / 2; ++j) {  // output 2 t + r reads coefficient t + F/2 - 1 - j through tap 2 j + r
      const int64_t t = k - F / 2 + 1 + j;
      if (t < 0) continue;
      if (2 * t < Lg) acc = acc + get(2 * t) * g[2 * j];
      if (2 * t + 1 < Lg) acc = acc + get(2 * t + 1) * g[2 * j + 1];
    }
    return acc;
  }
  const int64_t base = 2 * k + F / 2;
  for (int64_t j = 0; j < F; ++j) acc = acc + get(base - j) * g[j];
  return acc;
}

}  // namespace wavelet
}  // namespace dtwin
