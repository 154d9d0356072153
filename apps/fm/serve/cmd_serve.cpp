// fm serve --run DIR [--host 127.0.0.1] [--port 8080] [--max-batch 8] [--queue 64] ...
// Serves a run's model over HTTP (routes.h) until SIGINT or SIGTERM.
#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

#include "../commands.h"
#include "../options.h"
#include "fm/error.h"
#include "routes.h"
#include "served_model.h"
#include "worker.h"

namespace fm::app {
namespace {

int g_stop_pipe[2] = {-1, -1};
void stop_signal(int) {
  const char c = 1;
  [[maybe_unused]] const ssize_t n = write(g_stop_pipe[1], &c, 1);  // async-signal-safe
}

}  // namespace

int cmd_serve(const std::vector<std::string>& args) {
  Flags f("usage: fm serve --run DIR [options]\n\n"
          "Serves the newest checkpoint of a run over HTTP: OpenAI-style /v1/completions (lm and mixed runs),\n"
          "/v1/images/generations (diffusion, mixed), /v1/audio/generations (music, mixed with a codec),\n"
          "/health, and a page to try the model at /. Concurrent completions of an lm run are batched.");
  f.option("run", "", "run directory made by fm train")
      .option("host", "127.0.0.1", "address to listen on (0.0.0.0: every interface)")
      .option("port", "8080", "TCP port (0: any free one, printed at start)")
      .option("max-batch", "8", "completions decoded together at most (1: one at a time)")
      .option("queue", "64", "requests waiting at most; more get 503")
      .option("max-body-bytes", "1048576", "largest request body; larger ones get 413")
      .option("timeout-s", "60", "seconds a request may take, waiting included; then 504")
      .option("threads", "0", "CPU threads of the model (0: all cores but one, left to the connections)")
      .option("http-threads", "0", "connections served at once (0: queue + max-batch + 4)");
  if (!f.parse(args)) return 0;
  if (!f.positional().empty()) error("serve: unexpected argument '", f.positional()[0], "' (see --help)");
  const std::string dir = f.get("run");
  if (dir.empty()) error("serve: --run DIR is required");
  const int64_t port = f.get_int("port"), max_batch = f.get_int("max-batch"), queue = f.get_int("queue");
  const int64_t max_body = f.get_int("max-body-bytes"), timeout = f.get_int("timeout-s");
  const int64_t threads = f.get_int("threads");
  int64_t http_threads = f.get_int("http-threads");
  if (port < 0 || port > 65535) error("serve: --port must be in [0, 65535], got ", port);
  if (max_batch < 1) error("serve: --max-batch must be at least 1, got ", max_batch);
  if (queue < 1) error("serve: --queue must be at least 1, got ", queue);
  if (max_body < 1) error("serve: --max-body-bytes must be at least 1, got ", max_body);
  if (timeout < 1) error("serve: --timeout-s must be at least 1, got ", timeout);
  if (threads < 0) error("serve: --threads must be >= 0, got ", threads);
  if (http_threads < 0) error("serve: --http-threads must be >= 0, got ", http_threads);
  // Every waiting or running request holds a connection: with fewer threads
  // than that, requests would wait unseen instead of getting 503.
  if (http_threads == 0) http_threads = queue + max_batch + 4;
  // The model's threads wait for each other at every op: one that the
  // connections' threads keep from its core stalls them all (measured on 2
  // cores: 30x slower decoding with 2 threads than with 1), so one core is
  // left to the connections.
  const int model_threads = threads > 0 ? int(threads) : std::max(1, int(std::thread::hardware_concurrency()) - 1);

  serve::ServedModel model(dir);
  serve::Worker worker(model, max_batch, queue, model_threads);
  httplib::Server server;
  server.new_task_queue = [n = size_t(http_threads)] { return new httplib::ThreadPool(n); };
  // SO_REUSEADDR alone: httplib's default adds SO_REUSEPORT, with which a
  // second server on the same port starts and silently shares the traffic.
  server.set_socket_options([](int sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.set_payload_max_length(size_t(max_body));
  server.set_read_timeout(timeout);
  server.set_write_timeout(timeout);
  server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    std::fprintf(stderr, "%s %s %d\n", req.method.c_str(), req.path.c_str(), res.status);
  });
  serve::add_routes(server, model, worker, {std::chrono::seconds(timeout), size_t(max_body)});

  // SIGINT and SIGTERM stop the server: the handler (on whichever thread
  // takes the signal) writes to a pipe, a thread reading it calls stop().
  if (pipe(g_stop_pipe) != 0) error("serve: cannot make a pipe for signals");
  struct sigaction on_stop {};
  on_stop.sa_handler = stop_signal;
  on_stop.sa_flags = SA_RESTART;
  sigemptyset(&on_stop.sa_mask);
  sigaction(SIGINT, &on_stop, nullptr);
  sigaction(SIGTERM, &on_stop, nullptr);

  const std::string host = f.get("host");
  const int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, int(port)) ? int(port) : -1);
  if (bound < 0) error("serve: cannot listen on ", host, ":", port, " (in use, or not an address of this machine)");
  std::string served;
  if (model.serves_text()) served += " /v1/completions";
  if (model.serves_images()) served += " /v1/images/generations";
  if (model.serves_audio()) served += " /v1/audio/generations";
  std::fprintf(stderr, "fm serve: %s ('%s' run, step %lld) on http://%s:%d/ :%s\n", model.name().c_str(),
               model.kind().c_str(), (long long)model.step(), host.c_str(), bound, served.c_str());
  std::fflush(stderr);

  std::atomic<bool> ended{false};
  std::thread stopper([&server, &ended] {
    char c = 0;
    while (read(g_stop_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    // A signal before the server runs would find nothing to stop yet.
    while (!server.is_running() && !ended) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    server.stop();
  });
  const bool clean = server.listen_after_bind();
  ended = true;
  stop_signal(0);  // the server may have ended by itself: wake the stopper
  stopper.join();
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  close(g_stop_pipe[0]);
  close(g_stop_pipe[1]);
  std::fprintf(stderr, "fm serve: stopped\n");
  return clean ? 0 : 1;
}

}  // namespace fm::app
