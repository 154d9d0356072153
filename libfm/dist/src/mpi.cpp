// The MPI communicator over MPI_COMM_WORLD. Every collective is issued
// nonblocking (MPI_Iallreduce, MPI_Ibcast, ...) and completed by polling
// MPI_Test against a deadline, so a peer that died or hangs turns into an
// error on this rank (then MPI_Abort ends the job) rather than a hang.
// Device tensors are staged through host copies.
#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "fm/dist/communicator.h"
#include "fm/error.h"
#include "fm/factory.h"
#include "wait.h"

namespace fm::dist {
namespace {

std::string mpi_message(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, buf, &len);
  return std::string(buf, size_t(len));
}

void check(int code, const std::string& what) {
  if (code != MPI_SUCCESS) error("dist: ", what, " failed: ", mpi_message(code));
}

MPI_Datatype reduce_type(DType t, const char* op) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    default: error("dist::", op, ": MPI reduces f32, f64, i32 and i64 tensors, got ", name(t));
  }
}

// Divides a host tensor by n in place (average = sum / world size).
void divide(const Tensor& t, int n) {
  if (t.dtype() == DType::f32) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] /= float(n);
  } else if (t.dtype() == DType::f64) {
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] /= double(n);
  } else {
    error("dist: average needs a floating tensor, got ", name(t.dtype()));
  }
}

class MpiWork : public Work {
 public:
  MpiWork(std::string what, double timeout_s, int rank, int world, std::function<void()> finish)
      : what_(std::move(what)), timeout_s_(timeout_s), rank_(rank), world_(world), finish_(std::move(finish)) {}
  MPI_Request request = MPI_REQUEST_NULL;

  bool done() override {
    if (finished_) return true;
    int flag = 0;
    check(MPI_Test(&request, &flag, MPI_STATUS_IGNORE), what_);
    if (flag) {
      finished_ = true;
      if (finish_) finish_();
    }
    return finished_;
  }

  void wait() override {
    if (!detail::poll_until([this] { return done(); }, timeout_s_))
      error("dist: ", what_, " did not complete within ", timeout_s_, " s on rank ", rank_, " of ", world_,
            " (another rank died, hangs, or called a different collective)");
  }

 private:
  std::string what_;
  double timeout_s_;
  int rank_, world_;
  std::function<void()> finish_;
  bool finished_ = false;
};

// A host tensor holding t's values (t itself when it is already one).
Tensor on_host(const Tensor& t) { return t.device().is_cpu() ? t : t.to(Device::cpu()); }

class Mpi : public Communicator {
 public:
  Mpi() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
      owns_ = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
  }
  ~Mpi() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "mpi"; }

  std::shared_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    detail::check_contiguous(t, "all_reduce");
    const MPI_Datatype type = reduce_type(t.dtype(), "all_reduce");
    const Tensor host = on_host(t);
    auto finish = [t, host, op, n = world_] {
      if (op == ReduceOp::average) divide(host, n);
      if (!t.device().is_cpu()) Tensor(t).copy_(host);
    };
    auto w = std::make_shared<MpiWork>(describe("all_reduce", t), timeout_s, rank_, world_, finish);
    check(MPI_Iallreduce(MPI_IN_PLACE, host.data_ptr(), int(checked_count(t)), type, MPI_SUM, MPI_COMM_WORLD,
                         &w->request),
          "all_reduce");
    return w;
  }

  void broadcast(const Tensor& t, int root) override {
    detail::check_contiguous(t, "broadcast");
    if (root < 0 || root >= world_) error("dist::broadcast: root ", root, " is outside a world of ", world_);
    const Tensor host = on_host(t);
    MpiWork w(describe("broadcast", t), timeout_s, rank_, world_, [&] {
      if (!t.device().is_cpu()) Tensor(t).copy_(host);
    });
    check(MPI_Ibcast(host.data_ptr(), int(checked_bytes(t)), MPI_BYTE, root, MPI_COMM_WORLD, &w.request), "broadcast");
    w.wait();
  }

  Tensor all_gather(const Tensor& t) override {
    detail::check_contiguous(t, "all_gather");
    const Tensor host = on_host(t);
    std::vector<int64_t> dims = t.shape().vec();
    if (dims.empty()) dims = {1};
    dims[0] *= world_;
    Tensor out = empty(Shape(dims), TensorOptions(t.dtype()));
    MpiWork w(describe("all_gather", t), timeout_s, rank_, world_, nullptr);
    check(MPI_Iallgather(host.data_ptr(), int(checked_bytes(t)), MPI_BYTE, out.data_ptr(), int(checked_bytes(t)),
                         MPI_BYTE, MPI_COMM_WORLD, &w.request),
          "all_gather");
    w.wait();
    return t.device().is_cpu() ? out : out.to(t.device());
  }

  Tensor reduce_scatter(const Tensor& t, ReduceOp op) override {
    detail::check_contiguous(t, "reduce_scatter");
    if (t.dim() == 0 || t.size(0) % world_ != 0)
      error("dist::reduce_scatter: dim 0 of ", t.shape(), " must be a multiple of the world size ", world_);
    const MPI_Datatype type = reduce_type(t.dtype(), "reduce_scatter");
    const Tensor host = on_host(t);
    std::vector<int64_t> dims = t.shape().vec();
    dims[0] /= world_;
    Tensor out = empty(Shape(dims), TensorOptions(t.dtype()));
    MpiWork w(describe("reduce_scatter", t), timeout_s, rank_, world_, nullptr);
    check(MPI_Ireduce_scatter_block(host.data_ptr(), out.data_ptr(), int(checked_count(out)), type, MPI_SUM,
                                    MPI_COMM_WORLD, &w.request),
          "reduce_scatter");
    w.wait();
    if (op == ReduceOp::average) divide(out, world_);
    return t.device().is_cpu() ? out : out.to(t.device());
  }

  void barrier() override {
    MpiWork w("barrier", timeout_s, rank_, world_, nullptr);
    check(MPI_Ibarrier(MPI_COMM_WORLD, &w.request), "barrier");
    w.wait();
  }

  void abort(int code) override { MPI_Abort(MPI_COMM_WORLD, code); }

 private:
  static int64_t checked_count(const Tensor& t) {
    if (t.numel() > (int64_t(1) << 31) - 1) error("dist: tensors above 2^31 elements are not supported by MPI counts");
    return t.numel();
  }
  static int64_t checked_bytes(const Tensor& t) {
    if (int64_t(t.nbytes()) > (int64_t(1) << 31) - 1) error("dist: tensors above 2 GiB are not supported by MPI counts");
    return int64_t(t.nbytes());
  }
  std::string describe(const char* op, const Tensor& t) const {
    return std::string(op) + " of " + t.shape().str() + " " + name(t.dtype());
  }

  int rank_ = 0, world_ = 1;
  bool owns_ = false;
};

}  // namespace

std::shared_ptr<Communicator> mpi_world() {
  static std::shared_ptr<Communicator> world = std::make_shared<Mpi>();
  return world;
}
bool mpi_available() { return true; }

}  // namespace fm::dist
