// Host-side plumbing of dtwin::hh_simulate shared by the CPU and CUDA registrations: argument
// checks, output allocation, and the raw-pointer Problem handed to the kernels.
//
// The Python face (dtwin/ops/hh.py) validates values (sorted times, finite inputs) with
// friendly messages; the checks here keep a direct call of the op from crashing or hanging.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string>
#include <tuple>

#include "dtwin/hh_driver.h"

namespace dtwin {
namespace hh {

inline int parse_method(c10::string_view method) {
  if (method == "rush_larsen") return kRushLarsen;
  if (method == "rk4") return kRK4;
  if (method == "dopri5") return kDopri5;
  TORCH_CHECK(false, "hh_simulate: method must be 'rush_larsen', 'rk4' or 'dopri5', got '",
              std::string(method), "'");
}

inline int parse_input(c10::string_view input) {
  if (input == "pulses") return kPulses;
  if (input == "previous") return kPrevious;
  if (input == "linear") return kLinear;
  TORCH_CHECK(false, "hh_simulate: input must be 'pulses', 'previous' or 'linear', got '",
              std::string(input), "'");
}

struct HHCall {
  at::Tensor t_out, params, y0, pulses, current, t_current;
  at::Tensor out, jac, status;
  int method = 0;
  int input = 0;
  int n_sens = 0;
  int64_t K = 0;
  int64_t T_in = 0;
  double dt = 0, rtol = 0, atol = 0;
  int64_t max_steps = 0;
  bool all_states = false;
};

inline void check_same(const at::Tensor& x, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(x.scalar_type() == ref.scalar_type(), "hh_simulate: ", name, " has dtype ",
              x.scalar_type(), " but params has ", ref.scalar_type());
  TORCH_CHECK(x.device() == ref.device(), "hh_simulate: ", name, " is on ", x.device(),
              " but params is on ", ref.device());
}

inline HHCall prepare_hh_call(const at::Tensor& t_out, const at::Tensor& params, const at::Tensor& y0,
                              const std::optional<at::Tensor>& pulses,
                              const std::optional<at::Tensor>& current,
                              const std::optional<at::Tensor>& t_current, c10::string_view input,
                              c10::string_view method, double dt, double rtol, double atol,
                              int64_t max_steps, bool all_states, bool sensitivities) {
  HHCall c;
  c.method = parse_method(method);
  c.input = parse_input(input);
  TORCH_CHECK(params.dim() == 2 && params.size(1) == kNumParams,
              "hh_simulate: params must be [N, 7], got ", params.sizes());
  TORCH_CHECK(params.scalar_type() == at::kFloat || params.scalar_type() == at::kDouble,
              "hh_simulate: params must be float32 or float64, got ", params.scalar_type());
  const int64_t N = params.size(0);
  TORCH_CHECK(y0.dim() == 2 && y0.size(0) == N && y0.size(1) == kNumStates,
              "hh_simulate: y0 must be [N, 4] with N = ", N, ", got ", y0.sizes());
  TORCH_CHECK(t_out.dim() == 1 && t_out.size(0) >= 1, "hh_simulate: t_out must be [T] with T >= 1, got ",
              t_out.sizes());
  check_same(y0, params, "y0");
  check_same(t_out, params, "t_out");
  TORCH_CHECK(dt > 0 && std::isfinite(dt), "hh_simulate: dt must be positive and finite, got ", dt);
  TORCH_CHECK(rtol >= 0 && atol >= 0 && rtol + atol > 0,
              "hh_simulate: rtol and atol must be >= 0 and not both 0, got ", rtol, ", ", atol);
  TORCH_CHECK(max_steps >= 1, "hh_simulate: max_steps must be >= 1, got ", max_steps);
  c.params = params.contiguous();
  c.y0 = y0.contiguous();
  c.t_out = t_out.contiguous();
  if (c.input == kPulses) {
    TORCH_CHECK(pulses.has_value(), "hh_simulate: input='pulses' needs pulses [N, K, 3]");
    const at::Tensor& p = *pulses;
    TORCH_CHECK(p.dim() == 3 && p.size(0) == N && p.size(2) == 3,
                "hh_simulate: pulses must be [N, K, 3] with N = ", N, ", got ", p.sizes());
    check_same(p, params, "pulses");
    c.pulses = p.contiguous();
    c.K = p.size(1);
  } else {
    TORCH_CHECK(current.has_value() && t_current.has_value(), "hh_simulate: input='", std::string(input),
                "' needs current [N, T_in] and t_current [T_in]");
    const at::Tensor& I = *current;
    const at::Tensor& tc = *t_current;
    TORCH_CHECK(tc.dim() == 1 && tc.size(0) >= 2, "hh_simulate: t_current must be [T_in] with T_in >= 2, got ",
                tc.sizes());
    TORCH_CHECK(I.dim() == 2 && I.size(0) == N && I.size(1) == tc.size(0),
                "hh_simulate: current must be [N, T_in] = [", N, ", ", tc.size(0), "], got ", I.sizes());
    check_same(I, params, "current");
    check_same(tc, params, "t_current");
    c.current = I.contiguous();
    c.t_current = tc.contiguous();
    c.T_in = tc.size(0);
  }
  if (sensitivities) {
    TORCH_CHECK(c.method != kDopri5,
                "hh_simulate: sensitivities are computed by the fixed-step methods 'rush_larsen' and 'rk4'");
    c.n_sens = (c.input == kPulses && c.K == 1) ? kNumDirections : kNumParams;
  }
  const int64_t T = t_out.size(0);
  const auto opts = params.options();
  c.out = all_states ? at::empty({N, kNumStates, T}, opts) : at::empty({N, T}, opts);
  if (c.n_sens > 0) {
    c.jac = all_states ? at::empty({N, kNumStates, T, c.n_sens}, opts) : at::empty({N, T, c.n_sens}, opts);
  } else {
    c.jac = at::empty({0}, opts);
  }
  c.status = at::empty({N}, opts.dtype(at::kInt));
  c.dt = dt;
  c.rtol = rtol;
  c.atol = atol;
  c.max_steps = max_steps;
  c.all_states = all_states;
  return c;
}

template <class T>
Problem<T> make_problem(const HHCall& c) {
  Problem<T> pr;
  pr.N = c.params.size(0);
  pr.T_out = c.t_out.size(0);
  pr.t_out = c.t_out.data_ptr<T>();
  pr.params = c.params.data_ptr<T>();
  pr.y0 = c.y0.data_ptr<T>();
  pr.input = c.input;
  pr.pulses = c.pulses.defined() ? c.pulses.data_ptr<T>() : nullptr;
  pr.K = c.K;
  pr.current = c.current.defined() ? c.current.data_ptr<T>() : nullptr;
  pr.t_current = c.t_current.defined() ? c.t_current.data_ptr<T>() : nullptr;
  pr.T_in = c.T_in;
  pr.dt = static_cast<T>(c.dt);
  pr.rtol = static_cast<T>(c.rtol);
  pr.atol = static_cast<T>(c.atol);
  pr.max_steps = c.max_steps;
  pr.all_states = c.all_states;
  pr.n_sens = c.n_sens;
  pr.out = c.out.data_ptr<T>();
  pr.jac = c.n_sens > 0 ? c.jac.data_ptr<T>() : nullptr;
  pr.status = c.status.data_ptr<int32_t>();
  return pr;
}

}  // namespace hh
}  // namespace dtwin
