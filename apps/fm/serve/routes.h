#pragma once
// fm serve's HTTP API on a cpp-httplib server:
//   GET  /                         the page to try the model
//   GET  /health                   {"status", "model", "kind", "step", "endpoints", "queue", "running",
//                                   "batch_steps", "largest_batch"}
//   POST /v1/completions           OpenAI's completions (streamed as server-sent events with "stream": true)
//   POST /v1/images/generations    one PNG
//   POST /v1/audio/generations     one WAV
// Errors are JSON ({"error": {"message", "type", "param"}}): 400 bad body or
// field, 404 unknown path or an endpoint this run's kind does not serve, 405
// wrong method, 413 body over the limit, 503 queue full, 504 out of time.
#include <chrono>

#include "served_model.h"
#include "worker.h"

namespace httplib {
class Server;
}

namespace fm::app::serve {

struct RouteOptions {
  std::chrono::seconds timeout{60};  // from arrival to the last byte of the result
  size_t max_body_bytes = 1 << 20;
};

void add_routes(httplib::Server& server, ServedModel& model, Worker& worker, const RouteOptions& o);

}  // namespace fm::app::serve
