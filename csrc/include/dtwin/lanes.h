// Lane traits: how a driver written for W neurons at once reads and writes one neuron.
//
// Lanes<S> for S = float/double is the one-neuron case (a CUDA thread); csrc/cpu/simd.h
// specialises it for SIMD vectors, and the Dual specialisation below lifts either one to dual
// numbers. A driver keeps its per-neuron bookkeeping in plain arrays of W scalars and moves
// them in and out of vectors with load/store.
#pragma once

#include "dtwin/dual.h"

namespace dtwin {

template <class S>
struct Lanes;

template <class T>
struct ScalarLanes {
  static constexpr int W = 1;
  using Lane = T;   // one neuron's value of S
  using Value = T;  // the non-dual vector type under S
  using Mask = bool;
  DTWIN_HD static Lane get(const T& s, int) { return s; }
  DTWIN_HD static void set(T& s, int, const Lane& v) { s = v; }
  DTWIN_HD static bool mget(bool m, int) { return m; }
  DTWIN_HD static bool any(bool m) { return m; }
  DTWIN_HD static Value load(const T* p) { return p[0]; }
  DTWIN_HD static void store(const Value& v, T* p) { p[0] = v; }
};
template <>
struct Lanes<float> : ScalarLanes<float> {};
template <>
struct Lanes<double> : ScalarLanes<double> {};

template <class S, int P>
struct Lanes<Dual<S, P>> {
  using Base = Lanes<S>;
  static constexpr int W = Base::W;
  using Lane = Dual<typename Base::Lane, P>;
  using Value = typename Base::Value;
  using Mask = typename Base::Mask;
  DTWIN_HD static Lane get(const Dual<S, P>& s, int l) {
    Lane r;
    r.v = Base::get(s.v, l);
    for (int i = 0; i < P; ++i) r.d[i] = Base::get(s.d[i], l);
    return r;
  }
  DTWIN_HD static void set(Dual<S, P>& s, int l, const Lane& v) {
    Base::set(s.v, l, v.v);
    for (int i = 0; i < P; ++i) Base::set(s.d[i], l, v.d[i]);
  }
  DTWIN_HD static bool mget(const Mask& m, int l) { return Base::mget(m, l); }
  DTWIN_HD static bool any(const Mask& m) { return Base::any(m); }
  DTWIN_HD static Value load(const scalar_t<S>* p) { return Base::load(p); }
  DTWIN_HD static void store(const Value& v, scalar_t<S>* p) { Base::store(v, p); }
};

// Number of derivative directions carried by a lane type (0 for plain values).
template <class S>
struct DualDirections {
  static constexpr int value = 0;
};
template <class S, int P>
struct DualDirections<Dual<S, P>> {
  static constexpr int value = P;
};

}  // namespace dtwin
