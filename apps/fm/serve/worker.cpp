#include "worker.h"

#include <algorithm>
#include <cstdio>

#include "api_error.h"
#include "fm/runtime.h"

namespace fm::app::serve {
namespace {

void fail(Job& job, int status, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(job.m);
    if (job.done) return;
    job.error_status = status;
    job.error_message = message;
    job.done = true;
  }
  job.cv.notify_all();
}

void finish(Job& job, const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(job.m);
    job.finish_reason = reason;
    job.done = true;
  }
  job.cv.notify_all();
}

const char* kTimedOut = "the request ran out of time (--timeout-s)";

}  // namespace

Worker::Worker(ServedModel& model, int64_t max_batch, int64_t queue_limit, int threads)
    : model_(model), max_batch_(max_batch), queue_limit_(queue_limit), threads_(threads) {
  if (model_.batchable()) batch_.emplace(*model_.batchable());
  thread_ = std::thread([this] { loop(); });
}

Worker::~Worker() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& job : queue_) fail(*job, 503, "the server is shutting down");
  for (auto& [id, job] : in_batch_) fail(*job, 503, "the server is shutting down");
}

bool Worker::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> lock(m_);
    if (int64_t(queue_.size()) >= queue_limit_) return false;
    queue_.push_back(job);
  }
  cv_.notify_all();
  return true;
}

void Worker::cancel(const std::shared_ptr<Job>& job) {
  job->cancelled = true;
  std::lock_guard<std::mutex> lock(m_);
  queue_.erase(std::remove(queue_.begin(), queue_.end(), job), queue_.end());
}

int64_t Worker::waiting() const {
  std::lock_guard<std::mutex> lock(m_);
  return int64_t(queue_.size());
}

void Worker::loop() {
  // OpenMP's thread count is per calling thread: set it on the one that runs the model.
  if (threads_ > 0) set_num_threads(threads_);
  for (;;) {
    std::shared_ptr<Job> alone;
    {
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !in_batch_.empty(); });
      if (stop_) return;
      // Waiting completions join the batch while it has room.
      while (batch_ && !queue_.empty() && queue_.front()->kind == Job::Kind::completion &&
             int64_t(in_batch_.size()) < max_batch_) {
        std::shared_ptr<Job> job = queue_.front();
        queue_.pop_front();
        if (job->cancelled) continue;
        if (Clock::now() > job->deadline) {
          fail(*job, 504, kTimedOut);
          continue;
        }
        try {
          in_batch_[batch_->add(job->prompt, job->sampling, job->seed)] = job;
        } catch (const std::exception& e) {
          fail(*job, 500, e.what());
        }
      }
      if (in_batch_.empty() && !queue_.empty()) {
        alone = queue_.front();
        queue_.pop_front();
      }
      running_count_ = int64_t(in_batch_.size()) + (alone ? 1 : 0);
    }
    if (alone) {
      if (!alone->cancelled) run_alone(*alone);
      running_count_ = 0;
    } else if (!in_batch_.empty()) {
      step_batch();
      running_count_ = int64_t(in_batch_.size());
    }
  }
}

void Worker::run_alone(Job& job) {
  if (Clock::now() > job.deadline) return fail(job, 504, kTimedOut);
  try {
    switch (job.kind) {
      case Job::Kind::completion: {
        std::vector<int32_t> out = model_.complete(job.prompt, job.sampling, job.seed);
        const bool stopped = !out.empty() && out.back() == job.sampling.stop_token;
        if (stopped) out.pop_back();
        {
          std::lock_guard<std::mutex> lock(job.m);
          job.tokens = std::move(out);
        }
        return finish(job, stopped ? "stop" : "length");
      }
      case Job::Kind::image: {
        std::string png = model_.png(job.image);
        {
          std::lock_guard<std::mutex> lock(job.m);
          job.bytes = std::move(png);
        }
        return finish(job, "");
      }
      case Job::Kind::audio: {
        std::string wav = model_.wav(job.audio);
        {
          std::lock_guard<std::mutex> lock(job.m);
          job.bytes = std::move(wav);
        }
        return finish(job, "");
      }
    }
  } catch (const ApiError& e) {
    fail(job, e.status, e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fm serve: %s\n", e.what());
    fail(job, 500, e.what());
  }
}

void Worker::step_batch() {
  std::vector<tasks::BatchedSampler::Token> tokens;
  ++batch_steps_;
  largest_batch_ = std::max(largest_batch_.load(), int64_t(in_batch_.size()));
  try {
    tokens = batch_->step();
  } catch (const std::exception& e) {  // the batch's state is unknown: fail it and start afresh
    std::fprintf(stderr, "fm serve: %s\n", e.what());
    for (auto& [id, job] : in_batch_) fail(*job, 500, e.what());
    in_batch_.clear();
    batch_.emplace(*model_.batchable());
    return;
  }
  for (const auto& t : tokens) {
    const auto it = in_batch_.find(t.id);
    Job& job = *it->second;
    const bool stop = t.last && t.token == job.sampling.stop_token;
    if (!stop) {
      std::lock_guard<std::mutex> lock(job.m);
      job.tokens.push_back(t.token);
    }
    if (t.last) {
      finish(job, stop ? "stop" : "length");
      in_batch_.erase(it);
    } else if (job.follows_tokens) {
      job.cv.notify_all();
    }
  }
  check_running();
}

// Sequences whose client has gone or whose time is up leave the batch.
void Worker::check_running() {
  const Clock::time_point now = Clock::now();
  for (auto it = in_batch_.begin(); it != in_batch_.end();) {
    Job& job = *it->second;
    if (job.cancelled || now > job.deadline) {
      if (!job.cancelled) fail(job, 504, kTimedOut);
      batch_->remove(it->first);
      it = in_batch_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace fm::app::serve
