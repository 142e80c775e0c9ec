// GroupNorm, optionally followed by SiLU, forward and backward in two passes each,
// for channels_last CPU tensors (bf16 or fp32).
//
// Why: in a bf16 channels_last train step PyTorch's CPU kernels spent ~33 ms of
// ~150 ms in GroupNorm + SiLU (forward + backward; profile in the README), about
// three times their fp32 cost, while the convolutions got their 2x from bf16.
// Here a (batch, channels, f, t) channels_last tensor is read as (batch, rows,
// channels) with rows = f * t; every loop runs over the channels of one row,
// which the compiler vectorizes, with per-channel fp32 coefficients.
//
//   forward : pass 1 per-channel sums (shifted by the channel's first value,
//             combined per group with Chan et al.'s pairwise update, in
//             double); pass 2 z = act(x * A_c + B_c).
//   backward: pass 1 recomputes y and dy = dz * act'(y), keeps dy (fp32) and
//             sums dy and dy * (x - mean) per channel; pass 2 writes
//             dx = rstd w dy - rstd * sum(w dy) / n - rstd^3 * sum(w dy (x - mean)) / n * (x - mean)
//             (the GroupNorm gradient, Wu & He 2018, with sums over each group).
//
// Both passes run block by block (~1M elements of whole items), so the second
// pass reads what the first left in cache. Rows are split into fixed chunks that
// depend only on the shape, so results do not depend on the number of threads.
// SiLU uses vec_math.h's expf. Build flags and fallback: ../cpu_kernels.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "vec_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

namespace {

using diffmsst::exp_approx;
using diffmsst::load;
using diffmsst::store;

inline float sigmoid(float v) { return 1.0f / (1.0f + exp_approx(-v)); }

// Row kernels: one row holds every channel of one (f, t) position; loops over channels vectorize.
template <typename T>
inline void stats_row(const T* __restrict x, const T* __restrict shift, float* __restrict sum,
                      float* __restrict square, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    float d = load(x, c) - load(shift, c);
    sum[c] += d;
    square[c] += d * d;
  }
}

template <typename T, bool SILU>
inline void forward_row(const T* __restrict x, T* __restrict out, const float* __restrict a,
                        const float* __restrict b, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    float y = load(x, c) * a[c] + b[c];
    store(out, c, SILU ? y * sigmoid(y) : y);
  }
}

template <bool SILU>
inline float input_grad(float dz, float y) {  // dy of the normalization's output y from dz of the activation's
  if (!SILU) return dz;
  float sg = sigmoid(y);
  return dz * sg * (1.0f + y * (1.0f - sg));
}

// Pass 1 of the backward: per-channel sums of dy and dy * (x - mean); with SiLU, dy is kept (fp32) for pass 2.
template <typename T, bool SILU>
inline void grad_sums_row(const T* __restrict x, const T* __restrict dz, const float* __restrict a,
                          const float* __restrict b, const float* __restrict mean, float* __restrict sum,
                          float* __restrict centred, float* __restrict dy_out, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    float xv = load(x, c);
    float dy = input_grad<SILU>(load(dz, c), xv * a[c] + b[c]);
    if (SILU) dy_out[c] = dy;
    sum[c] += dy;
    centred[c] += dy * (xv - mean[c]);
  }
}

// Pass 2: dx from dy (pass 1's fp32 dy with SiLU, else dz itself).
template <typename T, typename D>
inline void grad_row(const T* __restrict x, const D* __restrict dy, T* __restrict dx, const float* __restrict mean,
                     const float* __restrict scale, const float* __restrict k_centred,
                     const float* __restrict k_const, int64_t C) {
  for (int64_t c = 0; c < C; ++c)
    store(dx, c, scale[c] * load(dy, c) + k_centred[c] * (load(x, c) - mean[c]) + k_const[c]);
}

#ifndef BLOCK_ELEMENTS
#define BLOCK_ELEMENTS 1048576
#endif

struct Shape {
  int64_t batch, channels, rows, groups, per_group, chunk, chunks, block;
  Shape(const at::Tensor& x, int64_t g)
      : batch(x.size(0)), channels(x.size(1)), rows(x.size(2) * x.size(3)), groups(g), per_group(channels / g),
        chunk(std::max<int64_t>(1, 32768 / channels)),  // ~32k elements per task, whatever the thread count
        chunks((rows + chunk - 1) / chunk),
        block(std::min(batch, std::max<int64_t>(1, BLOCK_ELEMENTS / (rows * channels)))) {}  // items per block: ~1M elements (measured best of 64k-1G in the model)
  // fn(task, item, first_row, end_row) over every chunk of items [n0, n1), in parallel; task = item * chunks + k.
  template <typename F>
  void for_each_chunk(int64_t n0, int64_t n1, const F& fn) const {
    at::parallel_for(n0 * chunks, n1 * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / chunks, first = task % chunks * chunk;
        fn(task, n, first, std::min(rows, first + chunk));
      }
    });
  }
  // fn(n0, n1) for blocks of items in order: both passes over a block run while it is still in cache
  // (a 96-channel item read in 8 separate passes over the whole batch cost twice as much in the model).
  template <typename F>
  void for_each_block(const F& fn) const {
    for (int64_t n0 = 0; n0 < batch; n0 += block) fn(n0, std::min(batch, n0 + block));
  }
};

void check(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t groups) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4 && x.numel() > 0, "fused GroupNorm: needs a non-empty 4-d CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat, "fused GroupNorm: bf16 or fp32 only");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "fused GroupNorm: needs channels_last");
  TORCH_CHECK(groups > 0 && x.size(1) % groups == 0, "fused GroupNorm: channels must divide into groups");
  TORCH_CHECK(weight.scalar_type() == at::kFloat && bias.scalar_type() == at::kFloat &&
                  weight.numel() == x.size(1) && bias.numel() == x.size(1),
              "fused GroupNorm: fp32 weight and bias, one per channel");
}

// Per (item, channel) coefficients y = x * a + b of the normalization, and the group mean, from the group stats.
struct Coefficients {
  std::vector<float> a, b, mean;
  explicit Coefficients(const Shape& s) : a(s.batch * s.channels), b(s.batch * s.channels), mean(s.batch * s.channels) {}
  void fill(const Shape& s, int64_t n0, int64_t n1, const float* mean_g, const float* rstd, const float* w,
            const float* bias) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t c = 0; c < s.channels; ++c) {
        const int64_t g = n * s.groups + c / s.per_group, i = n * s.channels + c;
        a[i] = rstd[g] * w[c];
        b[i] = bias[c] - mean_g[g] * rstd[g] * w[c];
        mean[i] = mean_g[g];
      }
  }
};

template <typename T, bool SILU>
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_impl(const at::Tensor& x, const at::Tensor& weight,
                                                            const at::Tensor& bias, int64_t groups, double eps) {
  const Shape s(x, groups);
  const int64_t C = s.channels;
  const T* xp = reinterpret_cast<const T*>(x.data_ptr());
  std::vector<float> sums(s.batch * s.chunks * C), squares(s.batch * s.chunks * C);
  auto stats_options = x.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous);
  at::Tensor mean = at::empty({s.batch, s.groups}, stats_options);
  at::Tensor rstd = at::empty({s.batch, s.groups}, stats_options);
  float* mp = mean.data_ptr<float>();
  float* rp = rstd.data_ptr<float>();
  const double rows = static_cast<double>(s.rows);
  Coefficients k(s);
  at::Tensor out = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  T* op = reinterpret_cast<T*>(out.data_ptr());
  s.for_each_block([&](int64_t n0, int64_t n1) {
    s.for_each_chunk(n0, n1, [&](int64_t task, int64_t n, int64_t first, int64_t last) {
      const T* item = xp + n * s.rows * C;  // each channel is shifted by its first value
      for (int64_t r = first; r < last; ++r)
        stats_row(item + r * C, item, sums.data() + task * C, squares.data() + task * C, C);
    });
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t g = 0; g < s.groups; ++g) {
        double count = 0, gmean = 0, m2 = 0;  // running group mean and sum of squared deviations
        for (int64_t c = g * s.per_group; c < (g + 1) * s.per_group; ++c) {
          double sum = 0, square = 0;
          for (int64_t j = 0; j < s.chunks; ++j) {
            sum += sums[(n * s.chunks + j) * C + c];
            square += squares[(n * s.chunks + j) * C + c];
          }
          const double cmean = load(xp + n * s.rows * C, c) + sum / rows;
          const double cm2 = std::max(0.0, square - sum * sum / rows);
          const double delta = cmean - gmean, total = count + rows;  // Chan et al.'s pairwise update
          gmean += delta * rows / total;
          m2 += cm2 + delta * delta * count * rows / total;
          count = total;
        }
        mp[n * s.groups + g] = static_cast<float>(gmean);
        rp[n * s.groups + g] = static_cast<float>(1.0 / std::sqrt(m2 / count + eps));
      }
    }
    k.fill(s, n0, n1, mp, rp, weight.data_ptr<float>(), bias.data_ptr<float>());
    s.for_each_chunk(n0, n1, [&](int64_t, int64_t n, int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        const int64_t offset = (n * s.rows + r) * C;
        forward_row<T, SILU>(xp + offset, op + offset, k.a.data() + n * C, k.b.data() + n * C, C);
      }
    });
  });
  return {out, mean, rstd};
}

template <typename T, bool SILU>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_impl(const at::Tensor& dz, const at::Tensor& x,
                                                             const at::Tensor& mean, const at::Tensor& rstd,
                                                             const at::Tensor& weight, const at::Tensor& bias,
                                                             int64_t groups) {
  const Shape s(x, groups);
  const int64_t C = s.channels;
  const T* xp = reinterpret_cast<const T*>(x.data_ptr());
  const T* dzp = reinterpret_cast<const T*>(dz.data_ptr());
  const float* rp = rstd.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  Coefficients k(s);
  k.fill(s, 0, s.batch, mean.data_ptr<float>(), rp, w, bias.data_ptr<float>());
  std::vector<float> dy_sums(s.batch * s.chunks * C), dy_centred(s.batch * s.chunks * C);
  std::vector<double> sum_dy(s.batch * C), sum_dyc(s.batch * C);  // per item and channel
  std::vector<float> scale(s.batch * C), k_centred(s.batch * C), k_const(s.batch * C);
  const double count = static_cast<double>(s.rows * s.per_group);
  at::Tensor dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  T* dxp = reinterpret_cast<T*>(dx.data_ptr());
  // dy of one block, fp32: pass 2 reads it back (from cache) instead of evaluating the sigmoid again
  std::vector<float> dy_block(SILU ? s.block * s.rows * C : 0);
  s.for_each_block([&](int64_t n0, int64_t n1) {
    s.for_each_chunk(n0, n1, [&](int64_t task, int64_t n, int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        const int64_t offset = (n * s.rows + r) * C;
        float* dy_out = SILU ? dy_block.data() + ((n - n0) * s.rows + r) * C : nullptr;
        grad_sums_row<T, SILU>(xp + offset, dzp + offset, k.a.data() + n * C, k.b.data() + n * C,
                               k.mean.data() + n * C, dy_sums.data() + task * C, dy_centred.data() + task * C,
                               dy_out, C);
      }
    });
    // The chunks' sums in double, then per group the coefficients of dx.
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t j = 0; j < s.chunks; ++j)
        for (int64_t c = 0; c < C; ++c) {
          sum_dy[n * C + c] += dy_sums[(n * s.chunks + j) * C + c];
          sum_dyc[n * C + c] += dy_centred[(n * s.chunks + j) * C + c];
        }
      for (int64_t g = 0; g < s.groups; ++g) {
        double wdy = 0, wdyc = 0;
        for (int64_t c = g * s.per_group; c < (g + 1) * s.per_group; ++c) {
          wdy += w[c] * sum_dy[n * C + c];
          wdyc += w[c] * sum_dyc[n * C + c];
        }
        const double r = rp[n * s.groups + g];
        for (int64_t c = g * s.per_group; c < (g + 1) * s.per_group; ++c) {
          scale[n * C + c] = static_cast<float>(r * w[c]);
          k_centred[n * C + c] = static_cast<float>(-r * r * r * wdyc / count);
          k_const[n * C + c] = static_cast<float>(-r * wdy / count);
        }
      }
    }
    s.for_each_chunk(n0, n1, [&](int64_t, int64_t n, int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        const int64_t offset = (n * s.rows + r) * C, i = n * C;
        const float *m = k.mean.data() + i, *sc = scale.data() + i, *kc = k_centred.data() + i, *k0 = k_const.data() + i;
        if (SILU)
          grad_row(xp + offset, dy_block.data() + ((n - n0) * s.rows + r) * C, dxp + offset, m, sc, kc, k0, C);
        else
          grad_row(xp + offset, dzp + offset, dxp + offset, m, sc, kc, k0, C);
      }
    });
  });
  at::Tensor dweight = at::empty({C}, weight.options());
  at::Tensor dbias = at::empty({C}, bias.options());
  float* dwp = dweight.data_ptr<float>();
  float* dbp = dbias.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    double dw = 0, db = 0;
    for (int64_t n = 0; n < s.batch; ++n) {
      dw += rp[n * s.groups + c / s.per_group] * sum_dyc[n * C + c];
      db += sum_dy[n * C + c];
    }
    dwp[c] = static_cast<float>(dw);
    dbp[c] = static_cast<float>(db);
  }
  return {dx, dweight, dbias};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& weight,
                                                       const at::Tensor& bias, int64_t groups, double eps, bool silu) {
  check(x, weight, bias, groups);
  at::Tensor w = weight.contiguous(), b = bias.contiguous();
  if (x.scalar_type() == at::kBFloat16)
    return silu ? forward_impl<uint16_t, true>(x, w, b, groups, eps) : forward_impl<uint16_t, false>(x, w, b, groups, eps);
  return silu ? forward_impl<float, true>(x, w, b, groups, eps) : forward_impl<float, false>(x, w, b, groups, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& dz, const at::Tensor& x,
                                                        const at::Tensor& mean, const at::Tensor& rstd,
                                                        const at::Tensor& weight, const at::Tensor& bias,
                                                        int64_t groups, bool silu) {
  check(x, weight, bias, groups);
  TORCH_CHECK(mean.scalar_type() == at::kFloat && rstd.scalar_type() == at::kFloat &&
                  mean.numel() == x.size(0) * groups && rstd.numel() == x.size(0) * groups,
              "fused GroupNorm: fp32 stats, one per item and group");
  at::Tensor g = dz.to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor w = weight.contiguous(), b = bias.contiguous(), m = mean.contiguous(), r = rstd.contiguous();
  if (x.scalar_type() == at::kBFloat16)
    return silu ? backward_impl<uint16_t, true>(g, x, m, r, w, b, groups) : backward_impl<uint16_t, false>(g, x, m, r, w, b, groups);
  return silu ? backward_impl<float, true>(g, x, m, r, w, b, groups) : backward_impl<float, false>(g, x, m, r, w, b, groups);
}

}  // namespace

TORCH_LIBRARY(diffmsst_fused, m) {
  m.def("group_norm_forward(Tensor x, Tensor weight, Tensor bias, int groups, float eps, bool silu)"
        " -> (Tensor, Tensor, Tensor)");
  m.def("group_norm_backward(Tensor dz, Tensor x, Tensor mean, Tensor rstd, Tensor weight, Tensor bias,"
        " int groups, bool silu) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(diffmsst_fused, CPU, m) {
  m.impl("group_norm_forward", &forward);
  m.impl("group_norm_backward", &backward);
}
