// Hodgkin-Huxley neuron: rates, right-hand side and one step of each scheme, written once for
// every lane type (float/double on CUDA, SIMD vectors on the CPU, dual numbers for
// sensitivities).
//
// Model as in Centofanti, Ghiotto, Pavarino, arXiv 2406.02173 (rest at -75 mV): u = V + 75 mV,
//   alpha_m = 0.1 (25 - u) / (exp((25 - u) / 10) - 1)   beta_m = 4 exp(-u / 18)
//   alpha_h = 0.07 exp(-u / 20)                          beta_h = 1 / (exp((30 - u) / 10) + 1)
//   alpha_n = 0.01 (10 - u) / (exp((10 - u) / 10) - 1)   beta_n = 0.125 exp(-u / 80)
//   C dV/dt = I - gNa m^3 h (V - ENa) - gK n^4 (V - EK) - gL (V - EL),
//   dx/dt = alpha_x (1 - x) - beta_x x.
// Units: t in ms, V in mV, conductances in mS/cm^2, C in uF/cm^2, I in uA/cm^2.
#pragma once

#include "dtwin/dual.h"

namespace dtwin {
namespace hh {

constexpr int kNumParams = 7;  // gNa, gK, gL, ENa, EK, EL, C
constexpr int kNumStates = 4;  // V, m, h, n
constexpr int kNumDirections = 10;  // the parameters, then tin, tf, amp of a single pulse
constexpr int kDirTin = 7;
constexpr int kDirTf = 8;
constexpr int kDirAmp = 9;

enum Method : int { kRushLarsen = 0, kRK4 = 1, kDopri5 = 2 };
enum Input : int { kPulses = 0, kPrevious = 1, kLinear = 2 };
enum Status : int { kOk = 0, kNonFinite = 1, kMaxSteps = 2, kStepUnderflow = 3 };

template <class S>
struct State {
  S V, m, h, n;
};

template <class S>
struct Params {
  S gNa, gK, gL, ENa, EK, EL, C;
};

template <class S>
DTWIN_HD State<S> axpy(const State<S>& y, const S& a, const State<S>& k) {
  return {y.V + a * k.V, y.m + a * k.m, y.h + a * k.h, y.n + a * k.n};
}

template <class S, class M>
DTWIN_HD State<S> select_state(const M& mask, const State<S>& a, const State<S>& b) {
  return {vselect(mask, a.V, b.V), vselect(mask, a.m, b.m), vselect(mask, a.h, b.h),
          vselect(mask, a.n, b.n)};
}

template <class S>
DTWIN_HD auto state_finite(const State<S>& y) {
  return mask_and(mask_and(vfinite(y.V), vfinite(y.m)), mask_and(vfinite(y.h), vfinite(y.n)));
}

// f(x) = x / (exp(x) - 1), the reciprocal of exprel, with its limit f(0) = 1: the removable
// singularities of alpha_m (u = 25) and alpha_n (u = 10) are evaluated without 0/0.
template <class S>
DTWIN_HD S x_over_expm1(const S& x) {
  using T = scalar_t<S>;
  const auto zero = (x == S(T(0)));
  const S safe = vselect(zero, S(T(1)), x);
  return vselect(zero, S(T(1)), safe / vexpm1(safe));
}

// f'(x), stable everywhere: a Bernoulli series near 0 (cancellation), else f (1 - f - x) / x,
// which stays finite in both tails (f -> 0 for x -> +inf, f -> -x for x -> -inf).
template <class S>
DTWIN_HD S x_over_expm1_derivative(const S& x, const S& f) {
  using T = scalar_t<S>;
  const S x2 = x * x;
  // f'(x) = -1/2 + x/6 - x^3/180 + x^5/5040 - x^7/151200 + x^9/4790016 - 691 x^11/108972864000
  const S series =
      T(-0.5) +
      x * (T(1.0 / 6.0) +
           x2 * (T(-1.0 / 180.0) +
                 x2 * (T(1.0 / 5040.0) +
                       x2 * (T(-1.0 / 151200.0) +
                             x2 * (T(1.0 / 4790016.0) + x2 * T(-691.0 / 108972864000.0))))));
  const auto small = (vabs(x) < S(T(0.5)));
  const S safe = vselect(small, S(T(1)), x);
  return vselect(small, series, f * (T(1) - f - safe) / safe);
}

template <class S, int P>
DTWIN_HD Dual<S, P> x_over_expm1(const Dual<S, P>& x) {
  const S f = x_over_expm1(x.v);
  return unary(x, f, x_over_expm1_derivative(x.v, f));
}

template <class S>
struct Rates {
  S am, bm, ah, bh, an, bn;
};

template <class S>
DTWIN_HD Rates<S> rates(const S& V) {
  using T = scalar_t<S>;
  const S u = V + T(75);
  Rates<S> r;
  r.am = x_over_expm1((T(25) - u) * T(0.1));
  r.bm = T(4) * vexp(u * T(-1.0 / 18.0));
  r.ah = T(0.07) * vexp(u * T(-0.05));
  r.bh = T(1) / (vexp((T(30) - u) * T(0.1)) + T(1));
  r.an = T(0.1) * x_over_expm1((T(10) - u) * T(0.1));
  r.bn = T(0.125) * vexp(u * T(-0.0125));
  return r;
}

template <class S>
DTWIN_HD S membrane_derivative(const Params<S>& p, const State<S>& y, const S& I) {
  const S n2 = y.n * y.n;
  const S i_ion = p.gNa * (y.m * y.m * y.m * y.h) * (y.V - p.ENa) + p.gK * (n2 * n2) * (y.V - p.EK) +
                  p.gL * (y.V - p.EL);
  return (I - i_ion) / p.C;
}

template <class S>
DTWIN_HD State<S> rhs(const Params<S>& p, const State<S>& y, const S& I) {
  using T = scalar_t<S>;
  const Rates<S> r = rates(y.V);
  State<S> d;
  d.V = membrane_derivative(p, y, I);
  d.m = r.am * (T(1) - y.m) - r.bm * y.m;
  d.h = r.ah * (T(1) - y.h) - r.bh * y.h;
  d.n = r.an * (T(1) - y.n) - r.bn * y.n;
  return d;
}

// The input current inside one segment of constant (or linear) input: I(t) = I0 + slope (t - a).
template <class S>
struct Segment {
  S a, b, I0, slope;
  DTWIN_HD S current(const S& t) const { return I0 + slope * (t - a); }
};

// Rush-Larsen: gates by exponential Euler with the rates frozen at V_n, V by forward Euler.
template <class S>
DTWIN_HD S exponential_gate(const S& x, const S& alpha, const S& beta, const S& h) {
  const S rate = alpha + beta;
  const S x_inf = alpha / rate;
  return x_inf + (x - x_inf) * vexp(-(h * rate));
}

template <class S>
DTWIN_HD State<S> rush_larsen_step(const Params<S>& p, const State<S>& y, const S& I, const S& h) {
  const Rates<S> r = rates(y.V);
  State<S> y1;
  y1.V = y.V + h * membrane_derivative(p, y, I);
  y1.m = exponential_gate(y.m, r.am, r.bm, h);
  y1.h = exponential_gate(y.h, r.ah, r.bh, h);
  y1.n = exponential_gate(y.n, r.an, r.bn, h);
  return y1;
}

// Classical RK4; k1 = f(t, y) is passed in (it is the previous step's end derivative).
template <class S>
DTWIN_HD State<S> rk4_step(const Params<S>& p, const Segment<S>& seg, const State<S>& y,
                           const State<S>& k1, const S& t, const S& h) {
  using T = scalar_t<S>;
  const S half = h * T(0.5);
  const S I_mid = seg.current(t + half);
  const State<S> k2 = rhs(p, axpy(y, half, k1), I_mid);
  const State<S> k3 = rhs(p, axpy(y, half, k2), I_mid);
  const State<S> k4 = rhs(p, axpy(y, h, k3), seg.current(t + h));
  const S w = h * T(1.0 / 6.0);
  const S w2 = h * T(1.0 / 3.0);
  const State<S> y1 = axpy(axpy(axpy(axpy(y, w, k1), w2, k2), w2, k3), w, k4);
  return y1;
}

// Cubic Hermite interpolation on a step [t, t + h] from the end values and derivatives:
// O(h^4) accurate, the dense output of the fixed-step RK4.
template <class S>
DTWIN_HD S hermite(const S& y0, const S& f0, const S& y1, const S& f1, const S& h, const S& th) {
  using T = scalar_t<S>;
  const S th2 = th * th;
  const S th3 = th2 * th;
  const S h00 = T(2) * th3 - T(3) * th2 + T(1);
  const S h10 = th3 - T(2) * th2 + th;
  const S h01 = T(3) * th2 - T(2) * th3;
  const S h11 = th3 - th2;
  return h00 * y0 + h01 * y1 + h * (h10 * f0 + h11 * f1);
}

// Dormand-Prince 5(4) (Dormand & Prince 1980; the tableau of Hairer, Norsett & Wanner and of
// scipy's RK45), first-same-as-last, with its 4th-order continuous extension.
template <class T>
struct DP5 {
  static constexpr T c2 = T(1) / 5, c3 = T(3) / 10, c4 = T(4) / 5, c5 = T(8) / 9;
  static constexpr T a21 = T(1) / 5;
  static constexpr T a31 = T(3) / 40, a32 = T(9) / 40;
  static constexpr T a41 = T(44) / 45, a42 = T(-56) / 15, a43 = T(32) / 9;
  static constexpr T a51 = T(19372) / 6561, a52 = T(-25360) / 2187, a53 = T(64448) / 6561,
                     a54 = T(-212) / 729;
  static constexpr T a61 = T(9017) / 3168, a62 = T(-355) / 33, a63 = T(46732) / 5247,
                     a64 = T(49) / 176, a65 = T(-5103) / 18656;
  static constexpr T b1 = T(35) / 384, b3 = T(500) / 1113, b4 = T(125) / 192,
                     b5 = T(-2187) / 6784, b6 = T(11) / 84;
  // error weights: 5th-order minus embedded 4th-order weights (k1, k3..k7)
  static constexpr T e1 = T(-71) / 57600, e3 = T(71) / 16695, e4 = T(-71) / 1920,
                     e5 = T(17253) / 339200, e6 = T(-22) / 525, e7 = T(1) / 40;
};

template <class S>
struct DP5Stages {
  State<S> k1, k3, k4, k5, k6, k7;  // k2 does not enter the solution, the error or the dense output
};

// One trial step: returns y(t + h); fills the stages (k7 = f(t + h, y1), first-same-as-last).
template <class S>
DTWIN_HD State<S> dopri5_step(const Params<S>& p, const Segment<S>& seg, const State<S>& y,
                              const State<S>& k1, const S& t, const S& h, DP5Stages<S>& k) {
  using T = scalar_t<S>;
  using C = DP5<T>;
  k.k1 = k1;
  const State<S> k2 = rhs(p, axpy(y, h * C::a21, k1), seg.current(t + h * C::c2));
  k.k3 = rhs(p, axpy(axpy(y, h * C::a31, k1), h * C::a32, k2), seg.current(t + h * C::c3));
  k.k4 = rhs(p, axpy(axpy(axpy(y, h * C::a41, k1), h * C::a42, k2), h * C::a43, k.k3),
             seg.current(t + h * C::c4));
  k.k5 = rhs(p,
             axpy(axpy(axpy(axpy(y, h * C::a51, k1), h * C::a52, k2), h * C::a53, k.k3),
                  h * C::a54, k.k4),
             seg.current(t + h * C::c5));
  const S t1 = t + h;
  k.k6 = rhs(p,
             axpy(axpy(axpy(axpy(axpy(y, h * C::a61, k1), h * C::a62, k2), h * C::a63, k.k3),
                       h * C::a64, k.k4),
                  h * C::a65, k.k5),
             seg.current(t1));
  const State<S> y1 =
      axpy(axpy(axpy(axpy(axpy(y, h * C::b1, k1), h * C::b3, k.k3), h * C::b4, k.k4), h * C::b5, k.k5),
           h * C::b6, k.k6);
  k.k7 = rhs(p, y1, seg.current(t1));
  return y1;
}

// Scaled RMS norm of the embedded error estimate (scipy's RK45 convention):
// sqrt(mean_i ((h sum_j e_j k_j,i) / (atol + rtol max(|y_i|, |y1_i|)))^2).
template <class S>
DTWIN_HD S dopri5_error_norm(const State<S>& y, const State<S>& y1, const DP5Stages<S>& k,
                             const S& h, scalar_t<S> rtol, scalar_t<S> atol) {
  using T = scalar_t<S>;
  using C = DP5<T>;
  auto component = [&](const S& y0c, const S& y1c, const S& s1, const S& s3, const S& s4,
                       const S& s5, const S& s6, const S& s7) {
    const S err = h * (C::e1 * s1 + C::e3 * s3 + C::e4 * s4 + C::e5 * s5 + C::e6 * s6 + C::e7 * s7);
    const S scale = atol + rtol * vmax(vabs(y0c), vabs(y1c));
    const S r = err / scale;
    return r * r;
  };
  const S sum = component(y.V, y1.V, k.k1.V, k.k3.V, k.k4.V, k.k5.V, k.k6.V, k.k7.V) +
                component(y.m, y1.m, k.k1.m, k.k3.m, k.k4.m, k.k5.m, k.k6.m, k.k7.m) +
                component(y.h, y1.h, k.k1.h, k.k3.h, k.k4.h, k.k5.h, k.k6.h, k.k7.h) +
                component(y.n, y1.n, k.k1.n, k.k3.n, k.k4.n, k.k5.n, k.k6.n, k.k7.n);
  return vsqrt(sum * T(0.25));
}

// Dense output y(t + th h) of an accepted step: y + h sum_j k_j (P_j1 th + P_j2 th^2 + ...),
// with scipy's RK45 interpolation matrix P (rows k1, k3..k7; k2's row is zero).
template <class S>
DTWIN_HD S dopri5_dense_component(const S& y0, const S& s1, const S& s3, const S& s4, const S& s5,
                                  const S& s6, const S& s7, const S& h, const S& th) {
  using T = scalar_t<S>;
  auto poly = [&](T p1, T p2, T p3, T p4) { return th * (p1 + th * (p2 + th * (p3 + th * p4))); };
  const S q = s1 * poly(T(1), T(-8048581381.0 / 2820520608.0), T(8663915743.0 / 2820520608.0),
                        T(-12715105075.0 / 11282082432.0)) +
              s3 * poly(T(0), T(131558114200.0 / 32700410799.0), T(-68118460800.0 / 10900136933.0),
                        T(87487479700.0 / 32700410799.0)) +
              s4 * poly(T(0), T(-1754552775.0 / 470086768.0), T(14199869525.0 / 1410260304.0),
                        T(-10690763975.0 / 1880347072.0)) +
              s5 * poly(T(0), T(127303824393.0 / 49829197408.0), T(-318862633887.0 / 49829197408.0),
                        T(701980252875.0 / 199316789632.0)) +
              s6 * poly(T(0), T(-282668133.0 / 205662961.0), T(2019193451.0 / 616988883.0),
                        T(-1453857185.0 / 822651844.0)) +
              s7 * poly(T(0), T(40617522.0 / 29380423.0), T(-110615467.0 / 29380423.0),
                        T(69997945.0 / 29380423.0));
  return y0 + h * q;
}

template <class S>
DTWIN_HD State<S> dopri5_dense(const State<S>& y, const DP5Stages<S>& k, const S& h, const S& th) {
  return {dopri5_dense_component(y.V, k.k1.V, k.k3.V, k.k4.V, k.k5.V, k.k6.V, k.k7.V, h, th),
          dopri5_dense_component(y.m, k.k1.m, k.k3.m, k.k4.m, k.k5.m, k.k6.m, k.k7.m, h, th),
          dopri5_dense_component(y.h, k.k1.h, k.k3.h, k.k4.h, k.k5.h, k.k6.h, k.k7.h, h, th),
          dopri5_dense_component(y.n, k.k1.n, k.k3.n, k.k4.n, k.k5.n, k.k6.n, k.k7.n, h, th)};
}

}  // namespace hh
}  // namespace dtwin
