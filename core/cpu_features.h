// Run-time CPU facts the engine's defaults depend on.
//
// Why run time: one build of the plug-in runs on many CPUs. bfloat16 networks are fast only where
// the CPU has native bf16 instructions (AVX512_BF16's dot products, or AMX-BF16 tiles), which
// oneDNN uses for channels-last bf16 convolutions; elsewhere oneDNN emulates bf16 with float32
// arithmetic and conversions, slower than plain fp32. `--precision auto` asks
// cpu_has_native_bf16() (docs/numerics.md, "bf16 on the CPU").
#pragma once

#include <cstdint>
#include <string>

namespace gd::core {

// The CPUID and XGETBV words the decision reads, as the CPU reports them.
struct CpuidWords {
  bool has_leaf7 = false;         // max basic leaf >= 7
  std::uint32_t leaf1_ecx = 0;    // leaf 1: OSXSAVE (bit 27)
  std::uint32_t leaf7_ebx = 0;    // leaf 7.0: AVX512F (bit 16)
  std::uint32_t leaf7_edx = 0;    // leaf 7.0: AMX-BF16 (bit 22), AMX-TILE (bit 24)
  std::uint32_t leaf7_1_eax = 0;  // leaf 7.1: AVX512_BF16 (bit 5)
  std::uint64_t xcr0 = 0;         // XGETBV(0): register state the OS saves (valid with OSXSAVE)
};

// Pure decision: native bf16 when the CPU has AVX512_BF16 (with AVX-512 and the OS saving the
// AVX-512 registers: XCR0 bits 1, 2, 5, 6, 7) or AMX-BF16 (with AMX tiles and the OS saving the
// tile state: XCR0 bits 17, 18). An instruction the OS does not enable is not usable.
bool native_bf16_from_cpuid(const CpuidWords& words);

// The words of the CPU this process runs on; all zero on CPUs other than x86-64.
CpuidWords read_cpuid_words();

// Whether this CPU runs bfloat16 natively (read once, then cached). Always false off x86-64
// (ARM's BF16 extension is not used by this build's oneDNN path).
bool cpu_has_native_bf16();

// "AVX512_BF16", "AMX-BF16, AVX512_BF16", or "none": for info lines and benchmark reports.
std::string describe_native_bf16(const CpuidWords& words);

}  // namespace gd::core
