// MetricsLog's repair of an existing metrics.jsonl (the incomplete last line
// cut off) and, when resuming, the rewrite that drops lines from a step on.
// The first input byte picks the mode and resume step; the rest is the file.
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

#include "fm/error.h"
#include "fm/io/metrics_log.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string path = fm::fuzz::write_file("run/metrics.jsonl", {reinterpret_cast<const char*>(data + 1), size - 1});
  try {
    if (data[0] & 0x80) {
      fm::io::MetricsLog log(path, int64_t(data[0] & 0x7f));
      log.log(200, {{"loss", 1.5}});
    } else {
      fm::io::MetricsLog log(path);
      log.log(200, {{"loss", 1.5}});
    }
    // Whatever came before, the file now ends with the line just logged.
    std::ifstream f(path, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t start = text.size() < 2 ? 0 : text.rfind('\n', text.size() - 2) + 1;  // npos + 1 = 0
    if (text.empty() || text.back() != '\n' || text.find("200", start) == std::string::npos) __builtin_trap();
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}
