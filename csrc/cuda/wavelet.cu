// CUDA kernels of the wavelet primitives: one thread per output value of one signal, computed by
// the shared gather functions of csrc/include/dtwin/wavelet.h (the CPU runs the same ones on SIMD
// lanes), each thread reducing its boundary positions itself.
#include <cuda_runtime.h>

#include "launch.h"

namespace dtwin {
namespace cuda {

namespace {

constexpr int kThreads = 256;

struct Signal {
  int64_t a, b;
};

template <class T>
__device__ __forceinline__ T* at(const WaveletSignals& s, Signal g) {
  return static_cast<T*>(s.data) + g.a * s.sa + g.b * s.sb;
}

template <class T>
__global__ void __launch_bounds__(kThreads) wavelet_kernel(const WaveletArgs a, int64_t outputs) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t signals = a.na * a.nb;
  if (tid >= signals * outputs) return;
  const int64_t sig = tid / outputs, k = tid % outputs;
  const Signal g{sig / a.nb, sig % a.nb};
  const T* f0 = static_cast<const T*>(a.f[0]);
  const T* f1 = static_cast<const T*>(a.f[1]);
  const int64_t F = a.F;
  const int mode = a.mode;
  switch (a.op) {
    case WaveletOp::kAnalysis: {
      const T* x = at<T>(a.in[0], g);
      const int64_t L = a.in[0].len, st = a.in[0].st;
      auto get = [&](int64_t m) { return x[wavelet::extend(m, L, mode) * st]; };
      for (int side = 0; side < 2; ++side) {
        const WaveletSignals& o = a.out[side];
        if (o.data != nullptr && k < o.len) at<T>(o, g)[k * o.st] = wavelet::analysis_point<T>(k, side ? f1 : f0, F, mode, get);
      }
      break;
    }
    case WaveletOp::kAnalysisAdjoint: {
      const WaveletSignals& o = a.out[0];
      T acc = T(0);
      for (int side = 0; side < 2; ++side) {
        const WaveletSignals& in = a.in[side];
        if (in.data == nullptr) continue;
        const T* gp = at<T>(in, g);
        auto get = [&](int64_t i) { return gp[i * in.st]; };
        acc += wavelet::analysis_adjoint_point<T>(k, side ? f1 : f0, F, o.len, in.len, mode, get);
      }
      at<T>(o, g)[k * o.st] = acc;
      break;
    }
    case WaveletOp::kSynthesis: {
      const WaveletSignals& o = a.out[0];
      T acc = T(0);
      for (int side = 0; side < 2; ++side) {
        const WaveletSignals& in = a.in[side];
        if (in.data == nullptr) continue;
        const T* c = at<T>(in, g);
        const int64_t n = in.len;
        auto get = [&](int64_t u) { return c[(mode == wavelet::kSymmetric ? u : wavelet::floor_mod(u, n)) * in.st]; };
        acc += wavelet::synthesis_point<T>(k, side ? f1 : f0, F, mode, get);
      }
      at<T>(o, g)[k * o.st] = acc;
      break;
    }
    case WaveletOp::kSynthesisAdjoint: {
      const WaveletSignals& in = a.in[0];
      const T* gp = at<T>(in, g);
      const int64_t Lg = in.len;
      for (int side = 0; side < 2; ++side) {
        const WaveletSignals& o = a.out[side];
        if (o.data == nullptr || k >= o.len) continue;
        const int64_t n = o.len;
        auto get = [&](int64_t q) {
          const int64_t r = mode == wavelet::kSymmetric ? q : wavelet::floor_mod(q, 2 * n);
          return r < Lg ? gp[r * in.st] : T(0);
        };
        at<T>(o, g)[k * o.st] = wavelet::synthesis_adjoint_point<T>(k, side ? f1 : f0, F, Lg, mode, get);
      }
      break;
    }
  }
}

}  // namespace

cudaError_t wavelet_launch(const WaveletArgs& a, cudaStream_t stream) {
  // outputs per signal: the longer of the two outputs
  int64_t outputs = 0;
  for (int side = 0; side < 2; ++side)
    if (a.out[side].data != nullptr && a.out[side].len > outputs) outputs = a.out[side].len;
  const int64_t total = a.na * a.nb * outputs;
  if (total == 0) return cudaSuccess;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 2147483647) return cudaErrorInvalidConfiguration;
  if (a.dbl) {
    wavelet_kernel<double><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a, outputs);
  } else {
    wavelet_kernel<float><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a, outputs);
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace dtwin
