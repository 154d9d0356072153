#pragma once
// fm serve's model worker: one thread owns the model and runs every request,
// fed by a bounded queue. Waiting completions join the running batch between
// decoding steps (continuous batching, up to max_batch sequences in one
// batched forward) when the run is an lm; images, audio and a mixed run's
// text run one request at a time. First come, first served: a request of
// another kind at the head of the queue waits for the batch to drain, and
// completions behind it wait for it.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fm/tasks/batched_sampling.h"
#include "requests.h"
#include "served_model.h"

namespace fm::app::serve {

using Clock = std::chrono::steady_clock;

// One request on its way through the queue and the model. The request's
// thread waits on cv; the worker fills the outputs under m.
struct Job {
  enum class Kind { completion, image, audio };
  Kind kind = Kind::completion;
  Clock::time_point deadline;
  // Inputs.
  std::vector<int32_t> prompt;  // completion: token ids
  tasks::SamplingOptions sampling;
  uint64_t seed = 0;
  bool follows_tokens = false;  // completion: woken at every token (streamed, or stop strings to watch)
  ImageRequest image;
  AudioRequest audio;
  // Outputs.
  std::mutex m;
  std::condition_variable cv;
  std::vector<int32_t> tokens;  // completion: so far, without the stop token
  std::string bytes;            // image: PNG; audio: WAV
  std::string finish_reason;    // completion: "stop" (the stop token) or "length"
  bool done = false;
  int error_status = 0;  // set: the request failed with this HTTP status
  std::string error_message;
  std::atomic<bool> cancelled{false};  // the client has gone, or its time ran out
};

class Worker {
 public:
  Worker(ServedModel& model, int64_t max_batch, int64_t queue_limit, int threads);
  ~Worker();  // fails what is still queued or running, then stops the thread

  // Queues a job; false when the queue is full.
  bool submit(const std::shared_ptr<Job>& job);
  // The request no longer wants its result: taken out of the queue, or out
  // of the batch at the next step.
  void cancel(const std::shared_ptr<Job>& job);
  int64_t waiting() const;
  int64_t running() const { return running_count_.load(); }
  // Batched decoding so far: steps taken, and the most sequences one step extended.
  int64_t batch_steps() const { return batch_steps_.load(); }
  int64_t largest_batch() const { return largest_batch_.load(); }

 private:
  void loop();
  void run_alone(Job& job);
  void step_batch();
  void check_running();

  ServedModel& model_;
  const int64_t max_batch_, queue_limit_;
  const int threads_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  // The worker thread's own state.
  std::optional<tasks::BatchedSampler> batch_;
  std::map<int64_t, std::shared_ptr<Job>> in_batch_;  // sampler sequence id -> job
  std::atomic<int64_t> running_count_{0};
  std::atomic<int64_t> batch_steps_{0}, largest_batch_{0};
  std::thread thread_;
};

}  // namespace fm::app::serve
