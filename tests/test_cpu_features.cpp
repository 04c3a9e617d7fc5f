// The native-bf16 check: the decision from hand-made CPUID words (CPUs we do not have), and the
// run-time answer against what the kernel reports for this machine in /proc/cpuinfo.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "core/cpu_features.h"

namespace {

using gd::core::CpuidWords;
using gd::core::native_bf16_from_cpuid;

constexpr std::uint32_t kOsxsave = 1u << 27;    // leaf 1 ECX
constexpr std::uint32_t kAvx512f = 1u << 16;    // leaf 7.0 EBX
constexpr std::uint32_t kAmxBf16 = 1u << 22;    // leaf 7.0 EDX
constexpr std::uint32_t kAmxTile = 1u << 24;    // leaf 7.0 EDX
constexpr std::uint32_t kAvx512Bf16 = 1u << 5;  // leaf 7.1 EAX
constexpr std::uint64_t kXcr0Avx512 = 0xe7;     // x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
constexpr std::uint64_t kXcr0Tiles = 0x60000;   // XTILECFG, XTILEDATA

// An AMD Zen 4 / Intel Cooper Lake: AVX-512 with its bf16 dot products, no AMX.
CpuidWords avx512_bf16_cpu() {
  CpuidWords w;
  w.has_leaf7 = true;
  w.leaf1_ecx = kOsxsave;
  w.leaf7_ebx = kAvx512f;
  w.leaf7_1_eax = kAvx512Bf16;
  w.xcr0 = kXcr0Avx512;
  return w;
}

TEST(CpuFeatures, Avx512Bf16IsNative) {
  EXPECT_TRUE(native_bf16_from_cpuid(avx512_bf16_cpu()));
  EXPECT_EQ(gd::core::describe_native_bf16(avx512_bf16_cpu()), "AVX512_BF16");
}

TEST(CpuFeatures, AmxBf16IsNative) {
  CpuidWords w;  // AMX tiles without AVX512_BF16 (not a real CPU, but the rule's other half)
  w.has_leaf7 = true;
  w.leaf1_ecx = kOsxsave;
  w.leaf7_edx = kAmxBf16 | kAmxTile;
  w.xcr0 = kXcr0Avx512 | kXcr0Tiles;
  EXPECT_TRUE(native_bf16_from_cpuid(w));
  EXPECT_EQ(gd::core::describe_native_bf16(w), "AMX-BF16");
  w.leaf7_ebx = kAvx512f;  // a Sapphire Rapids has both
  w.leaf7_1_eax = kAvx512Bf16;
  EXPECT_EQ(gd::core::describe_native_bf16(w), "AMX-BF16, AVX512_BF16");
}

TEST(CpuFeatures, InstructionsTheOsDoesNotEnableDoNotCount) {
  CpuidWords w = avx512_bf16_cpu();
  w.xcr0 = 0x7;  // the OS saves only AVX state: AVX-512 instructions would fault
  EXPECT_FALSE(native_bf16_from_cpuid(w));
  w = avx512_bf16_cpu();
  w.leaf1_ecx = 0;  // no OSXSAVE: XCR0 cannot be trusted
  EXPECT_FALSE(native_bf16_from_cpuid(w));

  CpuidWords amx;
  amx.has_leaf7 = true;
  amx.leaf1_ecx = kOsxsave;
  amx.leaf7_edx = kAmxBf16 | kAmxTile;
  amx.xcr0 = kXcr0Avx512;  // tile state not enabled
  EXPECT_FALSE(native_bf16_from_cpuid(amx));
}

TEST(CpuFeatures, OtherCpusAreNotNative) {
  CpuidWords w = avx512_bf16_cpu();
  w.leaf7_1_eax = 0;  // AVX-512 without bf16 (Skylake-X, Ice Lake)
  EXPECT_FALSE(native_bf16_from_cpuid(w));
  EXPECT_EQ(gd::core::describe_native_bf16(w), "none");
  w = avx512_bf16_cpu();
  w.leaf7_ebx = 0;  // the bf16 bit without AVX512F is not usable
  EXPECT_FALSE(native_bf16_from_cpuid(w));
  w = avx512_bf16_cpu();
  w.has_leaf7 = false;  // leaf 7 absent: its words mean nothing
  EXPECT_FALSE(native_bf16_from_cpuid(w));
  w = avx512_bf16_cpu();
  w.leaf7_edx = kAmxBf16;  // AMX-BF16 without AMX-TILE
  w.leaf7_1_eax = 0;
  EXPECT_FALSE(native_bf16_from_cpuid(w));
  EXPECT_FALSE(native_bf16_from_cpuid(CpuidWords{}));
}

// The kernel lists a flag only when the CPU has it and the kernel enabled its state.
TEST(CpuFeatures, RunTimeAnswerAgreesWithProcCpuinfo) {
#if defined(__x86_64__) && defined(__linux__)
  std::ifstream file("/proc/cpuinfo");
  if (!file) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string line, flags;
  while (std::getline(file, line)) {
    if (line.rfind("flags", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  }
  ASSERT_FALSE(flags.empty()) << "no flags line in /proc/cpuinfo";
  const bool listed = flags.find(" avx512_bf16 ") != std::string::npos ||
                      flags.find(" amx_bf16 ") != std::string::npos;
  EXPECT_EQ(gd::core::cpu_has_native_bf16(), listed) << "flags:" << flags;
  EXPECT_EQ(gd::core::cpu_has_native_bf16(), native_bf16_from_cpuid(gd::core::read_cpuid_words()));
#else
  EXPECT_FALSE(gd::core::cpu_has_native_bf16());
#endif
}

}  // namespace
