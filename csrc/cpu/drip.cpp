// CPU kernel of dtwin::drip_step: one pass over z, y, g that writes z_new and y_new and sums
// ||z_new - z||^2, ||z_new||^2 and ||g||^2 per sample, then a short pass over the samples for the
// stopping test (csrc/include/dtwin/drip.h holds the per-element math).
//
// Work is split into tasks of kChunk elements of one sample (all samples when B is large, chunks of
// a sample when B is small), shared out by at::parallel_for. Each task's loop is vectorised
// (`omp simd` reductions into double), and the partial sums of a sample are added in chunk order:
// the result does not depend on the number of threads.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

// No fused multiply-add in the updates below (GCC contracts a * b + c across statements under
// -march=native): z_new and y_new then round exactly as the reference's separate torch ops do.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

#include "../drip_op.h"
#include "dtwin/drip.h"

namespace dtwin {
namespace cpu {

namespace {

constexpr int64_t kChunk = 16384;  // elements of one sample per task (fixed: thread-independent sums)
constexpr int64_t kGrainElements = 32768;  // the least work worth handing to a thread

struct Sums {
  double delta = 0, z_new = 0, grad = 0;
};

template <class T>
Sums run_chunk(const drip::Problem<T>& pr, int64_t b, int64_t lo, int64_t hi) {
  const int64_t off = b * pr.N;
  const T* __restrict z = pr.z + off;
  const T* __restrict y = pr.y + off;
  const T* __restrict g = pr.g + off;
  T* __restrict z_out = pr.z_new + off;
  T* __restrict y_out = pr.y_new + off;
  double sd = 0, sz = 0, sg = 0;
  if (pr.active[b]) {
    const T s = pr.step[b], m = pr.momentum[b];
#pragma omp simd reduction(+ : sd, sz, sg)
    for (int64_t i = lo; i < hi; ++i) {
      T zn, yn;
      const T d = drip::update(z[i], y[i], g[i], s, m, zn, yn);
      z_out[i] = zn;
      y_out[i] = yn;
      sd += drip::square<double>(d);
      sz += drip::square<double>(zn);
      sg += drip::square<double>(g[i]);
    }
  } else {
#pragma omp simd reduction(+ : sg)
    for (int64_t i = lo; i < hi; ++i) {
      z_out[i] = z[i];
      y_out[i] = z[i];
      sg += drip::square<double>(g[i]);
    }
  }
  Sums r;
  r.delta = sd;
  r.z_new = sz;
  r.grad = sg;
  return r;
}

template <class T>
void drip_step_impl(const drip::Problem<T>& pr) {
  if (pr.B == 0) return;
  const int64_t chunks = std::max<int64_t>(1, (pr.N + kChunk - 1) / kChunk);
  const int64_t tasks = pr.B * chunks;
  const int64_t per_task = std::max<int64_t>(1, std::min(pr.N, kChunk));
  std::vector<Sums> partial(tasks);
  at::parallel_for(0, tasks, std::max<int64_t>(1, kGrainElements / per_task), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / chunks, lo = (t % chunks) * kChunk;
      partial[t] = run_chunk(pr, b, lo, std::min(pr.N, lo + kChunk));
    }
  });
  for (int64_t b = 0; b < pr.B; ++b) {
    Sums s;
    for (int64_t k = 0; k < chunks; ++k) {
      const Sums& p = partial[b * chunks + k];
      s.delta += p.delta;
      s.z_new += p.z_new;
      s.grad += p.grad;
    }
    drip::finish(pr, b, s.delta, s.z_new, s.grad);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> drip_step_cpu(
    const at::Tensor& z, const at::Tensor& y, const at::Tensor& g, const at::Tensor& step,
    const at::Tensor& momentum, const at::Tensor& active, double tol) {
  const drip::Call c = drip::prepare_call(z, y, g, step, momentum, active, tol);
  if (c.z.scalar_type() == at::kDouble) {
    drip_step_impl<double>(drip::make_problem<double>(c));
  } else {
    drip_step_impl<float>(drip::make_problem<float>(c));
  }
  return c.outputs();
}

}  // namespace cpu
}  // namespace dtwin

#if !defined(__clang__) && defined(__GNUC__)
#pragma GCC pop_options
#endif

TORCH_LIBRARY_IMPL(dtwin, CPU, m) { m.impl("drip_step", &dtwin::cpu::drip_step_cpu); }
