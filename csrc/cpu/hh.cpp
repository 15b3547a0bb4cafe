// CPU kernel of dtwin::hh_simulate: neurons split over threads with at::parallel_for, each
// thread integrating SIMD-width groups of neurons with the shared driver (hh_driver.h).
#include "simd.h"  // first: fixes the instruction set of ATen's vector types in this file

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>

#include "../hh_op.h"
#include "dtwin/hh_driver.h"

namespace dtwin {
namespace cpu {

template <class T, int M, bool Sens>
void integrate(const hh::Problem<T>& pr) {
  using Base = simd::Vec<T>;
  using S = std::conditional_t<Sens, Dual<Base, hh::kNumDirections>, Base>;
  at::parallel_for(0, pr.N, Lanes<S>::W, [&](int64_t begin, int64_t end) {
    hh::Driver<S, M> driver(pr, begin, 1, end);
    driver.run();
  });
}

template <class T>
void integrate_dispatch(const hh::Problem<T>& pr, int method) {
  const bool sens = pr.n_sens > 0;
  switch (method) {
    case hh::kRushLarsen:
      return sens ? integrate<T, hh::kRushLarsen, true>(pr) : integrate<T, hh::kRushLarsen, false>(pr);
    case hh::kRK4:
      return sens ? integrate<T, hh::kRK4, true>(pr) : integrate<T, hh::kRK4, false>(pr);
    default:
      return integrate<T, hh::kDopri5, false>(pr);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hh_simulate_cpu(
    const at::Tensor& t_out, const at::Tensor& params, const at::Tensor& y0,
    const std::optional<at::Tensor>& pulses, const std::optional<at::Tensor>& current,
    const std::optional<at::Tensor>& t_current, c10::string_view input, c10::string_view method,
    double dt, double rtol, double atol, int64_t max_steps, bool all_states, bool sensitivities) {
  hh::HHCall c = hh::prepare_hh_call(t_out, params, y0, pulses, current, t_current, input, method, dt,
                                     rtol, atol, max_steps, all_states, sensitivities);
  AT_DISPATCH_FLOATING_TYPES(c.params.scalar_type(), "hh_simulate_cpu", [&] {
    integrate_dispatch<scalar_t>(hh::make_problem<scalar_t>(c), c.method);
  });
  return {c.out, c.jac, c.status};
}


}  // namespace cpu
}  // namespace dtwin

TORCH_LIBRARY_IMPL(dtwin, CPU, m) { m.impl("hh_simulate", &dtwin::cpu::hh_simulate_cpu); }
