// One iteration of the DRIP inner convex solve: the per-element vector algebra of Nesterov's
// accelerated gradient descent on B problems at once (dtwin/ops/drip.py documents the op).
//
// For sample b with active[b]: z_new = y - step * g, d = z_new - z, y_new = z_new + momentum * d,
// and the per-sample sums ||d||^2, ||z_new||^2, ||g||^2 feed the stopping test below. An inactive
// sample is held: z_new = y_new = z, and only ||g||^2 is summed.
//
// The updates are the dtype's correctly rounded operations in the order written, with no fused
// multiply-add (mul_rn/add_rn/sub_rn below on CUDA; csrc/cpu/drip.cpp turns contraction off), so
// the compiled kernels reproduce the reference's z_new and y_new bit for bit. The sums are
// accumulated in double (Acc) whatever the dtype.
#pragma once

#include "dtwin/macros.h"

namespace dtwin {
namespace drip {

// The whole call, as raw pointers: [B, N] and [B] arrays, contiguous, all of one floating type T.
template <class T>
struct Problem {
  int64_t B;
  int64_t N;
  const T* z;  // [B, N] current iterate
  const T* y;  // [B, N] extrapolated point where g was evaluated
  const T* g;  // [B, N] gradient at y
  const T* step;  // [B] step sizes
  const T* momentum;  // [B] Nesterov coefficients
  const bool* active;  // [B]
  double tol_sq;  // tol^2
  T* z_new;  // [B, N]
  T* y_new;  // [B, N]
  bool* active_new;  // [B]
  T* delta_sq;  // [B] ||z_new - z||^2
  T* grad_sq;  // [B] ||g||^2
};

// Multiplication and addition without contraction into a fused multiply-add (nvcc contracts by
// default; its _rn intrinsics never are).
DTWIN_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DTWIN_HD double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
DTWIN_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DTWIN_HD double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
DTWIN_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
DTWIN_HD double sub_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

// The smallest positive normal number of T: the floor of ||z_new||^2 in the stopping test.
DTWIN_HD double tiny(float) { return 1.1754943508222875e-38; }
DTWIN_HD double tiny(double) { return 2.2250738585072014e-308; }

// One element of an active sample: z_new and y_new; returns d = z_new - z.
template <class T>
DTWIN_HD T update(T z, T y, T g, T step, T momentum, T& z_new, T& y_new) {
  const T zn = sub_rn(y, mul_rn(step, g));
  const T d = sub_rn(zn, z);
  z_new = zn;
  y_new = add_rn(zn, mul_rn(momentum, d));
  return d;
}

// x^2 in the accumulation type.
template <class Acc, class T>
DTWIN_HD Acc square(T x) {
  const Acc a = static_cast<Acc>(x);
  return a * a;
}

// The stopping test: a sample stays active while its step is large relative to its iterate,
//   delta_sq > tol^2 * max(z_new_sq, tiny)
// evaluated in double. A NaN delta_sq compares false, so a sample that produced NaN stops.
DTWIN_HD bool keep_active(bool active, double delta_sq, double z_new_sq, double tol_sq, double tiny_value) {
  const double scale = z_new_sq > tiny_value ? z_new_sq : tiny_value;
  return active && delta_sq > tol_sq * scale;
}

// The per-sample outputs from the three sums (delta_sq of an inactive sample is 0).
template <class T>
DTWIN_HD void finish(const Problem<T>& pr, int64_t b, double delta_sq, double z_new_sq, double grad_sq) {
  const bool act = pr.active[b];
  pr.active_new[b] = keep_active(act, delta_sq, z_new_sq, pr.tol_sq, tiny(T(0)));
  pr.delta_sq[b] = static_cast<T>(act ? delta_sq : 0.0);
  pr.grad_sq[b] = static_cast<T>(grad_sq);
}

}  // namespace drip
}  // namespace dtwin
