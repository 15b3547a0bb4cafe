// Host-side plumbing of dtwin::drip_step shared by the CPU and CUDA registrations: argument
// checks, contiguous inputs, output allocation, and the raw-pointer Problem handed to the kernels.
//
// The Python face (dtwin/ops/drip.py) checks shapes and dtypes with friendly messages; the checks
// here keep a direct call of the op from reading out of bounds. Values (step > 0, momentum in
// [0, 1)) are not checked anywhere: that would synchronise with the device once per iteration.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <tuple>

#include "dtwin/drip.h"

namespace dtwin {
namespace drip {

struct Call {
  at::Tensor z, y, g, step, momentum, active;
  at::Tensor z_new, y_new, active_new, delta_sq, grad_sq;
  double tol = 0;

  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {z_new, y_new, active_new, delta_sq, grad_sq};
  }
};

inline void check_like(const at::Tensor& x, const at::Tensor& z, const char* name) {
  TORCH_CHECK(x.scalar_type() == z.scalar_type(), "drip_step: ", name, " has dtype ", x.scalar_type(),
              " but z has ", z.scalar_type());
  TORCH_CHECK(x.device() == z.device(), "drip_step: ", name, " is on ", x.device(), " but z is on ", z.device());
}

inline Call prepare_call(const at::Tensor& z, const at::Tensor& y, const at::Tensor& g, const at::Tensor& step,
                         const at::Tensor& momentum, const at::Tensor& active, double tol) {
  TORCH_CHECK(z.dim() == 2, "drip_step: z must be [B, N], got ", z.sizes());
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble,
              "drip_step: z must be float32 or float64, got ", z.scalar_type());
  const int64_t B = z.size(0);
  TORCH_CHECK(y.sizes() == z.sizes(), "drip_step: y must have z's shape ", z.sizes(), ", got ", y.sizes());
  TORCH_CHECK(g.sizes() == z.sizes(), "drip_step: g must have z's shape ", z.sizes(), ", got ", g.sizes());
  TORCH_CHECK(step.dim() == 1 && step.size(0) == B, "drip_step: step must be [B] with B = ", B, ", got ",
              step.sizes());
  TORCH_CHECK(momentum.dim() == 1 && momentum.size(0) == B, "drip_step: momentum must be [B] with B = ", B,
              ", got ", momentum.sizes());
  TORCH_CHECK(active.dim() == 1 && active.size(0) == B, "drip_step: active must be [B] with B = ", B, ", got ",
              active.sizes());
  TORCH_CHECK(active.scalar_type() == at::kBool, "drip_step: active must be bool, got ", active.scalar_type());
  TORCH_CHECK(active.device() == z.device(), "drip_step: active is on ", active.device(), " but z is on ",
              z.device());
  check_like(y, z, "y");
  check_like(g, z, "g");
  check_like(step, z, "step");
  check_like(momentum, z, "momentum");
  TORCH_CHECK(tol >= 0 && std::isfinite(tol), "drip_step: tol must be finite and >= 0, got ", tol);
  Call c;
  c.z = z.contiguous();
  c.y = y.contiguous();
  c.g = g.contiguous();
  c.step = step.contiguous();
  c.momentum = momentum.contiguous();
  c.active = active.contiguous();
  c.tol = tol;
  const auto opts = c.z.options();
  c.z_new = at::empty(z.sizes(), opts);
  c.y_new = at::empty(z.sizes(), opts);
  c.active_new = at::empty({B}, opts.dtype(at::kBool));
  c.delta_sq = at::empty({B}, opts);
  c.grad_sq = at::empty({B}, opts);
  return c;
}

template <class T>
Problem<T> make_problem(const Call& c) {
  Problem<T> pr;
  pr.B = c.z.size(0);
  pr.N = c.z.size(1);
  pr.z = c.z.data_ptr<T>();
  pr.y = c.y.data_ptr<T>();
  pr.g = c.g.data_ptr<T>();
  pr.step = c.step.data_ptr<T>();
  pr.momentum = c.momentum.data_ptr<T>();
  pr.active = c.active.data_ptr<bool>();
  pr.tol_sq = c.tol * c.tol;
  pr.z_new = c.z_new.data_ptr<T>();
  pr.y_new = c.y_new.data_ptr<T>();
  pr.active_new = c.active_new.data_ptr<bool>();
  pr.delta_sq = c.delta_sq.data_ptr<T>();
  pr.grad_sq = c.grad_sq.data_ptr<T>();
  return pr;
}

}  // namespace drip
}  // namespace dtwin
