// TokenShard on arbitrary bytes: a shard it opens must hand out every token
// it counts (all are read, through both copy_window forms).
#include <cstdint>
#include <vector>

#include "fm/data/token_shard.h"
#include "fm/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fm::fuzz::write_file("shard.bin", {reinterpret_cast<const char*>(data), size});
  for (int64_t vocab : {int64_t(0), int64_t(50257)}) {
    try {
      const fm::data::TokenShard shard(path, vocab);
      std::vector<int64_t> w64(size_t(shard.size()));
      shard.copy_window(0, shard.size(), w64.data());
      try {
        std::vector<int32_t> w32(size_t(shard.size()));
        shard.copy_window(0, shard.size(), w32.data());
      } catch (const fm::Error&) {  // ids above INT32_MAX
      }
      if (shard.size() > 0 && int64_t(shard[shard.size() - 1]) != w64.back()) __builtin_trap();
      if (vocab > 0)
        for (int64_t t : w64)
          if (t < 0 || t >= vocab) __builtin_trap();
    } catch (const fm::Error& e) {
      fm::fuzz::note(e);
    }
  }
  return 0;
}
