// Convolution correctness sweep: LibTorch's default CPU path (at::conv2d, at::conv_transpose2d)
// against the same op in float64 over the configurations a network can have.
//
// Why: some oneDNN builds compute whole families of convolutions wrongly on some CPUs (Debian
// 13's libdnnl 3.7.2 on AVX-512 machines, issue 16), while LibTorch only routes a convolution to
// oneDNN for some batch sizes, spatial sizes and thread counts. float64 never goes to oneDNN, so
// it is an independent reference. The sweep passes on a faulty stack and prints the failing set
// (the engine's guard routes around it); it fails only when the reference itself is wrong or the
// sweep never reached oneDNN. GD_CONV_SWEEP_STRICT=1 also fails it on any wrong convolution,
// for checking that a build environment ships a good oneDNN.
//
// Run: meson test -C build conv_sweep -v (or build/tests/conv_sweep with OMP_WAIT_POLICY=PASSIVE,
// as meson sets it). docs/numerics.md has the failing sets measured so far.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/native/ConvUtils.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using at::native::ConvBackend;

// One convolution layer: what a network's weights fix.
struct ConvShape {
  bool transposed;
  int64_t in, out, kernel, stride, groups;
};

// One call of that layer: what the caller (batch, image size) and the process decide.
struct Input {
  int64_t batch, height, width;
};
struct Variant {
  at::ScalarType dtype;
  bool channels_last;
  int threads;
};

struct ConvArgs {
  at::Tensor x, w, b;
};

// Padding as networks use it: "same" for odd kernels, exact 2x upsampling for 4x4 stride 2.
int64_t padding_of(const ConvShape& s) { return s.kernel == 1 ? 0 : 1; }

at::Tensor run_conv(const ConvShape& s, const ConvArgs& a) {
  const int64_t p = padding_of(s);
  if (s.transposed) return at::conv_transpose2d(a.x, a.w, a.b, {s.stride}, {p}, {0}, s.groups);
  return at::conv2d(a.x, a.w, a.b, {s.stride}, {p}, {1}, s.groups);
}

ConvBackend backend_of(const ConvShape& s, const ConvArgs& a) {
  const int64_t p = padding_of(s);
  std::vector<c10::SymInt> stride{s.stride, s.stride}, pad{p, p}, dil{1, 1}, outpad{0, 0};
  return at::native::select_conv_backend(a.x, a.w, a.b, stride, pad, dil, s.transposed, outpad,
                                         s.groups, at::OptionalSymIntArrayRef(a.b.sym_sizes()));
}

std::string backend_name(ConvBackend b) {
  switch (b) {
    case ConvBackend::Mkldnn: return "oneDNN";
    case ConvBackend::MkldnnTranspose: return "oneDNN-transposed";
    case ConvBackend::Slow2d: return "Slow2d";
    case ConvBackend::SlowDilated2d: return "SlowDilated2d";
    case ConvBackend::SlowTranspose2d: return "SlowTranspose2d";
    case ConvBackend::NnpackSpatial: return "NNPACK";
    case ConvBackend::Empty: return "Empty";
    default: return "backend " + std::to_string(static_cast<int>(b));
  }
}

bool is_onednn(ConvBackend b) {
  return b == ConvBackend::Mkldnn || b == ConvBackend::MkldnnTranspose;
}

// Random float64 arguments whose values are exactly representable in bfloat16, so one float64
// result is the exact reference for the fp32 and the bf16 runs alike. Weights are scaled by
// 1/sqrt(fan-in) as a trained network's are, which keeps outputs of order one.
ConvArgs random_args(const ConvShape& s, const Input& in, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto bf16_exact = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kDouble); };
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  std::vector<int64_t> wshape =
      s.transposed ? std::vector<int64_t>{s.in, s.out / s.groups, s.kernel, s.kernel}
                   : std::vector<int64_t>{s.out, s.in / s.groups, s.kernel, s.kernel};
  const double fan_in = static_cast<double>(s.in / s.groups * s.kernel * s.kernel);
  ConvArgs a;
  a.x = bf16_exact(at::randn({in.batch, s.in, in.height, in.width}, gen, opts));
  a.w = bf16_exact(at::randn(wshape, gen, opts) / std::sqrt(fan_in));
  a.b = bf16_exact(at::randn({s.out}, gen, opts) * 0.1);
  return a;
}

ConvArgs as_variant(const ConvArgs& a, const Variant& v) {
  // A channels-last network converts its weights too (ParamStore::to_channels_last).
  const auto format =
      v.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  return {a.x.to(v.dtype).contiguous(format), a.w.to(v.dtype).contiguous(format), a.b.to(v.dtype)};
}

// Error relative to the output's scale (its largest magnitude); anything non-finite is wrong.
struct Error {
  double relative;
  bool non_finite;
};
Error compare(const at::Tensor& out, const at::Tensor& ref) {
  if (out.sizes() != ref.sizes()) return {std::numeric_limits<double>::infinity(), false};
  if (!at::isfinite(out).all().item<bool>()) return {std::numeric_limits<double>::infinity(), true};
  const double scale = std::max(ref.abs().max().item<double>(), 1e-30);
  return {(out.to(at::kDouble) - ref).abs().max().item<double>() / scale, false};
}

// fp32 accumulates in fp32 (~1e-6 here); bf16 rounds each output to 8 significant bits (~4e-3).
double tolerance(at::ScalarType dtype) { return dtype == at::kBFloat16 ? 2e-2 : 1e-4; }

// ---- The configurations ---------------------------------------------------------------------

// Channel counts around oneDNN's 16-wide blocks: full blocks, partial ones, and the odd counts
// real models use (3 for RGB, 20/40 for small U-Nets, 96/160/320 for larger ones).
std::vector<ConvShape> sweep_shapes() {
  const std::vector<std::pair<bool, int64_t>> ops = {// (transposed, kernel); stride below
                                                     {false, 1},
                                                     {false, 3},
                                                     {true, 3},
                                                     {true, 4}};
  std::vector<std::pair<int64_t, int64_t>> channels;  // (in, out)
  for (int64_t c : {3, 16, 20, 32, 40, 64, 96, 160, 320})
    for (int64_t other : {32, 40}) channels.push_back({c, other});
  for (int64_t c : {3, 16, 20, 64, 96, 160, 320, 512, 640})
    for (int64_t other : {32, 40}) channels.push_back({other, c});
  std::vector<ConvShape> shapes;
  for (auto [transposed, kernel] : ops) {
    // Transposed 3x3 is used at stride 1, 4x4 at stride 2 (exact upsampling); plain both.
    std::vector<int64_t> strides =
        transposed ? std::vector<int64_t>{kernel == 4 ? 2 : 1} : std::vector<int64_t>{1, 2};
    for (int64_t stride : strides)
      for (auto [in, out] : channels) shapes.push_back({transposed, in, out, kernel, stride, 1});
  }
  // Grouped and depthwise 3x3 convolutions (ConvNeXt-style blocks, grouped ResNets).
  for (auto [c, groups] : std::vector<std::pair<int64_t, int64_t>>{{20, 2},
                                                                   {40, 2},
                                                                   {96, 2},
                                                                   {160, 2},
                                                                   {40, 4},
                                                                   {320, 4},
                                                                   {3, 3},
                                                                   {20, 20},
                                                                   {40, 40},
                                                                   {96, 96},
                                                                   {320, 320}})
    shapes.push_back({false, c, c, 3, 1, groups});
  return shapes;
}

// LibTorch sends fp32 to oneDNN only for batch > 1, big inputs or groups (and 1x1 only with
// several threads or strides), so each layer is called small (native path), single but large
// (oneDNN when channels x 576 > 20480) and batched (oneDNN). bf16 always goes to oneDNN.
std::vector<Input> sweep_inputs(size_t shape_index) {
  const int64_t batch = 2 + static_cast<int64_t>(shape_index % 3);  // 2, 3 or 4
  return {{1, 8, 8}, {1, 24, 24}, {batch, 11, 14}};
}

std::vector<Variant> sweep_variants() {
  std::vector<Variant> variants;
  for (auto dtype : {at::kFloat, at::kBFloat16})
    for (bool channels_last : {false, true})
      for (int threads : {1, 2}) variants.push_back({dtype, channels_last, threads});
  return variants;
}

// ---- Results, grouped into families ---------------------------------------------------------

struct Family {
  int runs = 0, wrong = 0, non_finite = 0;
  double worst = 0;                                      // among finite outputs
  std::set<std::pair<int64_t, int64_t>> wrong_channels;  // (in, out)
  std::set<std::string> wrong_backends;
};

struct Summary {
  std::map<std::string, Family> families;
  std::map<std::string, int> routes;
  int runs = 0, wrong = 0, onednn_fp32 = 0, native_fp32 = 0;
};

std::string family_name(const ConvShape& s, const Variant& v) {
  std::ostringstream o;
  o << (v.dtype == at::kBFloat16 ? "bf16 "
        : v.dtype == at::kFloat  ? "fp32 "
                                 : "fp64 ")
    << (s.transposed ? "conv_transpose2d " : "conv2d ") << s.kernel << "x" << s.kernel << " s"
    << s.stride;
  if (s.groups > 1) o << (s.groups == s.in ? " depthwise" : " groups " + std::to_string(s.groups));
  o << (v.channels_last ? ", channels-last" : ", contiguous");
  return o.str();
}

void record(Summary& sum, const ConvShape& s, const Variant& v, ConvBackend backend, Error e) {
  Family& f = sum.families[family_name(s, v)];
  const bool wrong = e.non_finite || !(e.relative <= tolerance(v.dtype));
  ++sum.runs;
  ++f.runs;
  ++sum.routes[backend_name(backend)];
  if (v.dtype == at::kFloat) ++(is_onednn(backend) ? sum.onednn_fp32 : sum.native_fp32);
  if (!wrong) return;
  ++sum.wrong;
  ++f.wrong;
  f.non_finite += e.non_finite;
  if (!e.non_finite) f.worst = std::max(f.worst, e.relative);
  f.wrong_channels.insert({s.in, s.out});
  f.wrong_backends.insert(backend_name(backend));
}

std::string join(const std::set<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : " ") + i;
  return s;
}

std::string join(const std::set<std::pair<int64_t, int64_t>>& channels) {
  std::string s;
  for (auto [in, out] : channels)
    s += (s.empty() ? "" : " ") + std::to_string(in) + "->" + std::to_string(out);
  return s;
}

void print_versions() {
  std::cout << "LibTorch " << TORCH_VERSION << ", " << at::get_mkldnn_version()
            << ", ATen CPU capability " << at::get_cpu_capability()
            << ", oneDNN enabled: " << (at::globalContext().userEnabledMkldnn() ? "yes" : "no")
            << "\n";
}

void print_summary(const Summary& sum, double seconds) {
  std::cout << "\nConvolution sweep: " << sum.runs << " runs (fp32: " << sum.onednn_fp32
            << " via oneDNN, " << sum.native_fp32 << " native) in " << std::fixed
            << std::setprecision(1) << seconds << " s; wrong: " << sum.wrong << "\n";
  print_versions();
  std::cout << "Routes:";
  for (const auto& [name, n] : sum.routes) std::cout << " " << name << " " << n;
  std::cout << "\n" << (sum.wrong ? "Failing families:\n" : "Failing families: none\n");
  for (const auto& [name, f] : sum.families) {
    if (!f.wrong) continue;
    std::cout << "  " << name << ": " << f.wrong << "/" << f.runs << " wrong (worst relative error "
              << std::defaultfloat << std::setprecision(2) << f.worst << ", " << f.non_finite
              << " non-finite) via " << join(f.wrong_backends)
              << "\n    in->out: " << join(f.wrong_channels) << "\n";
  }
  std::cout << std::flush;
}

// ---- The float64 reference, checked by hand -------------------------------------------------

// Direct loops over the definition of (transposed) convolution, nothing shared with ATen.
at::Tensor direct_conv(const ConvShape& s, const ConvArgs& a, int64_t out_h, int64_t out_w) {
  const int64_t p = padding_of(s), cin = s.in / s.groups, cout = s.out / s.groups;
  at::Tensor y = a.b.view({1, s.out, 1, 1}).expand({a.x.size(0), s.out, out_h, out_w}).clone();
  auto X = a.x.accessor<double, 4>(), W = a.w.accessor<double, 4>();
  auto Y = y.accessor<double, 4>();
  for (int64_t n = 0; n < a.x.size(0); ++n)
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t ci = g * cin; ci < (g + 1) * cin; ++ci)
        for (int64_t co = g * cout; co < (g + 1) * cout; ++co)
          for (int64_t i = 0; i < a.x.size(2); ++i)
            for (int64_t j = 0; j < a.x.size(3); ++j)
              for (int64_t ki = 0; ki < s.kernel; ++ki)
                for (int64_t kj = 0; kj < s.kernel; ++kj) {
                  if (s.transposed) {  // input pixel (i, j) scatters into the output
                    const int64_t oi = i * s.stride - p + ki, oj = j * s.stride - p + kj;
                    if (oi >= 0 && oi < out_h && oj >= 0 && oj < out_w)
                      Y[n][co][oi][oj] += X[n][ci][i][j] * W[ci][co - g * cout][ki][kj];
                  } else {  // output pixel (oi, oj) gathers input pixel (i, j)
                    const int64_t di = i + p - ki, dj = j + p - kj;
                    if (di >= 0 && di % s.stride == 0 && dj >= 0 && dj % s.stride == 0 &&
                        di / s.stride < out_h && dj / s.stride < out_w)
                      Y[n][co][di / s.stride][dj / s.stride] +=
                          X[n][ci][i][j] * W[co][ci - g * cin][ki][kj];
                  }
                }
  return y;
}

TEST(ConvReference, MatchesHandComputedValues) {
  // 3x3 image 1..9, all-ones 3x3 kernel, padding 1: each output sums its 3x3 neighbourhood.
  ConvShape s{false, 1, 1, 3, 1, 1};
  ConvArgs a{at::arange(1, 10, at::kDouble).view({1, 1, 3, 3}), at::ones({1, 1, 3, 3}, at::kDouble),
             at::zeros({1}, at::kDouble)};
  const auto expected = at::tensor({12., 21., 16., 27., 45., 33., 24., 39., 28.}, at::kDouble);
  EXPECT_TRUE(at::equal(run_conv(s, a).flatten(), expected));
  EXPECT_TRUE(at::equal(direct_conv(s, a, 3, 3).flatten(), expected));
  // Transposed, stride 2, 1x1 kernel 2: every input pixel lands on every other output pixel.
  ConvShape t{true, 1, 1, 1, 2, 1};
  ConvArgs b{at::arange(1, 5, at::kDouble).view({1, 1, 2, 2}),
             at::full({1, 1, 1, 1}, 2.0, at::kDouble), at::zeros({1}, at::kDouble)};
  EXPECT_TRUE(at::equal(run_conv(t, b).flatten(),
                        at::tensor({2., 0., 4., 0., 0., 0., 6., 0., 8.}, at::kDouble)));
}

TEST(ConvReference, Float64MatchesDirectLoopsAndAvoidsOneDnn) {
  c10::InferenceMode guard;
  for (ConvShape s : {ConvShape{false, 4, 6, 3, 2, 2}, ConvShape{false, 6, 6, 3, 1, 6},
                      ConvShape{false, 5, 7, 1, 1, 1}, ConvShape{true, 4, 6, 4, 2, 2},
                      ConvShape{true, 5, 3, 3, 1, 1}}) {
    ConvArgs a = random_args(s, {2, 5, 6}, 7);
    at::Tensor ref = run_conv(s, a);
    EXPECT_LT((ref - direct_conv(s, a, ref.size(2), ref.size(3))).abs().max().item<double>(), 1e-12)
        << family_name(s, {at::kDouble, false, 1}) << " " << s.in << "->" << s.out;
    EXPECT_FALSE(is_onednn(backend_of(s, a))) << "float64 must not route to oneDNN";
  }
}

// ---- The sweep ------------------------------------------------------------------------------

void sweep_shape(Summary& sum, const ConvShape& s, size_t index) {
  for (const Input& in : sweep_inputs(index)) {
    const ConvArgs args = random_args(s, in, 1000 + index);
    const at::Tensor ref = run_conv(s, args);
    for (const Variant& v : sweep_variants()) {
      const ConvArgs va = as_variant(args, v);
      at::set_num_threads(v.threads);
      const ConvBackend backend = backend_of(s, va);  // depends on the thread count
      const at::Tensor out = run_conv(s, va);
      at::set_num_threads(1);  // comparing is cheap; a second thread would only wait for a core
      record(sum, s, v, backend, compare(out, ref));
    }
  }
}

TEST(ConvSweep, DefaultPathAgainstFloat64) {
  c10::InferenceMode guard;
  const int threads_before = at::get_num_threads();
  const auto start = std::chrono::steady_clock::now();
  Summary sum;
  const auto shapes = sweep_shapes();
  for (size_t i = 0; i < shapes.size(); ++i) sweep_shape(sum, shapes[i], i);
  at::set_num_threads(threads_before);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  print_summary(sum, std::chrono::duration<double>(elapsed).count());

  // A sweep that never reached oneDNN would report a faulty stack as clean.
  if (at::hasMKLDNN() && at::globalContext().userEnabledMkldnn()) {
    EXPECT_GT(sum.onednn_fp32, 0) << "no fp32 convolution was routed to oneDNN";
    EXPECT_GT(sum.native_fp32, 0) << "no fp32 convolution took LibTorch's own path";
  }
  const char* strict = std::getenv("GD_CONV_SWEEP_STRICT");
  if (strict && std::string(strict) == "1") {
    EXPECT_EQ(sum.wrong, 0) << "wrong convolutions (strict mode)";
  }
}

}  // namespace
