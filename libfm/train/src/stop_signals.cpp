#include "stop_signals.h"

#include <csignal>

namespace fm::train {
namespace {

volatile std::sig_atomic_t g_received = 0;
struct sigaction g_old_term, g_old_int;

void on_signal(int sig) {
  if (g_received != 0) {  // the second: end now, with the default action
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_received = sig;
}

}  // namespace

StopSignals::StopSignals() {
  g_received = 0;
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and writes in progress go on
  sigaction(SIGTERM, &sa, &g_old_term);
  sigaction(SIGINT, &sa, &g_old_int);
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGINT, &g_old_int, nullptr);
}

int StopSignals::pending() const { return g_received; }

}  // namespace fm::train
