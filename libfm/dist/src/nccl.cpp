// The NCCL communicator: collectives on device tensors, on a stream of its
// own that first waits for the compute stream's work (an event), so the
// reductions of gradient buckets overlap the rest of backward. Work::wait
// polls the completion event and ncclCommGetAsyncError against the timeout;
// on expiry the communicator is aborted (ncclCommAbort) and an error names
// the collective. Host tensors are staged through the device. Ranks find
// each other through MPI (the unique id is broadcast), or alone at world 1.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <functional>
#include <cstdlib>

#include "fm/cuda/cuda.h"
#include "fm/dist/communicator.h"
#include "fm/dist/launch.h"
#include "fm/error.h"
#include "fm/factory.h"
#include "wait.h"

namespace fm::dist {
namespace {

void check_nccl(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess && r != ncclInProgress) error("dist: NCCL ", what, " failed: ", ncclGetErrorString(r));
}
void check_cuda(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) error("dist: ", what, ": ", cudaGetErrorString(e));
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: case DType::b8: return ncclUint8;
  }
  return ncclFloat32;
}

class NcclWork : public Work {
 public:
  NcclWork(ncclComm_t comm, std::string what, double timeout_s, Tensor keep, std::function<void()> finish)
      : comm_(comm), what_(std::move(what)), timeout_s_(timeout_s), keep_(std::move(keep)), finish_(std::move(finish)) {
    check_cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~NcclWork() override { cudaEventDestroy(done_); }
  cudaEvent_t event() const { return done_; }

  bool done() override {
    if (finished_) return true;
    const cudaError_t e = cudaEventQuery(done_);
    if (e == cudaSuccess) {
      finished_ = true;
      if (finish_) finish_();
      return true;
    }
    if (e != cudaErrorNotReady) check_cuda(e, what_);
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    check_nccl(async, what_);
    return false;
  }

  void wait() override {
    if (detail::poll_until([this] { return done(); }, timeout_s_)) return;
    ncclCommAbort(comm_);  // unblocks the kernels of this communicator
    error("dist: ", what_, " did not complete within ", timeout_s_,
          " s (NCCL; another rank died, hangs, or called a different collective)");
  }

 private:
  ncclComm_t comm_;
  std::string what_;
  double timeout_s_;
  Tensor keep_;  // alive until the collective is done
  std::function<void()> finish_;
  cudaEvent_t done_ = nullptr;
  bool finished_ = false;
};

class Nccl : public Communicator {
 public:
  Nccl(int device, std::shared_ptr<Communicator> bootstrap) : device_(device), bootstrap_(std::move(bootstrap)) {
    rank_ = bootstrap_ ? bootstrap_->rank() : 0;
    world_ = bootstrap_ ? bootstrap_->world_size() : 1;
    ncclUniqueId id;
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    if (bootstrap_) {
      const Tensor bytes = empty({int64_t(sizeof id)}, TensorOptions(DType::u8));
      std::memcpy(bytes.data_ptr(), &id, sizeof id);
      bootstrap_->broadcast(bytes, 0);
      std::memcpy(&id, bytes.data_ptr(), sizeof id);
    }
    cuda::set_device(device_);
    check_nccl(ncclCommInitRank(&comm_, world_, id, rank_), "ncclCommInitRank");
    stream_ = std::make_unique<cuda::Stream>();
  }
  ~Nccl() override {
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "nccl"; }

  std::shared_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    const Tensor d = on_device(t, "all_reduce");
    auto w = launch("all_reduce of " + t.shape().str(), d, back_to(t, d));
    check_nccl(ncclAllReduce(d.data_ptr(), d.data_ptr(), size_t(d.numel()), nccl_type(d.dtype()),
                             op == ReduceOp::average ? ncclAvg : ncclSum, comm_, stream_->handle()),
               "all_reduce");
    return finish(w);
  }

  void broadcast(const Tensor& t, int root) override {
    if (root < 0 || root >= world_) error("dist::broadcast: root ", root, " is outside a world of ", world_);
    const Tensor d = on_device(t, "broadcast");
    auto w = launch("broadcast of " + t.shape().str(), d, back_to(t, d));
    check_nccl(ncclBroadcast(d.data_ptr(), d.data_ptr(), d.nbytes(), ncclUint8, root, comm_, stream_->handle()),
               "broadcast");
    finish(w)->wait();
  }

  Tensor all_gather(const Tensor& t) override {
    const Tensor d = on_device(t, "all_gather");
    std::vector<int64_t> dims = t.shape().vec();
    if (dims.empty()) dims = {1};
    dims[0] *= world_;
    Tensor out = empty(Shape(dims), TensorOptions(t.dtype()).device(Device::cuda(device_)));
    auto w = launch("all_gather of " + t.shape().str(), d, nullptr);
    check_nccl(ncclAllGather(d.data_ptr(), out.data_ptr(), d.nbytes(), ncclUint8, comm_, stream_->handle()),
               "all_gather");
    finish(w)->wait();
    return t.device().is_cpu() ? out.to(Device::cpu()) : out;
  }

  Tensor reduce_scatter(const Tensor& t, ReduceOp op) override {
    if (t.dim() == 0 || t.size(0) % world_ != 0)
      error("dist::reduce_scatter: dim 0 of ", t.shape(), " must be a multiple of the world size ", world_);
    const Tensor d = on_device(t, "reduce_scatter");
    std::vector<int64_t> dims = t.shape().vec();
    dims[0] /= world_;
    Tensor out = empty(Shape(dims), TensorOptions(t.dtype()).device(Device::cuda(device_)));
    auto w = launch("reduce_scatter of " + t.shape().str(), d, nullptr);
    check_nccl(ncclReduceScatter(d.data_ptr(), out.data_ptr(), size_t(out.numel()), nccl_type(d.dtype()),
                                 op == ReduceOp::average ? ncclAvg : ncclSum, comm_, stream_->handle()),
               "reduce_scatter");
    finish(w)->wait();
    return t.device().is_cpu() ? out.to(Device::cpu()) : out;
  }

  void barrier() override {
    const Tensor one = ones({1}, TensorOptions(DType::f32).device(Device::cuda(device_)));
    all_reduce(one, ReduceOp::sum);
  }

  void abort(int code) override {
    ncclCommAbort(comm_);
    comm_ = nullptr;
    if (bootstrap_) bootstrap_->abort(code);
    std::_Exit(code);
  }

 private:
  Tensor on_device(const Tensor& t, const char* op) const {
    detail::check_contiguous(t, op);
    if (t.device().is_cpu()) return t.to(Device::cuda(device_));
    if (t.device() != Device::cuda(device_))
      error("dist::", op, ": the NCCL communicator of cuda:", device_, " got a tensor on ", t.device().str());
    return t;
  }
  // For a host tensor staged on the device: copy the result back when done.
  static std::function<void()> back_to(const Tensor& t, const Tensor& d) {
    if (!t.device().is_cpu()) return nullptr;
    return [t, d] { Tensor(t).copy_(d); };
  }
  // The communicator's stream waits for the work queued so far on the compute stream.
  std::shared_ptr<NcclWork> launch(const std::string& what, const Tensor& keep, std::function<void()> after) {
    cudaEvent_t ready;
    check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(ready, cuda::current_stream()), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_->handle(), ready, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);  // released once the wait is satisfied
    return std::make_shared<NcclWork>(comm_, what, timeout_s, keep, std::move(after));
  }
  std::shared_ptr<Work> finish(const std::shared_ptr<NcclWork>& w) {
    check_cuda(cudaEventRecord(w->event(), stream_->handle()), "cudaEventRecord");
    return w;
  }

  int device_;
  std::shared_ptr<Communicator> bootstrap_;
  int rank_ = 0, world_ = 1;
  ncclComm_t comm_ = nullptr;
  std::unique_ptr<cuda::Stream> stream_;
};

}  // namespace

std::shared_ptr<Communicator> nccl_world(int device) {
  const Launch l = detect_launch();
  std::shared_ptr<Communicator> bootstrap;
  if (l.world_size > 1) bootstrap = world();  // MPI, or an error saying what is missing
  return std::make_shared<Nccl>(device, bootstrap);
}
bool nccl_available() { return true; }

}  // namespace fm::dist
