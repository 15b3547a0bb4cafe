// CUDA kernel of dtwin::hh_simulate: one thread per neuron, its state in registers for the
// whole run, the output writes its only global-memory traffic. The arithmetic is the shared
// driver of csrc/include/dtwin/hh_driver.h, the same code the CPU kernel runs on SIMD lanes.
#include <cuda_runtime.h>

#include "launch.h"

namespace dtwin {
namespace cuda {

namespace {

constexpr int kThreads = 128;

template <class S, int M>
__global__ void __launch_bounds__(kThreads) hh_kernel(const hh::Problem<scalar_t<S>> problem) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  hh::Driver<S, M> driver(problem, first, stride, problem.N);
  driver.run();
}

template <class S, int M>
cudaError_t launch(const hh::Problem<scalar_t<S>>& problem, cudaStream_t stream) {
  if (problem.N == 0) return cudaSuccess;
  const int64_t blocks = (problem.N + kThreads - 1) / kThreads;
  const unsigned int grid = blocks < 2147483647 ? static_cast<unsigned int>(blocks) : 2147483647u;
  hh_kernel<S, M><<<grid, kThreads, 0, stream>>>(problem);
  return cudaGetLastError();
}

}  // namespace

template <class T>
cudaError_t hh_simulate_launch(const hh::Problem<T>& problem, int method, cudaStream_t stream) {
  using D = Dual<T, hh::kNumDirections>;
  const bool sens = problem.n_sens > 0;
  switch (method) {
    case hh::kRushLarsen:
      return sens ? launch<D, hh::kRushLarsen>(problem, stream) : launch<T, hh::kRushLarsen>(problem, stream);
    case hh::kRK4:
      return sens ? launch<D, hh::kRK4>(problem, stream) : launch<T, hh::kRK4>(problem, stream);
    default:
      return launch<T, hh::kDopri5>(problem, stream);
  }
}

template cudaError_t hh_simulate_launch<float>(const hh::Problem<float>&, int, cudaStream_t);
template cudaError_t hh_simulate_launch<double>(const hh::Problem<double>&, int, cudaStream_t);

}  // namespace cuda
}  // namespace dtwin
