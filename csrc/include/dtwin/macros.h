// Portability macros and the scalar "lane math" shared by the CPU and CUDA kernels.
//
// Kernel math in dtwin is written once as templates over a lane type S: a plain float/double
// (one CUDA thread, one neuron), a SIMD vector of neurons (CPU, see csrc/cpu/simd.h) or a
// dual number carrying forward sensitivities (dual.h). The functions below are the scalar
// overloads; the vector and dual overloads live beside those types and are found by ADL.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DTWIN_HD __host__ __device__ __forceinline__
#else
#define DTWIN_HD inline
#endif

namespace dtwin {

// ScalarOf<S>::type is the floating type under a lane type (float for a float, a float
// vector or a float dual number).
template <class S>
struct ScalarOf {
  using type = S;
};
template <class S>
using scalar_t = typename ScalarOf<S>::type;

DTWIN_HD float vexp(float x) { return ::expf(x); }
DTWIN_HD double vexp(double x) { return ::exp(x); }
DTWIN_HD float vexpm1(float x) { return ::expm1f(x); }
DTWIN_HD double vexpm1(double x) { return ::expm1(x); }
DTWIN_HD float vabs(float x) { return ::fabsf(x); }
DTWIN_HD double vabs(double x) { return ::fabs(x); }
DTWIN_HD float vsqrt(float x) { return ::sqrtf(x); }
DTWIN_HD double vsqrt(double x) { return ::sqrt(x); }
DTWIN_HD float vpow(float x, float y) { return ::powf(x, y); }
DTWIN_HD double vpow(double x, double y) { return ::pow(x, y); }
// max/min that return the first argument when the comparison is false (NaN-propagating in b)
DTWIN_HD float vmax(float a, float b) { return a > b ? a : b; }
DTWIN_HD double vmax(double a, double b) { return a > b ? a : b; }
DTWIN_HD float vmin(float a, float b) { return a < b ? a : b; }
DTWIN_HD double vmin(double a, double b) { return a < b ? a : b; }
DTWIN_HD float vselect(bool m, float a, float b) { return m ? a : b; }
DTWIN_HD double vselect(bool m, double a, double b) { return m ? a : b; }
// A value is finite when it is not NaN and |x| is below infinity (x - x == 0 would be
// optimised away under fast-math; this form is not).
DTWIN_HD bool vfinite(float x) { return vabs(x) <= 3.4028234663852886e38f; }
DTWIN_HD bool vfinite(double x) { return vabs(x) <= 1.7976931348623157e308; }

// Mask algebra: masks are bool for scalars, bit masks for vectors.
DTWIN_HD bool mask_and(bool a, bool b) { return a && b; }
DTWIN_HD bool mask_or(bool a, bool b) { return a || b; }
DTWIN_HD bool mask_not(bool a) { return !a; }

}  // namespace dtwin
