// CUDA registrations of the dtwin ops: argument checks, output allocation and the launch on
// the current stream. Built only when torch has CUDA and nvcc is found (setup.py).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../hh_op.h"
#include "launch.h"

namespace dtwin {
namespace cuda {

std::tuple<at::Tensor, at::Tensor, at::Tensor> hh_simulate_cuda(
    const at::Tensor& t_out, const at::Tensor& params, const at::Tensor& y0,
    const std::optional<at::Tensor>& pulses, const std::optional<at::Tensor>& current,
    const std::optional<at::Tensor>& t_current, c10::string_view input, c10::string_view method,
    double dt, double rtol, double atol, int64_t max_steps, bool all_states, bool sensitivities) {
  const c10::cuda::CUDAGuard guard(params.device());
  hh::HHCall c = hh::prepare_hh_call(t_out, params, y0, pulses, current, t_current, input, method, dt,
                                     rtol, atol, max_steps, all_states, sensitivities);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const cudaError_t err = c.params.scalar_type() == at::kDouble
                              ? hh_simulate_launch<double>(hh::make_problem<double>(c), c.method, stream)
                              : hh_simulate_launch<float>(hh::make_problem<float>(c), c.method, stream);
  TORCH_CHECK(err == cudaSuccess, "hh_simulate: CUDA kernel launch failed: ", cudaGetErrorString(err));
  return {c.out, c.jac, c.status};
}

}  // namespace cuda
}  // namespace dtwin

TORCH_LIBRARY_IMPL(dtwin, CUDA, m) { m.impl("hh_simulate", &dtwin::cuda::hh_simulate_cuda); }
