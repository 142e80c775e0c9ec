// The STFT normalizer's encode after the FFT, in two passes instead of six:
//   pass 1: mag = |z| = sqrt(re^2 + im^2), c = log(mag + offset) (or mag), and each item's min / max of c;
//   pass 2: spec = (c - lo) / (max(hi - lo, eps) / 2) - 1, the same fp32 operations, in the same order,
//           as STFTNormalizer._scale, so the item's maximum maps to exactly 1.
// With lo / hi given (encode_with: another signal on the mixture's scale) pass 1 skips the min / max.
// spec_decode is decode's inverse before the inverse FFT, one pass: m = exp((spec + 1) * span / 2 + lo) - offset
// (clamped at 0), and the mixture STFT rescaled to it, z * m / |z| (a silent bin, |z| = 0, gets m).
//
// Why: PyTorch ran |z| (two ops), the compression (two), amin, amax and the scale (three) as separate
// passes over fresh 3-6 MB buffers, ~1.4 ms of a quickstart batch's ~4 ms encode + decode. The input
// is any dense complex64 layout with the batch outermost (torch.stft's (b, c, f, t) view of a (b, c, t, f)
// buffer); outputs take the input's strides, so elements are visited in memory order. Chunks depend
// only on the shape, so results do not depend on the number of threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "vec_math.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

namespace {

constexpr int64_t kChunk = 32768;  // elements per task
constexpr int kLanes = 16;         // independent min / max accumulators, so the loop vectorizes

// Writes mag and the compressed magnitude; returns how many of the latter are NaN.
template <bool LOG>
inline int64_t magnitude_chunk(const float* __restrict z, float* __restrict mag, float* __restrict out, float offset,
                               int64_t n) {
  int64_t nans = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float re = z[2 * i], im = z[2 * i + 1];
    const float m = std::sqrt(re * re + im * im);
    const float c = LOG ? diffmsst::log_approx(m + offset) : m;
    mag[i] = m;
    out[i] = c;
    nans += c != c;
  }
  return nans;
}

// (min, max) of v[0, n) without NaNs, in kLanes independent lanes so that the loop vectorizes.
std::pair<float, float> min_max(const float* __restrict v, int64_t n) {
  float lo[kLanes], hi[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    lo[j] = std::numeric_limits<float>::infinity();
    hi[j] = -std::numeric_limits<float>::infinity();
  }
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      lo[j] = v[i + j] < lo[j] ? v[i + j] : lo[j];
      hi[j] = v[i + j] > hi[j] ? v[i + j] : hi[j];
    }
  for (; i < n; ++i) {
    lo[0] = v[i] < lo[0] ? v[i] : lo[0];
    hi[0] = v[i] > hi[0] ? v[i] : hi[0];
  }
  for (int j = 1; j < kLanes; ++j) {
    lo[0] = lo[j] < lo[0] ? lo[j] : lo[0];
    hi[0] = hi[j] > hi[0] ? hi[j] : hi[0];
  }
  return {lo[0], hi[0]};
}

void scale_chunk(float* __restrict v, float lo, float half, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = (v[i] - lo) / half - 1.0f;
}

// The STFT both ops read: complex64 CPU, dense, positive strides, batch outermost; split into fixed chunks
// per item (by shape only, so results do not depend on the thread count).
struct Items {
  int64_t batch, per_item, chunks;
  Items(const at::Tensor& stft, const char* op) {
    TORCH_CHECK(stft.device().is_cpu() && stft.scalar_type() == at::kComplexFloat && stft.dim() >= 1 &&
                    stft.numel() > 0, op, ": needs a non-empty complex64 CPU STFT");
    batch = stft.size(0);
    per_item = stft.numel() / batch;
    TORCH_CHECK(stft.is_non_overlapping_and_dense() && stft.stride(0) == per_item, op,
                ": needs a dense layout with the batch outermost");
    for (int64_t d = 0; d < stft.dim(); ++d)
      TORCH_CHECK(stft.stride(d) > 0 || stft.size(d) == 1, op, ": needs positive strides");
    chunks = (per_item + kChunk - 1) / kChunk;
  }
  // fn(task, item, first element, elements) over every chunk, in parallel; task = item * chunks + k.
  template <typename F>
  void for_each_chunk(const F& fn) const {
    at::parallel_for(0, batch * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / chunks, k = task % chunks;
        fn(task, b, b * per_item + k * kChunk, std::min(kChunk, per_item - k * kChunk));
      }
    });
  }
};

// Half the item's span, as STFTNormalizer._span computes it: clamp_min(eps) keeps a silent item's zero span finite.
inline float half_span(float lo, float hi, float eps) {
  const float span = hi - lo;
  return (span < eps ? eps : span) / 2.0f;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> spec_encode(const at::Tensor& stft, double offset,
                                                                       bool log, bool scale, double eps,
                                                                       const c10::optional<at::Tensor>& lo_in,
                                                                       const c10::optional<at::Tensor>& hi_in) {
  const Items items(stft, "spec_encode");
  const int64_t batch = items.batch, chunks = items.chunks;
  const bool given = lo_in.has_value() && lo_in->defined();
  TORCH_CHECK(given == (hi_in.has_value() && hi_in->defined()), "spec_encode: give both lo and hi, or neither");
  auto options = stft.options().dtype(at::kFloat);
  at::Tensor mag = at::empty_strided(stft.sizes(), stft.strides(), options);
  at::Tensor out = at::empty_strided(stft.sizes(), stft.strides(), options);
  at::Tensor lo = given ? lo_in->to(at::kFloat).contiguous() : at::empty({batch}, options.memory_format(at::MemoryFormat::Contiguous));
  at::Tensor hi = given ? hi_in->to(at::kFloat).contiguous() : at::empty({batch}, options.memory_format(at::MemoryFormat::Contiguous));
  TORCH_CHECK(lo.numel() == batch && hi.numel() == batch, "spec_encode: lo and hi need one value per item");
  const float* z = reinterpret_cast<const float*>(stft.data_ptr());
  float* mp = mag.data_ptr<float>();
  float* op = out.data_ptr<float>();
  float* lp = lo.data_ptr<float>();
  float* hp = hi.data_ptr<float>();
  std::vector<float> chunk_lo(batch * chunks), chunk_hi(batch * chunks);
  const float off = static_cast<float>(offset);

  items.for_each_chunk([&](int64_t task, int64_t, int64_t start, int64_t n) {
    const int64_t nans = log ? magnitude_chunk<true>(z + 2 * start, mp + start, op + start, off, n)
                             : magnitude_chunk<false>(z + 2 * start, mp + start, op + start, off, n);
    if (!given) {
      std::tie(chunk_lo[task], chunk_hi[task]) = min_max(op + start, n);
      if (nans) chunk_lo[task] = chunk_hi[task] = std::numeric_limits<float>::quiet_NaN();  // as torch.amin / amax
    }
  });
  if (!given)
    for (int64_t b = 0; b < batch; ++b) {  // the chunks' extremes (NaN wins, as in min_max)
      float l = chunk_lo[b * chunks], h = chunk_hi[b * chunks];
      for (int64_t k = 1; k < chunks; ++k) {
        const float cl = chunk_lo[b * chunks + k], ch = chunk_hi[b * chunks + k];
        l = (cl < l || cl != cl) ? cl : l;
        h = (ch > h || ch != ch) ? ch : h;
      }
      lp[b] = l;
      hp[b] = h;
    }
  if (scale) {
    const float floor = static_cast<float>(eps);
    items.for_each_chunk([&](int64_t, int64_t b, int64_t start, int64_t n) {
      scale_chunk(op + start, lp[b], half_span(lp[b], hp[b], floor), n);
    });
  }
  return {mag, out, lo, hi};
}

template <bool LOG, bool SCALE>
void decode_chunk(const float* __restrict spec, const float* __restrict z, const float* __restrict mag,
                  float* __restrict out, float lo, float half, float offset, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float v = SCALE ? (spec[i] + 1.0f) * half + lo : spec[i];
    float m = LOG ? diffmsst::exp_approx(v) - offset : v;
    m = m > 0.0f ? m : 0.0f;
    const bool silent = mag[i] == 0.0f;
    const float ratio = silent ? 0.0f : m / mag[i];
    out[2 * i] = z[2 * i] * ratio + (silent ? m : 0.0f);
    out[2 * i + 1] = z[2 * i + 1] * ratio;
  }
}

at::Tensor spec_decode(const at::Tensor& spec, const at::Tensor& stft, const at::Tensor& mag, const at::Tensor& lo,
                       const at::Tensor& hi, double offset, bool log, bool scale, double eps) {
  const Items items(stft, "spec_decode");
  const int64_t batch = items.batch;
  TORCH_CHECK(spec.scalar_type() == at::kFloat && mag.scalar_type() == at::kFloat && spec.sizes() == stft.sizes() &&
                  mag.sizes() == stft.sizes() && spec.strides() == stft.strides() && mag.strides() == stft.strides(),
              "spec_decode: fp32 spec and magnitude laid out as the STFT");
  at::Tensor l = lo.to(at::kFloat).contiguous(), h = hi.to(at::kFloat).contiguous();
  TORCH_CHECK(l.numel() == batch && h.numel() == batch, "spec_decode: lo and hi need one value per item");
  at::Tensor out = at::empty_strided(stft.sizes(), stft.strides(), stft.options());
  const float* sp = spec.data_ptr<float>();
  const float* z = reinterpret_cast<const float*>(stft.data_ptr());
  const float* mp = mag.data_ptr<float>();
  float* op = reinterpret_cast<float*>(out.data_ptr());
  const float* lp = l.data_ptr<float>();
  const float* hp = h.data_ptr<float>();
  const float off = static_cast<float>(offset), floor = static_cast<float>(eps);
  items.for_each_chunk([&](int64_t, int64_t b, int64_t start, int64_t n) {
    const float half = half_span(lp[b], hp[b], floor);
    auto run = [&](auto fn) { fn(sp + start, z + 2 * start, mp + start, op + 2 * start, lp[b], half, off, n); };
    if (log && scale) run(decode_chunk<true, true>);
    else if (log) run(decode_chunk<true, false>);
    else if (scale) run(decode_chunk<false, true>);
    else run(decode_chunk<false, false>);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(diffmsst_fused, m) {
  m.def("spec_encode(Tensor stft, float offset, bool log, bool scale, float eps, Tensor? lo=None, Tensor? hi=None)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("spec_decode(Tensor spec, Tensor stft, Tensor mag, Tensor lo, Tensor hi, float offset, bool log, bool scale,"
        " float eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(diffmsst_fused, CPU, m) {
  m.impl("spec_encode", &spec_encode);
  m.impl("spec_decode", &spec_decode);
}
