// Scalar helpers written so that GCC vectorizes the loops that call them (-O3, no -ffast-math):
// bf16 <-> fp32 by bit operations, and Cephes-style expf / logf (Moshier, Cephes Math Library,
// single precision: rounding error ~1e-7, far below bf16's 4e-3). std::exp / std::log stay scalar
// calls without -ffast-math, and -ffast-math would also license rewrites that these rely on not happening.
// Built with -fno-math-errno (sqrt vectorizes) and -fno-trapping-math (selects whose arms compute, as in
// log_approx, are if-converted instead of branching): ../cpu_kernels.py.
#pragma once

#include <cstdint>
#include <cstring>

namespace diffmsst {

inline float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) { return bits_to_float(static_cast<uint32_t>(p[i]) << 16); }
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(uint16_t* p, int64_t i, float v) {  // round to nearest even, NaN stays NaN
  uint32_t bits = float_to_bits(v);
  uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  p[i] = static_cast<uint16_t>(v != v ? 0x7FC0u : rounded);
}

inline float exp_approx(float v) {  // Cody-Waite reduction, degree-6 polynomial; clamped to [-87, 88]
  v = v < -87.0f ? -87.0f : (v > 88.0f ? 88.0f : v);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer
  float n = (v * 1.44269504088896341f + magic) - magic;
  float r = v - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}

// Natural log of a normal positive float (x >= 2^-126); +inf and NaN pass through.
inline float log_approx(float x) {
  uint32_t bits = float_to_bits(x);
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xFFu) - 126;  // x = m * 2^e, m in [0.5, 1)
  float m = bits_to_float((bits & 0x007FFFFFu) | 0x3F000000u);
  const bool small = m < 0.707106781186547524f;  // keep m - 1 in [sqrt(1/2) - 1, sqrt(2) - 1)
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = static_cast<float>(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  const float r = m + y + 0.693359375f * fe;
  return x < 3.0e38f ? r : x;  // +inf and NaN (the compare is false) pass through
}

}  // namespace diffmsst
