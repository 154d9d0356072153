// Load test of a running `fm serve` on loopback: N clients send M
// completion requests in all (varied prompts and seeds), bounded in time,
// and the latency percentiles and throughput are printed as one JSON line.
//   bench_serve --port P [--clients 8] [--requests 64] [--max-tokens 32] [--time-limit-s 60]
// bench/serve/bench_serve.sh runs it against a server with batching on
// (--max-batch 8) and off (--max-batch 1).
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  int port = 8080, clients = 8, requests = 64, max_tokens = 32;
  double time_limit_s = 60;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--port") a.port = std::atoi(v);
    else if (k == "--clients") a.clients = std::atoi(v);
    else if (k == "--requests") a.requests = std::atoi(v);
    else if (k == "--max-tokens") a.max_tokens = std::atoi(v);
    else if (k == "--time-limit-s") a.time_limit_s = std::atof(v);
    else {
      std::fprintf(stderr, "bench_serve: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (a.clients < 1 || a.requests < 1 || a.max_tokens < 1 || a.port < 1) {
    std::fprintf(stderr,
                 "usage: bench_serve --port P [--clients N] [--requests M] [--max-tokens T] [--time-limit-s S]\n");
    std::exit(2);
  }
  return a;
}

// The nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p) {
  const size_t rank = size_t(std::ceil(p / 100.0 * double(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const char* prompts[] = {"The ", "Q: What is the meaning of life?\nA: ", "A", "Never put off until tomorrow ",
                           "He who laughs last "};
  std::atomic<int> next{0}, failed{0};
  std::atomic<long> tokens{0};
  std::mutex m;
  std::vector<double> latencies_ms;
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop = start + std::chrono::milliseconds(long(a.time_limit_s * 1000));
  std::vector<std::thread> clients;
  for (int c = 0; c < a.clients; ++c)
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", a.port);
      client.set_read_timeout(std::chrono::milliseconds(long(a.time_limit_s * 1000)));
      for (int i; (i = next++) < a.requests && Clock::now() < stop;) {
        const nlohmann::json body = {{"prompt", prompts[i % 5]}, {"max_tokens", a.max_tokens}, {"temperature", 0.8},
                                     {"seed", i}};
        const Clock::time_point t0 = Clock::now();
        const auto res = client.Post("/v1/completions", body.dump(), "application/json");
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (!res || res->status != 200) {
          ++failed;
          continue;
        }
        tokens += nlohmann::json::parse(res->body)["usage"]["completion_tokens"].get<long>();
        std::lock_guard<std::mutex> lock(m);
        latencies_ms.push_back(ms);
      }
    });
  for (auto& t : clients) t.join();
  const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (latencies_ms.empty()) {
    std::fprintf(stderr, "bench_serve: no request succeeded (%d failed)\n", failed.load());
    return 1;
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  const nlohmann::json out = {{"clients", a.clients},
                              {"requests", latencies_ms.size()},
                              {"failed", failed.load()},
                              {"max_tokens", a.max_tokens},
                              {"wall_s", wall_s},
                              {"requests_per_s", double(latencies_ms.size()) / wall_s},
                              {"tokens_per_s", double(tokens.load()) / wall_s},
                              {"p50_ms", percentile(latencies_ms, 50)},
                              {"p90_ms", percentile(latencies_ms, 90)},
                              {"p99_ms", percentile(latencies_ms, 99)}};
  std::printf("%s\n", out.dump().c_str());
  return failed > 0 ? 1 : 0;
}
