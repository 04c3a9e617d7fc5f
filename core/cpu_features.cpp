#include "core/cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace gd::core {

namespace {

bool bit(std::uint64_t word, int n) { return ((word >> n) & 1u) != 0; }

// Register state the OS saves on context switches: without it the instructions fault.
bool os_saves_avx512(const CpuidWords& w) {
  return bit(w.leaf1_ecx, 27) && bit(w.xcr0, 1) && bit(w.xcr0, 2) && bit(w.xcr0, 5) &&
         bit(w.xcr0, 6) && bit(w.xcr0, 7);
}
bool os_saves_amx_tiles(const CpuidWords& w) {
  return bit(w.leaf1_ecx, 27) && bit(w.xcr0, 17) && bit(w.xcr0, 18);
}

bool has_avx512_bf16(const CpuidWords& w) {
  return w.has_leaf7 && bit(w.leaf7_ebx, 16) && bit(w.leaf7_1_eax, 5) && os_saves_avx512(w);
}
bool has_amx_bf16(const CpuidWords& w) {
  return w.has_leaf7 && bit(w.leaf7_edx, 22) && bit(w.leaf7_edx, 24) && os_saves_amx_tiles(w);
}

}  // namespace

bool native_bf16_from_cpuid(const CpuidWords& words) {
  return has_avx512_bf16(words) || has_amx_bf16(words);
}

CpuidWords read_cpuid_words() {
  CpuidWords w;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  const unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 1 && __get_cpuid(1, &a, &b, &c, &d)) w.leaf1_ecx = c;
  if (max_leaf >= 7) {
    w.has_leaf7 = true;
    __cpuid_count(7, 0, a, b, c, d);
    w.leaf7_ebx = b;
    w.leaf7_edx = d;
    const unsigned max_subleaf = a;
    if (max_subleaf >= 1) {
      __cpuid_count(7, 1, a, b, c, d);
      w.leaf7_1_eax = a;
    }
  }
  if (bit(w.leaf1_ecx, 27)) {  // XGETBV exists only with OSXSAVE
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    w.xcr0 = (static_cast<std::uint64_t>(hi) << 32) | lo;
  }
#endif
  return w;
}

bool cpu_has_native_bf16() {
  static const bool native = native_bf16_from_cpuid(read_cpuid_words());
  return native;
}

std::string describe_native_bf16(const CpuidWords& words) {
  std::string text;
  if (has_amx_bf16(words)) text = "AMX-BF16";
  if (has_avx512_bf16(words)) text += std::string(text.empty() ? "" : ", ") + "AVX512_BF16";
  return text.empty() ? "none" : text;
}

}  // namespace gd::core
