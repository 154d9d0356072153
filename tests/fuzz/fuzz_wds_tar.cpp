// open_webdataset on an arbitrary .tar shard; every sample found is read.
#include <cstdint>
#include <string>

#include "fm/data/wds.h"
#include "fm/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fm::fuzz::write_file("shard-000000.tar", {reinterpret_cast<const char*>(data), size});
  try {
    auto source = fm::data::open_webdataset({path});
    for (int64_t i = 0; i < source->size(); ++i) {
      try {
        const fm::data::ImageTextSample s = source->read(i);
        volatile size_t sink = s.caption.size() + s.image.size() + s.key.size() + size_t(s.label);
        (void)sink;
      } catch (const fm::Error&) {  // e.g. a JSON caption without the field
      }
    }
    volatile size_t sink = source->skip_messages().size();
    (void)sink;
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}
