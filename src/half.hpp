#pragma once
/// \file half.hpp
/// IEEE 754 binary16 conversions. The plain functions are the reference: round to nearest, ties to
/// even, overflow to infinity, subnormals kept, NaN stays NaN (quiet bit set and the top payload
/// bits kept, as the x86 F16C instruction VCVTPS2PH does, so both paths agree on every bit
/// pattern). float_to_half_n uses F16C when the CPU has it (runtime dispatch; the build targets
/// baseline x86-64) and the reference loop otherwise.

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define IMGNORM_HAVE_F16C_DISPATCH 1
#endif

namespace imgnorm::detail {

/// Rounds the positive value m · 2^(e − 52) (m < 2^53, the implicit bit included when normal) to
/// binary16 bits without the sign. e is the unbiased exponent of the leading bit position 52.
inline std::uint16_t round_to_half_bits(std::uint64_t m, int e) {
  if (e > 15) return 0x7c00;  // >= 65536: infinity (65520 and up also round there, below)
  // Bits of m below the half's last mantissa bit: 42 for normals, more for subnormals.
  int shift = e >= -14 ? 42 : 42 + (-14 - e);
  if (shift > 63) return 0;
  std::uint64_t q = m >> shift;
  std::uint64_t rest = m & ((std::uint64_t{1} << shift) - 1);
  std::uint64_t half = std::uint64_t{1} << (shift - 1);
  if (rest > half || (rest == half && (q & 1))) ++q;
  // Normal: q in [2^10, 2^11]; a carry into bit 11 moves to the next exponent naturally.
  std::uint64_t bits = e >= -14 ? (static_cast<std::uint64_t>(e + 15) << 10) + q - 1024 : q;
  return bits >= 0x7c00 ? std::uint16_t{0x7c00} : static_cast<std::uint16_t>(bits);
}

/// double → binary16, rounded once (no intermediate float).
inline std::uint16_t double_to_half(double d) {
  std::uint64_t b;
  std::memcpy(&b, &d, 8);
  auto sign = static_cast<std::uint16_t>((b >> 48) & 0x8000);
  int exp = static_cast<int>((b >> 52) & 0x7ff);
  std::uint64_t mant = b & ((std::uint64_t{1} << 52) - 1);
  if (exp == 0x7ff)
    return sign | 0x7c00 | (mant ? 0x200 | static_cast<std::uint16_t>(mant >> 42) : 0);
  if (exp == 0) return sign;  // double subnormals are far below half's smallest subnormal
  return sign | round_to_half_bits(mant | (std::uint64_t{1} << 52), exp - 1023);
}

/// float → binary16, the reference.
inline std::uint16_t float_to_half(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  auto sign = static_cast<std::uint16_t>((b >> 16) & 0x8000);
  int exp = static_cast<int>((b >> 23) & 0xff);
  std::uint32_t mant = b & 0x7fffff;
  if (exp == 0xff)
    return sign | 0x7c00 | (mant ? 0x200 | static_cast<std::uint16_t>(mant >> 13) : 0);
  if (exp == 0) return sign;  // float subnormals (< 2^-126) round to zero in binary16
  // Widen the 24-bit significand to the 53-bit layout round_to_half_bits expects.
  return sign | round_to_half_bits(static_cast<std::uint64_t>(mant | 0x800000) << 29, exp - 127);
}

/// binary16 → float (exact).
inline float half_to_float(std::uint16_t h) {
  std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ff;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalize
    int e = -1;
    do {
      mant <<= 1;
      ++e;
    } while (!(mant & 0x400));
    bits = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline void float_to_half_n_reference(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = float_to_half(in[i]);
}

#ifdef IMGNORM_HAVE_F16C_DISPATCH
__attribute__((target("avx,f16c"))) inline void float_to_half_n_f16c(const float* in,
                                                                     std::uint16_t* out,
                                                                     std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(in + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) {
    __m128i h = _mm_cvtps_ph(_mm_set_ss(in[i]), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    out[i] = static_cast<std::uint16_t>(_mm_extract_epi16(h, 0));
  }
}

inline bool cpu_has_f16c() {
  // CPUID leaf 1 for F16C: clang 14's __builtin_cpu_supports does not know "f16c".
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) != 0 &&
           (c & bit_F16C) != 0;
  }();
  return has;
}
#endif

/// Converts n floats to binary16 bits; same result as float_to_half on each element.
inline void float_to_half_n(const float* in, std::uint16_t* out, std::size_t n) {
#ifdef IMGNORM_HAVE_F16C_DISPATCH
  if (cpu_has_f16c()) return float_to_half_n_f16c(in, out, n);
#endif
  float_to_half_n_reference(in, out, n);
}

}  // namespace imgnorm::detail
