// The Hodgkin-Huxley integrator: W neurons at once, each with its own input segments, step
// sizes and output pointer, state in locals for the whole run.
//
// The same driver runs one neuron per CUDA thread (S = float/double, W = 1) and W neurons per
// CPU core (S = a SIMD vector). A lane that finishes its neuron takes the next one from its
// queue, so lanes stay busy when neurons need different numbers of steps (adaptive stepping).
// Running it on dual numbers gives the exact sensitivities of the discrete solution.
//
// Time stepping: the input current is smooth inside "segments" whose ends are the input's
// breakpoints (pulse edges; waveform samples where the value, or the slope, changes), so no
// step ever straddles a discontinuity. Fixed-step schemes split each segment into
// ceil(length / dt) equal steps; the adaptive scheme clips its step to land on segment ends.
// Outputs come from each scheme's dense output: linear (Rush-Larsen), cubic Hermite (RK4),
// the 4th-order Dormand-Prince interpolant (dopri5).
#pragma once

#include "dtwin/hh.h"
#include "dtwin/lanes.h"

namespace dtwin {
namespace hh {

// The whole call, as raw pointers: every tensor contiguous, all of one floating type T.
template <class T>
struct Problem {
  int64_t N;
  int64_t T_out;
  const T* t_out;  // [T_out], increasing, t_out[0] >= 0
  const T* params;  // [N, 7]: gNa, gK, gL, ENa, EK, EL, C
  const T* y0;  // [N, 4]: V, m, h, n at t = 0
  int input;  // Input
  const T* pulses;  // [N, K, 3]: tin, tf, amp; sorted, non-overlapping
  int64_t K;
  const T* current;  // [N, T_in]
  const T* t_current;  // [T_in], increasing, t_current[0] <= 0, t_current[-1] >= t_out[-1]
  int64_t T_in;
  T dt;  // fixed-step: largest step; dopri5: first trial step
  T rtol;
  T atol;
  int64_t max_steps;  // dopri5: step attempts per neuron
  bool all_states;
  int n_sens;  // Jacobian columns written: 0, 7 (parameters) or 10 (and tin, tf, amp)
  T* out;  // [N, T_out] or [N, 4, T_out]
  T* jac;  // out's shape + [n_sens]
  int32_t* status;  // [N]
};

template <class T>
struct SegmentInfo {
  T b;  // segment end
  T I0;  // current at the segment start
  T slope;  // dI/dt inside the segment
  int seed_b;  // direction whose derivative of b is 1 (kDirTin, kDirTf) or -1
  bool seed_amp;  // I0 is the amplitude of the single pulse
};

// The input segment that starts at time a (a < t_end). `cursor` remembers where the previous
// search stopped: pulses, the index of the next edge (tin_0, tf_0, tin_1, ...); waveforms, the
// sample interval holding a.
template <class T>
DTWIN_HD SegmentInfo<T> next_segment(const Problem<T>& pr, int64_t n, int64_t& cursor, T a, T t_end) {
  SegmentInfo<T> s;
  s.slope = T(0);
  s.seed_b = -1;
  s.seed_amp = false;
  if (pr.input == kPulses) {
    const T* pl = pr.pulses + n * pr.K * 3;
    const int64_t n_edges = 2 * pr.K;
    while (cursor < n_edges && pl[(cursor / 2) * 3 + (cursor % 2)] <= a) ++cursor;
    s.b = t_end;
    if (cursor < n_edges) {
      const T e = pl[(cursor / 2) * 3 + (cursor % 2)];
      if (e < t_end) {
        s.b = e;
        if (pr.K == 1) s.seed_b = cursor == 0 ? kDirTin : kDirTf;
      }
    }
    // the next edge is a pulse end exactly when we are inside that pulse
    const bool inside = cursor < n_edges && (cursor % 2) == 1;
    s.I0 = inside ? pl[(cursor / 2) * 3 + 2] : T(0);
    s.seed_amp = inside && pr.K == 1;
    return s;
  }
  const T* tc = pr.t_current;
  const T* c = pr.current + n * pr.T_in;
  const int64_t last = pr.T_in - 1;
  while (cursor + 1 < last && tc[cursor + 1] <= a) ++cursor;
  const int64_t k = cursor;
  int64_t k2 = k + 1;
  if (pr.input == kPrevious) {
    while (k2 < last && tc[k2] < t_end && c[k2] == c[k]) ++k2;
    s.I0 = c[k];
  } else {
    s.slope = (c[k + 1] - c[k]) / (tc[k + 1] - tc[k]);
    while (k2 < last && tc[k2] < t_end && (c[k2 + 1] - c[k2]) / (tc[k2 + 1] - tc[k2]) == s.slope) ++k2;
    s.I0 = c[k] + s.slope * (a - tc[k]);
  }
  s.b = tc[k2] < t_end ? tc[k2] : t_end;
  if (!(s.b > a)) {
    // past the sampled span (the Python face forbids it): hold the last sample, never stall
    s.b = t_end;
    s.I0 = c[last];
    s.slope = T(0);
  }
  return s;
}

// A lane type built from its non-dual value type (zero derivatives).
template <class S>
struct Lift {
  DTWIN_HD static S from(const S& v) { return v; }
};
template <class S, int P>
struct Lift<Dual<S, P>> {
  DTWIN_HD static Dual<S, P> from(const S& v) { return Dual<S, P>(v, 0); }
};

template <class S, int M>
class Driver {
 public:
  using L = Lanes<S>;
  using T = scalar_t<S>;
  using V = typename L::Value;
  using Mask = typename L::Mask;
  using Lane = typename L::Lane;
  static constexpr int W = L::W;
  static constexpr int P = DualDirections<S>::value;

  // Integrates neurons first, first + stride, ... below end.
  DTWIN_HD Driver(const Problem<T>& pr, int64_t first, int64_t stride, int64_t end)
      : pr_(pr), next_(first), stride_(stride), end_(end) {}

  DTWIN_HD void run() {
    t_end_ = pr_.t_out[pr_.T_out - 1];
    active_count_ = 0;
    // idle lanes hold finite values so that their (discarded) arithmetic stays quiet
    p_ = {S(T(0)), S(T(0)), S(T(0)), S(T(0)), S(T(0)), S(T(0)), S(T(1))};
    y_ = {S(T(-75)), S(T(0.5)), S(T(0.5)), S(T(0.5))};
    f_ = {S(T(0)), S(T(0)), S(T(0)), S(T(0))};
    seg_ = {S(T(0)), S(T(1)), S(T(0)), S(T(0))};
    t_ = S(T(0));
    h_ = S(T(0));
    h_prop_ = S(T(0));
    t_c_ = S(T(0));
    for (int l = 0; l < W; ++l) {
      active_[l] = T(0);
      rejected_[l] = T(0);
      start_lane(l);
    }
    refresh_derivative();
    while (active_count_ > 0) {
      if constexpr (M == kDopri5) {
        adaptive_iteration();
      } else {
        fixed_iteration();
      }
    }
  }

 private:
  // ---- one step of every lane ------------------------------------------------------------

  DTWIN_HD void fixed_iteration() {
    const Mask act = L::load(active_) > V(T(0.5));
    State<S> y1;
    if constexpr (M == kRushLarsen) {
      y1 = rush_larsen_step(p_, y_, seg_.current(t_), h_);
    } else {
      y1 = rk4_step(p_, seg_, y_, f_, t_, h_);
    }
    const V k1 = L::load(k_sub_) + V(T(1));
    const Mask last = k1 >= L::load(n_sub_);
    // t from the step index, not by accumulation: no drift over thousands of float32 steps
    const S t1 = vselect(last, seg_.b, seg_.a + Lift<S>::from(k1) * h_);
    State<S> f1 = f_;
    if constexpr (M == kRK4) f1 = rhs(p_, y1, seg_.current(t1));
    L::store(k1, k_sub_);
    const Mask event = mask_and(
        act, mask_or(mask_or(value_of(t1) >= L::load(next_out_), last), mask_not(state_finite(y1))));
    const State<S> y_prev = y_;
    const State<S> f_prev = f_;
    const S t_prev = t_;
    y_ = y1;
    f_ = f1;
    t_ = t1;
    if (L::any(event)) fixed_events(y_prev, f_prev, t_prev);
  }

  DTWIN_HD void adaptive_iteration() {
    const Mask act = L::load(active_) > V(T(0.5));
    const S room = seg_.b - t_;
    const Mask clipped = mask_and(act, h_prop_ >= room);
    h_ = vselect(act, vmin(h_prop_, room), S(T(0)));
    DP5Stages<S> k;
    const State<S> y1 = dopri5_step(p_, seg_, y_, f_, t_, h_, k);
    const S err = dopri5_error_norm(y_, y1, k, h_, pr_.rtol, pr_.atol);
    const Mask trial_finite = mask_and(state_finite(y1), vfinite(err));
    const Mask accept = mask_and(act, mask_and(trial_finite, err <= S(T(1))));

    // step-size control as scipy's RK45: factor 0.9 err^(-1/5), within [0.2, 10], no growth
    // right after a rejection; a step clipped to a segment end keeps the earlier proposal
    const S scaled = T(0.9) * vpow(vmax(err, S(T(1e-30))), T(-0.2));
    const S grow = vselect(err == S(T(0)), S(T(10)), vmin(S(T(10)), scaled));
    const Mask was_rejected = L::load(rejected_) > V(T(0.5));
    const S grow_ok = vselect(was_rejected, vmin(grow, S(T(1))), grow);
    const S shrink = vselect(trial_finite, vmax(S(T(0.2)), vmin(scaled, S(T(1)))), S(T(0.2)));
    S h_new = vselect(accept, h_ * grow_ok, h_ * shrink);
    h_new = vselect(mask_and(accept, clipped), vmax(h_new, h_prop_), h_new);
    h_prop_ = vselect(act, h_new, h_prop_);

    // compensated (Kahan) time sum: float32 time stays exact to rounding over many steps
    const S yk = h_ - t_c_;
    const S sum = t_ + yk;
    const S comp = (sum - t_) - yk;
    const S t_acc = vselect(clipped, seg_.b, sum);
    const S c_acc = vselect(clipped, S(T(0)), comp);

    const State<S> y_prev = y_;
    const S t_prev = t_;
    y_ = select_state(accept, y1, y_);
    f_ = select_state(accept, k.k7, f_);
    t_ = vselect(accept, t_acc, t_);
    t_c_ = vselect(accept, c_acc, t_c_);
    const V one(T(1));
    const V zero(T(0));
    L::store(vselect(act, vselect(accept, zero, one), L::load(rejected_)), rejected_);
    L::store(L::load(steps_) + vselect(act, one, zero), steps_);

    const S h_min = T(4) * eps() * vmax(vabs(t_), S(T(1)));
    const Mask done_step = mask_and(accept, mask_or(value_of(t_) >= L::load(next_out_), clipped));
    const Mask failing = mask_and(act, mask_or(mask_and(mask_not(accept), h_prop_ < h_min),
                                               L::load(steps_) >= V(T(pr_.max_steps))));
    if (L::any(mask_or(done_step, failing))) adaptive_events(y_prev, t_prev, k, accept, clipped, trial_finite);
  }

  // ---- events: outputs, segment ends, failures, refills -----------------------------------

  DTWIN_HD void fixed_events(const State<S>& y_prev, const State<S>& f_prev, const S& t_prev) {
    bool finished[W];
    const Mask finite = state_finite(y_);
    for (int l = 0; l < W; ++l) {
      finished[l] = false;
      if (active_[l] > T(0.5) && !L::mget(finite, l)) {
        fail_lane(l, kNonFinite);
        finished[l] = true;
      }
    }
    write_pending_outputs(y_prev, f_prev, nullptr, t_prev);
    for (int l = 0; l < W; ++l) {
      if (active_[l] > T(0.5) && k_sub_[l] >= n_sub_[l]) {
        if (b_[l] >= t_end_) {
          finish_lane(l);
          finished[l] = true;
        } else {
          open_segment(l);
        }
      }
    }
    for (int l = 0; l < W; ++l) {
      if (finished[l]) start_lane(l);
    }
    refresh_derivative();
  }

  DTWIN_HD void adaptive_events(const State<S>& y_prev, const S& t_prev, const DP5Stages<S>& k,
                                const Mask& accept, const Mask& clipped, const Mask& trial_finite) {
    bool finished[W];
    write_pending_outputs(y_prev, y_prev, &k, t_prev);
    for (int l = 0; l < W; ++l) {
      finished[l] = false;
      if (active_[l] < T(0.5)) continue;
      const bool acc = L::mget(accept, l);
      if (acc && L::mget(clipped, l)) {
        if (b_[l] >= t_end_) {
          finish_lane(l);
          finished[l] = true;
          continue;
        }
        open_segment(l);
      }
      if (steps_[l] >= T(pr_.max_steps)) {
        fail_lane(l, kMaxSteps);
        finished[l] = true;
      } else if (!acc) {
        const T t = value_of(L::get(t_, l));
        const T h_min = T(4) * eps() * (t > T(1) ? t : T(1));
        if (L::get(h_prop_, l) < h_min) {
          fail_lane(l, L::mget(trial_finite, l) ? kStepUnderflow : kNonFinite);
          finished[l] = true;
        }
      }
    }
    for (int l = 0; l < W; ++l) {
      if (finished[l]) start_lane(l);
    }
    refresh_derivative();
  }

  // Writes every output time that the last step passed, from the scheme's dense output.
  DTWIN_HD void write_pending_outputs(const State<S>& y_prev, const State<S>& f_prev,
                                      const DP5Stages<S>* k, const S& t_prev) {
    for (;;) {
      T t_now[W];
      bool pending[W];
      bool any = false;
      L::store(value_of(t_), t_now);
      for (int l = 0; l < W; ++l) {
        pending[l] = active_[l] > T(0.5) && t_now[l] >= next_out_[l];
        any = any || pending[l];
      }
      if (!any) return;
      const S th = (Lift<S>::from(L::load(next_out_)) - t_prev) / h_;
      State<S> yq;
      if constexpr (M == kRushLarsen) {
        yq = {y_prev.V + th * (y_.V - y_prev.V), y_prev.m + th * (y_.m - y_prev.m),
              y_prev.h + th * (y_.h - y_prev.h), y_prev.n + th * (y_.n - y_prev.n)};
      } else if constexpr (M == kRK4) {
        yq = {hermite(y_prev.V, f_prev.V, y_.V, f_.V, h_, th), hermite(y_prev.m, f_prev.m, y_.m, f_.m, h_, th),
              hermite(y_prev.h, f_prev.h, y_.h, f_.h, h_, th), hermite(y_prev.n, f_prev.n, y_.n, f_.n, h_, th)};
      } else {
        yq = dopri5_dense(y_prev, *k, h_, th);
      }
      for (int l = 0; l < W; ++l) {
        if (!pending[l]) continue;
        write_output(l, lane_state(yq, l));
        advance_output(l);
      }
    }
  }

  DTWIN_HD void refresh_derivative() {
    if constexpr (M == kRushLarsen) return;  // Rush-Larsen never uses the end-of-step derivative
    bool any = false;
    for (int l = 0; l < W; ++l) any = any || dirty_[l] > T(0.5);
    if (!any) return;
    const Mask dirty = L::load(dirty_) > V(T(0.5));
    f_ = select_state(dirty, rhs(p_, y_, seg_.current(t_)), f_);
    for (int l = 0; l < W; ++l) dirty_[l] = T(0);
  }

  // ---- lanes ------------------------------------------------------------------------------

  // Loads the next neuron of the queue into lane l, or leaves the lane idle.
  DTWIN_HD void start_lane(int l) {
    while (next_ < end_) {
      const int64_t n = next_;
      next_ += stride_;
      neuron_[l] = n;
      ptr_[l] = 0;
      const T* pp = pr_.params + n * kNumParams;
      L::set(p_.gNa, l, seeded(pp[0], 0));
      L::set(p_.gK, l, seeded(pp[1], 1));
      L::set(p_.gL, l, seeded(pp[2], 2));
      L::set(p_.ENa, l, seeded(pp[3], 3));
      L::set(p_.EK, l, seeded(pp[4], 4));
      L::set(p_.EL, l, seeded(pp[5], 5));
      L::set(p_.C, l, seeded(pp[6], 6));
      const T* yy = pr_.y0 + n * kNumStates;
      const State<Lane> y0 = {Lane(yy[0]), Lane(yy[1]), Lane(yy[2]), Lane(yy[3])};
      L::set(y_.V, l, y0.V);
      L::set(y_.m, l, y0.m);
      L::set(y_.h, l, y0.h);
      L::set(y_.n, l, y0.n);
      L::set(t_, l, Lane(T(0)));
      cursor_[l] = 0;
      while (ptr_[l] < pr_.T_out && pr_.t_out[ptr_[l]] <= T(0)) {
        write_output(l, y0);
        ++ptr_[l];
      }
      if (ptr_[l] == pr_.T_out) {
        pr_.status[n] = kOk;
        continue;
      }
      next_out_[l] = pr_.t_out[ptr_[l]];
      L::set(h_prop_, l, Lane(pr_.dt));
      L::set(t_c_, l, Lane(T(0)));
      rejected_[l] = T(0);
      steps_[l] = T(0);
      active_[l] = T(1);
      ++active_count_;
      open_segment(l);
      return;
    }
    active_[l] = T(0);
    next_out_[l] = inf();
    k_sub_[l] = T(0);
    n_sub_[l] = inf();
    L::set(h_, l, Lane(T(0)));
    L::set(h_prop_, l, Lane(T(0)));
    dirty_[l] = T(0);
  }

  DTWIN_HD void open_segment(int l) {
    const Lane a = L::get(t_, l);
    const SegmentInfo<T> si = next_segment(pr_, neuron_[l], cursor_[l], value_of(a), t_end_);
    Lane b(si.b);
    seed(b, si.seed_b);
    Lane I0(si.I0);
    if (si.seed_amp) seed(I0, kDirAmp);
    L::set(seg_.a, l, a);
    L::set(seg_.b, l, b);
    L::set(seg_.I0, l, I0);
    L::set(seg_.slope, l, Lane(si.slope));
    b_[l] = si.b;
    if constexpr (M != kDopri5) {
      T n_steps = ::ceil((si.b - value_of(a)) / pr_.dt);
      if (!(n_steps >= T(1))) n_steps = T(1);
      n_sub_[l] = n_steps;
      k_sub_[l] = T(0);
      L::set(h_, l, (b - a) / n_steps);
    }
    dirty_[l] = T(1);
  }

  DTWIN_HD void finish_lane(int l) {
    pr_.status[neuron_[l]] = kOk;
    active_[l] = T(0);
    --active_count_;
  }

  // A neuron that failed: the outputs it did not reach are NaN, and its status says why.
  DTWIN_HD void fail_lane(int l, int code) {
    const int64_t n = neuron_[l];
    const T nan = T(NAN);
    const int states = pr_.all_states ? kNumStates : 1;
    for (int64_t j = ptr_[l]; j < pr_.T_out; ++j) {
      for (int s = 0; s < states; ++s) {
        const int64_t idx = (n * states + s) * pr_.T_out + j;
        pr_.out[idx] = nan;
        for (int q = 0; q < pr_.n_sens; ++q) pr_.jac[idx * pr_.n_sens + q] = nan;
      }
    }
    pr_.status[n] = code;
    active_[l] = T(0);
    --active_count_;
  }

  DTWIN_HD void advance_output(int l) {
    ++ptr_[l];
    next_out_[l] = ptr_[l] < pr_.T_out ? pr_.t_out[ptr_[l]] : inf();
  }

  DTWIN_HD void write_output(int l, const State<Lane>& y) {
    const int64_t n = neuron_[l];
    const int64_t j = ptr_[l];
    if (pr_.all_states) {
      write_value(((n * kNumStates) + 0) * pr_.T_out + j, y.V);
      write_value(((n * kNumStates) + 1) * pr_.T_out + j, y.m);
      write_value(((n * kNumStates) + 2) * pr_.T_out + j, y.h);
      write_value(((n * kNumStates) + 3) * pr_.T_out + j, y.n);
    } else {
      write_value(n * pr_.T_out + j, y.V);
    }
  }

  DTWIN_HD void write_value(int64_t idx, const Lane& x) {
    pr_.out[idx] = value_of(x);
    if constexpr (P > 0) {
      for (int q = 0; q < pr_.n_sens; ++q) pr_.jac[idx * pr_.n_sens + q] = x.d[q];
    }
  }

  DTWIN_HD State<Lane> lane_state(const State<S>& y, int l) const {
    return {L::get(y.V, l), L::get(y.m, l), L::get(y.h, l), L::get(y.n, l)};
  }

  // A per-neuron input value; in the sensitivity run, the seed of its own direction.
  DTWIN_HD Lane seeded(T value, int direction) const {
    Lane x(value);
    seed(x, direction);
    return x;
  }

  DTWIN_HD void seed(Lane& x, int direction) const {
    if constexpr (P > 0) {
      if (direction >= 0 && direction < pr_.n_sens) x.d[direction] = T(1);
    }
  }

  DTWIN_HD static T inf() { return T(HUGE_VAL); }
  DTWIN_HD static T eps() { return sizeof(T) == 4 ? T(1.1920929e-07) : T(2.220446049250313e-16); }

  const Problem<T> pr_;
  int64_t next_, stride_, end_;
  T t_end_;
  int active_count_;
  // per-lane bookkeeping, loaded into vectors when the arithmetic needs it
  int64_t neuron_[W], ptr_[W], cursor_[W];
  T active_[W], next_out_[W], k_sub_[W], n_sub_[W], b_[W], steps_[W], rejected_[W], dirty_[W];
  // per-lane state of the arithmetic
  Params<S> p_;
  State<S> y_, f_;
  Segment<S> seg_;
  S t_, h_;  // time; fixed-step substep or attempted adaptive step
  S h_prop_, t_c_;  // adaptive: proposed step, compensation of the time sum
};

}  // namespace hh
}  // namespace dtwin
