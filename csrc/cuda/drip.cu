// CUDA kernels of dtwin::drip_step (csrc/include/dtwin/drip.h holds the per-element math).
//
// A 2D grid: grid.y runs over samples, grid.x over blocks_per_sample blocks of one sample, whose
// threads stride through the sample's N elements (coalesced), write z_new and y_new, and sum
// ||d||^2, ||z_new||^2, ||g||^2 in double; warp shuffles and shared memory reduce each block to one
// partial triple in the workspace. A second kernel, one warp per sample, adds a sample's partials
// in a fixed order (no atomics: the result is deterministic) and writes the per-sample outputs.
#include <cuda_runtime.h>

#include "launch.h"

namespace dtwin {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kItemsPerThread = 16;  // elements per thread a block aims for
constexpr int64_t kTargetBlocks = 2048;  // blocks over all samples: enough to fill a large GPU
constexpr int kFinishWarps = 4;  // samples per block of the second kernel
constexpr int64_t kMaxGridY = 65535;

int64_t blocks_per_sample(int64_t B, int64_t N) {
  const int64_t by_size = (N + kThreads * kItemsPerThread - 1) / (kThreads * kItemsPerThread);
  const int64_t by_fill = (kTargetBlocks + B - 1) / (B > 0 ? B : 1);
  const int64_t n = by_size < by_fill ? by_size : by_fill;
  return n < 1 ? 1 : n;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    drip_sums_kernel(const drip::Problem<T> pr, double* __restrict__ partial, int64_t blocks_x) {
  __shared__ double shared[3][kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = blocks_x * kThreads;
  for (int64_t b = blockIdx.y; b < pr.B; b += gridDim.y) {
    const int64_t off = b * pr.N;
    const T* __restrict__ z = pr.z + off;
    const T* __restrict__ y = pr.y + off;
    const T* __restrict__ g = pr.g + off;
    T* __restrict__ z_out = pr.z_new + off;
    T* __restrict__ y_out = pr.y_new + off;
    double sd = 0, sz = 0, sg = 0;
    if (pr.active[b]) {  // uniform over the block
      const T s = pr.step[b], m = pr.momentum[b];
      for (int64_t i = first; i < pr.N; i += stride) {
        const T gi = g[i];
        T zn, yn;
        const T d = drip::update(z[i], y[i], gi, s, m, zn, yn);
        z_out[i] = zn;
        y_out[i] = yn;
        sd += drip::square<double>(d);
        sz += drip::square<double>(zn);
        sg += drip::square<double>(gi);
      }
    } else {
      for (int64_t i = first; i < pr.N; i += stride) {
        const T zi = z[i];
        z_out[i] = zi;
        y_out[i] = zi;
        sg += drip::square<double>(g[i]);
      }
    }
    sd = warp_sum(sd);
    sz = warp_sum(sz);
    sg = warp_sum(sg);
    if (lane == 0) {
      shared[0][warp] = sd;
      shared[1][warp] = sz;
      shared[2][warp] = sg;
    }
    __syncthreads();
    if (warp == 0) {
      sd = warp_sum(lane < kWarps ? shared[0][lane] : 0.0);
      sz = warp_sum(lane < kWarps ? shared[1][lane] : 0.0);
      sg = warp_sum(lane < kWarps ? shared[2][lane] : 0.0);
      if (lane == 0) {
        double* p = partial + (b * blocks_x + blockIdx.x) * 3;
        p[0] = sd;
        p[1] = sz;
        p[2] = sg;
      }
    }
    __syncthreads();  // `shared` is reused for the block's next sample
  }
}

template <class T>
__global__ void __launch_bounds__(kFinishWarps * 32)
    drip_finish_kernel(const drip::Problem<T> pr, const double* __restrict__ partial, int64_t blocks_x) {
  const int lane = threadIdx.x & 31;
  const int64_t b = static_cast<int64_t>(blockIdx.x) * kFinishWarps + (threadIdx.x >> 5);
  if (b >= pr.B) return;  // the whole warp
  const double* p = partial + b * blocks_x * 3;
  double sd = 0, sz = 0, sg = 0;
  for (int64_t k = lane; k < blocks_x; k += 32) {
    sd += p[3 * k];
    sz += p[3 * k + 1];
    sg += p[3 * k + 2];
  }
  sd = warp_sum(sd);
  sz = warp_sum(sz);
  sg = warp_sum(sg);
  if (lane == 0) drip::finish(pr, b, sd, sz, sg);
}

}  // namespace

int64_t drip_step_workspace(int64_t B, int64_t N) { return B * blocks_per_sample(B, N) * 3; }

template <class T>
cudaError_t drip_step_launch(const drip::Problem<T>& problem, double* workspace, cudaStream_t stream) {
  if (problem.B == 0) return cudaSuccess;
  const int64_t blocks_x = blocks_per_sample(problem.B, problem.N);
  const dim3 grid(static_cast<unsigned>(blocks_x),
                  static_cast<unsigned>(problem.B < kMaxGridY ? problem.B : kMaxGridY));
  drip_sums_kernel<T><<<grid, kThreads, 0, stream>>>(problem, workspace, blocks_x);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const int64_t finish_blocks = (problem.B + kFinishWarps - 1) / kFinishWarps;
  drip_finish_kernel<T><<<static_cast<unsigned>(finish_blocks), kFinishWarps * 32, 0, stream>>>(
      problem, workspace, blocks_x);
  return cudaGetLastError();
}

template cudaError_t drip_step_launch<float>(const drip::Problem<float>&, double*, cudaStream_t);
template cudaError_t drip_step_launch<double>(const drip::Problem<double>&, double*, cudaStream_t);

}  // namespace cuda
}  // namespace dtwin
