// The direct convolution slots through cuDNN's convolution API (cudnn_cnn.h).
// Each problem (pass, shapes, geometry, dtype, math, alignment) gets its
// descriptors and algorithm once: cudnnFind*AlgorithmEx times the candidates
// on the real buffers (a host sync, once per problem) and the choice is
// cached. Strict f32 (TF32 off) keeps to FMA math and to the algorithms that
// sum products directly (no FFT, no Winograd), so results match the CPU's
// im2col + GEMM to rounding. Deterministic algorithms are preferred; a
// non-deterministic one (float atomics in cuDNN) is taken only when no
// deterministic one runs the problem. Batches too large for cuDNN's 32-bit
// sizes run in chunks.
#ifdef FM_HAVE_CUDNN
#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "check.h"
#include "cudnn_handle.h"
#include "fm/cuda/blas.h"
#include "fm/cuda/cuda.h"
#include "fm/factory.h"
#include "fm/kernels/conv.h"
#include "fm/tensor.h"

namespace fm::cuda {
namespace {

using kernels::ConvParams;

// Largest workspace the algorithm search offers (bytes): algorithms wanting
// more are passed over.
constexpr size_t kMaxWorkspace = size_t(512) << 20;

enum class Pass : uint8_t { forward, data, filter };

const char* slot_name(Pass p) {
  switch (p) {
    case Pass::forward: return "conv2d_forward";
    case Pass::data: return "conv2d_backward_data";
    case Pass::filter: return "conv2d_backward_filter";
  }
  return "conv2d";
}

// One cuDNN call's problem (a batch chunk): the plan cache's key.
struct Problem {
  Pass pass = Pass::forward;
  DType dtype = DType::f32;
  bool tf32 = false;
  int device = 0;
  int n = 0, c = 0, h = 0, w = 0;  // x [n, c, h, w]
  int k = 0, kh = 0, kw = 0;       // w [k, c / groups, kh, kw]
  int oh = 0, ow = 0;              // y [n, k, oh, ow]
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
  uint32_t align = 256;  // of the three buffers, in bytes: a cached algorithm must suit new ones
  bool operator==(const Problem&) const = default;
};

struct ProblemHash {
  size_t operator()(const Problem& p) const {
    size_t h = 0;
    auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>()(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
    mix(uint64_t(p.pass) | uint64_t(p.dtype) << 8 | uint64_t(p.tf32) << 16 | uint64_t(uint32_t(p.device)) << 32);
    for (int v : {p.n, p.c, p.h, p.w, p.k, p.kh, p.kw, p.oh, p.ow, p.stride_h, p.stride_w, p.pad_h, p.pad_w,
                  p.dilation_h, p.dilation_w, p.groups})
      mix(uint32_t(v));
    mix(p.align);
    return h;
  }
};

std::string describe(const Problem& p) {
  std::ostringstream os;
  os << slot_name(p.pass) << " (" << p.dtype << ", x [" << p.n << ", " << p.c << ", " << p.h << ", " << p.w
     << "], w [" << p.k << ", " << p.c / p.groups << ", " << p.kh << ", " << p.kw << "], y [" << p.n << ", " << p.k
     << ", " << p.oh << ", " << p.ow << "], stride " << p.stride_h << "x" << p.stride_w << ", padding " << p.pad_h
     << "x" << p.pad_w << ", dilation " << p.dilation_h << "x" << p.dilation_w << ", groups " << p.groups << ")";
  return os.str();
}

cudnnDataType_t data_type(DType t) {
  switch (t) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    case DType::f16: return CUDNN_DATA_HALF;
    default: error("conv2d (cuDNN): needs f32, bf16 or f16, got ", t);
  }
}

// f32 with TF32 off: FMA kernels only (cuDNN's default math allows TF32).
bool strict(const Problem& p) { return p.dtype == DType::f32 && !p.tf32; }

cudnnMathType_t math_type(const Problem& p) {
  if (p.dtype != DType::f32) return CUDNN_TENSOR_OP_MATH;  // f32 accumulation still (the descriptor's compute type)
  return p.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

// Algorithms that sum the products directly, as im2col + GEMM does.
bool direct_sum(Pass pass, int algo) {
  switch (pass) {
    case Pass::forward:
      return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
             algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM ||
             algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
    case Pass::data: return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    case Pass::filter:
      return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
             algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
  }
  return false;
}

// Descriptors and the chosen algorithm of one problem; immutable once built.
struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  int algo = 0;  // a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t, per the pass
  size_t workspace = 0;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

// The buffers of one call: x, w and y, whichever of them the pass writes.
struct Buffers {
  void* x = nullptr;
  void* w = nullptr;
  void* y = nullptr;
};

void make_descriptors(Plan& plan, const Problem& p, const std::string& what) {
  const cudnnDataType_t dt = data_type(p.dtype);
  cudnn_check(cudnnCreateTensorDescriptor(&plan.x), "cudnnCreateTensorDescriptor", what);
  cudnn_check(cudnnSetTensor4dDescriptor(plan.x, CUDNN_TENSOR_NCHW, dt, p.n, p.c, p.h, p.w),
              "cudnnSetTensor4dDescriptor (x)", what);
  cudnn_check(cudnnCreateTensorDescriptor(&plan.y), "cudnnCreateTensorDescriptor", what);
  cudnn_check(cudnnSetTensor4dDescriptor(plan.y, CUDNN_TENSOR_NCHW, dt, p.n, p.k, p.oh, p.ow),
              "cudnnSetTensor4dDescriptor (y)", what);
  cudnn_check(cudnnCreateFilterDescriptor(&plan.w), "cudnnCreateFilterDescriptor", what);
  cudnn_check(cudnnSetFilter4dDescriptor(plan.w, dt, CUDNN_TENSOR_NCHW, p.k, p.c / p.groups, p.kh, p.kw),
              "cudnnSetFilter4dDescriptor", what);
  cudnn_check(cudnnCreateConvolutionDescriptor(&plan.conv), "cudnnCreateConvolutionDescriptor", what);
  cudnn_check(cudnnSetConvolution2dDescriptor(plan.conv, p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dilation_h,
                                              p.dilation_w, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
              "cudnnSetConvolution2dDescriptor", what);
  cudnn_check(cudnnSetConvolutionGroupCount(plan.conv, p.groups), "cudnnSetConvolutionGroupCount", what);
  cudnn_check(cudnnSetConvolutionMathType(plan.conv, math_type(p)), "cudnnSetConvolutionMathType", what);
}

// The largest workspace any algorithm asks for, capped at kMaxWorkspace.
// Algorithms that do not support the problem report an error: skipped.
size_t search_workspace(cudnnHandle_t h, const Plan& plan, Pass pass) {
  size_t most = 0;
  auto consider = [&most](cudnnStatus_t st, size_t bytes) {
    if (st == CUDNN_STATUS_SUCCESS && bytes <= kMaxWorkspace) most = std::max(most, bytes);
  };
  size_t bytes = 0;
  switch (pass) {
    case Pass::forward:
      for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++a)
        consider(cudnnGetConvolutionForwardWorkspaceSize(h, plan.x, plan.w, plan.conv, plan.y,
                                                         cudnnConvolutionFwdAlgo_t(a), &bytes),
                 bytes);
      break;
    case Pass::data:
      for (int a = 0; a < CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT; ++a)
        consider(cudnnGetConvolutionBackwardDataWorkspaceSize(h, plan.w, plan.y, plan.conv, plan.x,
                                                              cudnnConvolutionBwdDataAlgo_t(a), &bytes),
                 bytes);
      break;
    case Pass::filter:
      for (int a = 0; a < CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT; ++a)
        consider(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, plan.x, plan.y, plan.conv, plan.w,
                                                                cudnnConvolutionBwdFilterAlgo_t(a), &bytes),
                 bytes);
      break;
  }
  return most;
}

// The fastest usable result (they come sorted by time), deterministic if any is.
template <class Perf>
void choose(Plan& plan, const Problem& p, const Perf* perf, int count, size_t workspace, const std::string& what) {
  int pick = -1, fallback = -1;
  for (int i = 0; i < count && pick < 0; ++i) {
    const Perf& r = perf[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > workspace) continue;
    if (strict(p) && (r.mathType == CUDNN_TENSOR_OP_MATH || r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION ||
                      !direct_sum(p.pass, int(r.algo))))
      continue;
    if (r.determinism == CUDNN_DETERMINISTIC) pick = i;
    else if (fallback < 0) fallback = i;
  }
  if (pick < 0) pick = fallback;
  if (pick < 0) error("cuDNN: no convolution algorithm runs ", what);
  plan.algo = int(perf[pick].algo);
  plan.workspace = perf[pick].memory;
}

// Times the algorithms on the call's buffers. The search overwrites the
// output, so an accumulating call searches on a scratch output.
void find_algorithm(Plan& plan, const Problem& p, cudnnHandle_t h, Buffers b, const Tensor& out, bool accumulate,
                    const std::string& what) {
  const Device dev = Device::cuda(p.device);
  Tensor scratch;
  if (accumulate) {
    scratch = empty(out.shape(), TensorOptions(out.dtype()).device(dev));
    (p.pass == Pass::forward ? b.y : p.pass == Pass::data ? b.x : b.w) = scratch.data_ptr();
  }
  size_t ws_bytes = search_workspace(h, plan, p.pass);
  Tensor ws;
  try {
    ws = empty({int64_t(std::max<size_t>(ws_bytes, 1))}, TensorOptions(DType::u8).device(dev));
  } catch (const Error&) {
    ws_bytes = 0;  // memory is short: search among the algorithms that need none
    ws = empty({1}, TensorOptions(DType::u8).device(dev));
  }
  int found = 0;
  switch (p.pass) {
    case Pass::forward: {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      cudnn_check(cudnnFindConvolutionForwardAlgorithmEx(h, plan.x, b.x, plan.w, b.w, plan.conv, plan.y, b.y,
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf,
                                                         ws.data_ptr(), ws_bytes),
                  "cudnnFindConvolutionForwardAlgorithmEx", what);
      choose(plan, p, perf, found, ws_bytes, what);
      break;
    }
    case Pass::data: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      cudnn_check(cudnnFindConvolutionBackwardDataAlgorithmEx(h, plan.w, b.w, plan.y, b.y, plan.conv, plan.x, b.x,
                                                              CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf,
                                                              ws.data_ptr(), ws_bytes),
                  "cudnnFindConvolutionBackwardDataAlgorithmEx", what);
      choose(plan, p, perf, found, ws_bytes, what);
      break;
    }
    case Pass::filter: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      cudnn_check(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, plan.x, b.x, plan.y, b.y, plan.conv, plan.w, b.w,
                                                                CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found,
                                                                perf, ws.data_ptr(), ws_bytes),
                  "cudnnFindConvolutionBackwardFilterAlgorithmEx", what);
      choose(plan, p, perf, found, ws_bytes, what);
      break;
    }
  }
}

const Plan& plan_for(const Problem& p, cudnnHandle_t h, const Buffers& b, const Tensor& out, bool accumulate,
                     const std::string& what) {
  static std::mutex mu;
  static auto* cache = new std::unordered_map<Problem, std::unique_ptr<Plan>, ProblemHash>();  // never freed
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(p);
  if (it != cache->end()) return *it->second;
  auto plan = std::make_unique<Plan>();
  make_descriptors(*plan, p, what);
  find_algorithm(*plan, p, h, b, out, accumulate, what);
  return *cache->emplace(p, std::move(plan)).first->second;
}

// out = alpha * op + beta * out, with the plan's algorithm.
void run(const Plan& plan, const Problem& p, cudnnHandle_t h, const Buffers& b, float beta, const std::string& what) {
  Tensor ws;
  void* ws_ptr = nullptr;
  if (plan.workspace > 0) {
    ws = empty({int64_t(plan.workspace)}, TensorOptions(DType::u8).device(Device::cuda(p.device)));
    ws_ptr = ws.data_ptr();
  }
  const float alpha = 1.0f;
  switch (p.pass) {
    case Pass::forward:
      cudnn_check(cudnnConvolutionForward(h, &alpha, plan.x, b.x, plan.w, b.w, plan.conv,
                                          cudnnConvolutionFwdAlgo_t(plan.algo), ws_ptr, plan.workspace, &beta, plan.y,
                                          b.y),
                  "cudnnConvolutionForward", what);
      break;
    case Pass::data:
      cudnn_check(cudnnConvolutionBackwardData(h, &alpha, plan.w, b.w, plan.y, b.y, plan.conv,
                                               cudnnConvolutionBwdDataAlgo_t(plan.algo), ws_ptr, plan.workspace,
                                               &beta, plan.x, b.x),
                  "cudnnConvolutionBackwardData", what);
      break;
    case Pass::filter:
      cudnn_check(cudnnConvolutionBackwardFilter(h, &alpha, plan.x, b.x, plan.y, b.y, plan.conv,
                                                 cudnnConvolutionBwdFilterAlgo_t(plan.algo), ws_ptr, plan.workspace,
                                                 &beta, plan.w, b.w),
                  "cudnnConvolutionBackwardFilter", what);
      break;
  }
}

int to_int(int64_t v, const char* slot, const char* what) {
  if (v < 0 || v > INT_MAX) error(slot, ": ", what, " ", v, " is beyond cuDNN's 32-bit sizes");
  return int(v);
}

uint32_t alignment(const Buffers& b) {
  uint64_t bits = 256;
  for (const void* ptr : {b.x, b.w, b.y}) bits |= uint64_t(reinterpret_cast<uintptr_t>(ptr));
  return uint32_t(bits & (~bits + 1));  // lowest set bit
}

// Checks the slot's contract (fm/kernels/conv.h) and runs the pass: x, w and
// y as in the forward; the pass writes y (forward), x (data) or w (filter).
void convolve(Pass pass, const ConvParams& cp, const Tensor& x, const Tensor& w, const Tensor& y) {
  const char* slot = slot_name(pass);
  for (const Tensor* t : {&x, &w, &y}) {
    if (t->dim() != 4 || !t->is_contiguous())
      error(slot, ": needs contiguous 4-D tensors, got x ", x.shape(), ", w ", w.shape(), ", y ", y.shape());
    if (t->dtype() != x.dtype() || t->device() != x.device())
      error(slot, ": x, w and y must share dtype and device, got ", x.dtype(), " ", x.device(), ", ", w.dtype(), " ",
            w.device(), ", ", y.dtype(), " ", y.device());
  }
  data_type(x.dtype());  // rejects the others
  const Tensor& out = pass == Pass::forward ? y : pass == Pass::data ? x : w;
  const int64_t batch = x.size(0);
  if (y.size(0) != batch || y.size(1) != w.size(0) || cp.groups < 1 || x.size(1) != w.size(1) * cp.groups ||
      w.size(0) % cp.groups != 0)
    error(slot, ": shapes x ", x.shape(), ", w ", w.shape(), ", y ", y.shape(), " do not match groups ", cp.groups);
  if (out.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0 || y.numel() == 0) {  // an empty sum
    if (!cp.accumulate) FM_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), current_stream()));
    return;
  }

  Problem p;
  p.pass = pass;
  p.dtype = x.dtype();
  p.tf32 = x.dtype() == DType::f32 && allow_tf32();
  p.device = x.device().index;
  p.c = to_int(x.size(1), slot, "channel count"), p.h = to_int(x.size(2), slot, "height");
  p.w = to_int(x.size(3), slot, "width");
  p.k = to_int(w.size(0), slot, "output channel count"), p.kh = to_int(w.size(2), slot, "kernel height");
  p.kw = to_int(w.size(3), slot, "kernel width");
  p.oh = to_int(y.size(2), slot, "output height"), p.ow = to_int(y.size(3), slot, "output width");
  p.stride_h = to_int(cp.stride_h, slot, "stride"), p.stride_w = to_int(cp.stride_w, slot, "stride");
  p.pad_h = to_int(cp.pad_h, slot, "padding"), p.pad_w = to_int(cp.pad_w, slot, "padding");
  p.dilation_h = to_int(cp.dilation_h, slot, "dilation"), p.dilation_w = to_int(cp.dilation_w, slot, "dilation");
  p.groups = to_int(cp.groups, slot, "groups");
  to_int(w.numel(), slot, "weight size");
  const int64_t oh = (x.size(2) + 2 * cp.pad_h - cp.dilation_h * (w.size(2) - 1) - 1) / cp.stride_h + 1;
  const int64_t ow = (x.size(3) + 2 * cp.pad_w - cp.dilation_w * (w.size(3) - 1) - 1) / cp.stride_w + 1;
  if (oh != y.size(2) || ow != y.size(3))
    error(slot, ": y ", y.shape(), " is not the output of x ", x.shape(), " and w ", w.shape(), " (expected ", oh,
          "x", ow, ")");

  // Images per call so that every tensor stays within 32-bit element counts.
  const int64_t x_image = x.numel() / batch, y_image = y.numel() / batch;
  const int64_t chunk = std::min<int64_t>(batch, INT_MAX / std::max(x_image, y_image));
  if (chunk < 1) error(slot, ": one image of x ", x.shape(), " or y ", y.shape(), " is beyond cuDNN's 32-bit sizes");
  const int64_t es = int64_t(x.itemsize());

  CudnnLease lease(p.device);
  for (int64_t n0 = 0; n0 < batch; n0 += chunk) {
    p.n = int(std::min(chunk, batch - n0));
    Buffers b{static_cast<char*>(x.data_ptr()) + n0 * x_image * es, w.data_ptr(),
              static_cast<char*>(y.data_ptr()) + n0 * y_image * es};
    p.align = alignment(b);
    const std::string what = describe(p);
    // The filter gradient sums over the chunks.
    const bool accumulate = cp.accumulate || (pass == Pass::filter && n0 > 0);
    const Plan& plan = plan_for(p, lease.get(), b, out, accumulate, what);
    run(plan, p, lease.get(), b, accumulate ? 1.0f : 0.0f, what);
  }
}

void conv2d_forward(const ConvParams& p, const Tensor& y, const Tensor& x, const Tensor& w) {
  convolve(Pass::forward, p, x, w, y);
}

void conv2d_backward_data(const ConvParams& p, const Tensor& dx, const Tensor& dy, const Tensor& w) {
  convolve(Pass::data, p, dx, w, dy);
}

void conv2d_backward_filter(const ConvParams& p, const Tensor& dw, const Tensor& x, const Tensor& dy) {
  convolve(Pass::filter, p, x, dw, dy);
}

}  // namespace

FM_REGISTER_KERNEL(kernels::conv2d_forward, DeviceType::cuda, conv2d_forward);
FM_REGISTER_KERNEL(kernels::conv2d_backward_data, DeviceType::cuda, conv2d_backward_data);
FM_REGISTER_KERNEL(kernels::conv2d_backward_filter, DeviceType::cuda, conv2d_backward_filter);

}  // namespace fm::cuda
#endif  // FM_HAVE_CUDNN
