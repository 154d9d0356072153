#include "routes.h"

#include <httplib.h>

#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "api_error.h"
#include "page.h"
#include "requests.h"
#include "text_stream.h"

namespace fm::app::serve {
namespace {

using json = nlohmann::json;

// Model text may end in a cut UTF-8 character: dump it replaced, never throw.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& param = "") {
  res.status = status;
  res.set_content(error_body(status, message, param), "application/json");
}

// Seeds of requests that name none, and completion ids.
uint64_t random_u64() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return rng();
}

const char* kTimedOut = "the request ran out of time (--timeout-s)";

// Waits for a job that delivers all at once (an image, a clip); throws its error.
void wait_done(Worker& worker, const std::shared_ptr<Job>& job) {
  std::unique_lock<std::mutex> lock(job->m);
  if (!job->cv.wait_until(lock, job->deadline, [&] { return job->done; })) {
    lock.unlock();
    worker.cancel(job);
    throw ApiError(504, kTimedOut);
  }
  if (job->error_status) throw ApiError(job->error_status, job->error_message);
}

struct Outcome {
  std::string finish_reason;  // "stop" or "length"; empty when the client went away
  int64_t tokens = 0;         // completion tokens used
  int error_status = 0;
  std::string error_message;
};

// Follows a completion as the worker extends it: each piece of final text
// goes to on_text (which returns false when the client has gone). Ends at the
// job's end, at a stop string, or at the deadline.
Outcome follow(Worker& worker, const std::shared_ptr<Job>& job, TextStream& text,
               const std::function<bool(const std::string&)>& on_text) {
  Outcome out;
  size_t seen = 0;
  for (;;) {
    std::vector<int32_t> fresh;
    bool done = false;
    {
      std::unique_lock<std::mutex> lock(job->m);
      if (!job->cv.wait_until(lock, job->deadline, [&] { return job->done || job->tokens.size() > seen; })) {
        lock.unlock();
        worker.cancel(job);
        return {"", out.tokens, 504, kTimedOut};
      }
      fresh.assign(job->tokens.begin() + long(seen), job->tokens.end());
      seen = job->tokens.size();
      done = job->done;
      out.finish_reason = job->finish_reason;
      out.error_status = job->error_status;
      out.error_message = job->error_message;
    }
    for (int32_t t : fresh) {
      ++out.tokens;
      const std::string piece = text.push(t);
      if (!piece.empty() && !on_text(piece)) {
        worker.cancel(job);
        return {"", out.tokens, 0, ""};
      }
      if (text.stopped()) {
        worker.cancel(job);
        return {"stop", out.tokens, 0, ""};
      }
    }
    if (done) {
      const std::string rest = out.error_status ? "" : text.finish();
      if (!rest.empty()) on_text(rest);
      return out;
    }
  }
}

// A completion's answer: OpenAI's fields around one choice, and the usage
// once it is known (tokens >= 0).
struct Reply {
  json head;
  int64_t prompt_tokens = 0;
  json with(const std::string& text, const std::string& finish_reason = "", int64_t tokens = -1) const {
    json j = head;
    j["choices"] = json::array({{{"text", text},
                                 {"index", 0},
                                 {"logprobs", nullptr},
                                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}}});
    if (tokens >= 0)
      j["usage"] = {{"prompt_tokens", prompt_tokens},
                    {"completion_tokens", tokens},
                    {"total_tokens", prompt_tokens + tokens}};
    return j;
  }
};

class Api {
 public:
  Api(ServedModel& model, Worker& worker, const RouteOptions& o) : model_(model), worker_(worker), o_(o) {}

  void health(httplib::Response& res) {
    json endpoints = json::array();
    if (model_.serves_text()) endpoints.push_back("completions");
    if (model_.serves_images()) endpoints.push_back("images");
    if (model_.serves_audio()) endpoints.push_back("audio");
    const json j = {{"status", "ok"},
                    {"model", model_.name()},
                    {"kind", model_.kind()},
                    {"step", model_.step()},
                    {"endpoints", endpoints},
                    {"queue", worker_.waiting()},
                    {"running", worker_.running()},
                    {"batch_steps", worker_.batch_steps()},
                    {"largest_batch", worker_.largest_batch()}};
    res.set_content(dump(j), "application/json");
  }

  void completions(const std::string& body, httplib::Response& res) {
    if (!model_.serves_text()) not_served("/v1/completions");
    const CompletionRequest r = parse_completion(body);
    auto job = std::make_shared<Job>();
    job->kind = Job::Kind::completion;
    job->prompt = model_.tokenizer().encode(r.prompt);
    const int64_t prompt_tokens = int64_t(job->prompt.size());
    if (job->prompt.empty()) {  // an empty prompt starts a new document, as OpenAI's do
      if (model_.end_of_text() < 0)
        throw ApiError(400, "'prompt' must not be empty (the tokenizer has no <|endoftext|>)", "prompt");
      job->prompt = {model_.end_of_text()};
    }
    job->sampling.max_new_tokens = r.max_tokens;
    job->sampling.temperature = r.temperature;
    job->sampling.top_k = r.top_k;
    job->sampling.top_p = r.top_p;
    job->sampling.stop_token = model_.end_of_text();
    job->seed = r.seed ? *r.seed : random_u64();
    // Waking a request at every token takes the model's thread off its core
    // on small machines: only those that read tokens as they come are woken.
    job->follows_tokens = r.stream || !r.stop.empty();
    submit(job);

    char id[32];
    std::snprintf(id, sizeof id, "cmpl-%016llx", (unsigned long long)random_u64());
    Reply reply{{{"id", id},
                 {"object", "text_completion"},
                 {"created", int64_t(std::time(nullptr))},
                 {"model", r.model.empty() ? model_.name() : r.model}},
                prompt_tokens};
    auto text = std::make_shared<TextStream>(model_.tokenizer(), r.stop);
    if (r.stream) return stream(res, job, text, reply);
    std::string all;
    const Outcome o = follow(worker_, job, *text, [&](const std::string& piece) { return all += piece, true; });
    if (o.error_status) throw ApiError(o.error_status, o.error_message);
    res.set_content(dump(reply.with(all, o.finish_reason, o.tokens)), "application/json");
  }

  // Server-sent events: a chunk per piece of text, the finish reason and
  // usage in the last one (or an error), then [DONE].
  void stream(httplib::Response& res, const std::shared_ptr<Job>& job, const std::shared_ptr<TextStream>& text,
              const Reply& reply) {
    res.set_header("Cache-Control", "no-cache");
    Worker& worker = worker_;
    const auto provide = [&worker, job, text, reply](size_t, httplib::DataSink& sink) {
      auto send = [&sink](const json& j) {
        const std::string event = "data: " + dump(j) + "\n\n";
        return sink.write(event.data(), event.size());
      };
      const Outcome o = follow(worker, job, *text, [&](const std::string& piece) { return send(reply.with(piece)); });
      if (o.error_status) send(json::parse(error_body(o.error_status, o.error_message)));
      else if (o.finish_reason.empty()) return false;  // the client has gone
      else send(reply.with("", o.finish_reason, o.tokens));
      const std::string done = "data: [DONE]\n\n";
      sink.write(done.data(), done.size());
      sink.done();
      return true;
    };
    res.set_chunked_content_provider("text/event-stream", provide,
                                     [&worker, job](bool) { worker.cancel(job); });  // a no-op once it is done
  }

  void images(const std::string& body, httplib::Response& res) {
    if (!model_.serves_images()) not_served("/v1/images/generations");
    auto job = std::make_shared<Job>();
    job->kind = Job::Kind::image;
    job->image = parse_image(body);
    model_.check(job->image);
    if (!job->image.seed) job->image.seed = random_u64();
    submit(job);
    wait_done(worker_, job);
    res.set_content(job->bytes, "image/png");
  }

  void audio(const std::string& body, httplib::Response& res) {
    if (!model_.serves_audio()) not_served("/v1/audio/generations");
    auto job = std::make_shared<Job>();
    job->kind = Job::Kind::audio;
    job->audio = parse_audio(body);
    model_.check(job->audio);
    if (!job->audio.seed) job->audio.seed = random_u64();
    submit(job);
    wait_done(worker_, job);
    res.set_content(job->bytes, "audio/wav");
  }

 private:
  [[noreturn]] void not_served(const std::string& path) const {
    throw ApiError(404, "this model ('" + model_.kind() + "' run) does not serve " + path);
  }

  void submit(const std::shared_ptr<Job>& job) {
    job->deadline = Clock::now() + o_.timeout;
    if (!worker_.submit(job)) throw ApiError(503, "the queue is full (--queue requests are waiting): try again later");
  }

  ServedModel& model_;
  Worker& worker_;
  RouteOptions o_;
};

// Runs a handler, answering ApiError with its JSON error and anything else with 500.
void guarded(httplib::Response& res, const std::function<void()>& f) {
  try {
    f();
  } catch (const ApiError& e) {
    send_error(res, e.status, e.what(), e.param);
  } catch (const std::exception& e) {
    send_error(res, 500, e.what());
  }
}

// A POST route that reads its body itself: the library would otherwise parse
// a form-encoded one (what curl -d sends) and refuse it past 8 KiB. The size
// limit is checked here too, as the library does not for chunked bodies.
void post(httplib::Server& server, const std::string& path, size_t limit,
          std::function<void(const std::string& body, httplib::Response& res)> f) {
  server.Post(path, [f = std::move(f), limit](const httplib::Request&, httplib::Response& res,
                                              const httplib::ContentReader& read) {
    std::string body;
    bool too_large = false;
    const bool whole = read([&](const char* data, size_t n) {
      too_large = body.size() + n > limit;
      return !too_large && (body.append(data, n), true);
    });
    if (!whole) {
      res.status = too_large || res.status == 413 ? 413 : 400;  // 400: cut short
      return;  // the error handler writes the JSON
    }
    guarded(res, [&] { f(body, res); });
  });
}

}  // namespace

void add_routes(httplib::Server& server, ServedModel& model, Worker& worker, const RouteOptions& o) {
  auto api = std::make_shared<Api>(model, worker, o);
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(page_html(), "text/html; charset=utf-8");
  });
  server.Get("/health", [api](const httplib::Request&, httplib::Response& res) { api->health(res); });
  const size_t limit = o.max_body_bytes;
  auto to = [api](void (Api::*method)(const std::string&, httplib::Response&)) {
    return [api, method](const std::string& body, httplib::Response& res) { ((*api).*method)(body, res); };
  };
  post(server, "/v1/completions", limit, to(&Api::completions));
  post(server, "/v1/images/generations", limit, to(&Api::images));
  post(server, "/v1/audio/generations", limit, to(&Api::audio));

  // The other methods of these paths: 405, naming the one allowed.
  for (const auto& [path, allowed] : std::vector<std::pair<std::string, std::string>>{
           {"/", "GET"}, {"/health", "GET"}, {"/v1/completions", "POST"},
           {"/v1/images/generations", "POST"}, {"/v1/audio/generations", "POST"}}) {
    const httplib::Server::Handler refuse = [allowed = allowed](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allowed);
      send_error(res, 405, req.method + " is not allowed here; use " + allowed);
    };
    if (allowed != "GET") server.Get(path, refuse);
    if (allowed != "POST") server.Post(path, refuse);
    server.Put(path, refuse);
    server.Patch(path, refuse);
    server.Delete(path, refuse);
  }

  // What the library answers itself (no route, a body over the limit, a
  // malformed request) gets a JSON error too.
  using Result = httplib::Server::HandlerResponse;
  server.set_error_handler(httplib::Server::HandlerWithResponse([limit](const httplib::Request& req,
                                                                        httplib::Response& res) {
    if (!res.body.empty()) return Result::Unhandled;  // a handler's own error
    std::string message = res.status == 400 ? "malformed HTTP request" : "HTTP status " + std::to_string(res.status);
    if (res.status == 404) message = "no such endpoint: " + req.method + " " + req.path;
    if (res.status == 413) message = "the body is larger than " + std::to_string(limit) + " bytes (--max-body-bytes)";
    send_error(res, res.status, message);
    return Result::Handled;
  }));
}

}  // namespace fm::app::serve
