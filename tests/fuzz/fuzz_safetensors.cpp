// load_safetensors on arbitrary bytes: a header it accepts must describe
// tensors whose bytes all lie inside the file (every one is read here).
#include <cstdint>
#include <string_view>

#include "fm/error.h"
#include "fm/io/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fm::fuzz::write_file("t.safetensors", {reinterpret_cast<const char*>(data), size});
  try {
    const fm::io::Safetensors st = fm::io::load_safetensors(path);
    uint8_t sum = 0;
    for (const auto& [name, t] : st.tensors) {
      const auto* p = static_cast<const uint8_t*>(t.data_ptr());
      for (size_t i = 0; i < t.nbytes(); ++i) sum ^= p[i];
    }
    for (const auto& [k, v] : st.metadata) sum ^= uint8_t(k.size() + v.size());
    volatile uint8_t sink = sum;
    (void)sink;
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}
