// expand_braces (shard patterns such as "data-{000..031}.tar") on arbitrary
// text.
#include <cstdint>
#include <string>

#include "fm/data/wds.h"
#include "fm/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256) return 0;  // patterns are short; long ones only slow the search
  try {
    const auto names = fm::data::expand_braces(std::string(reinterpret_cast<const char*>(data), size));
    volatile size_t sink = names.size();
    (void)sink;
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}
