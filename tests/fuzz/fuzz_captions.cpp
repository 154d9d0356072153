// The caption-folder reader (open_clip's CSV/TSV, or JSONL) on arbitrary
// text. The first input byte picks the format; the folder also holds two
// images, a.png and b.jpg, so rows that name them resolve. Every sample is read.
#include <cstdint>
#include <string>

#include "fm/data/image_text.h"
#include "fm/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const bool images = [] {
    fm::fuzz::write_file("captions/a.png", "not really a png");
    fm::fuzz::write_file("captions/b.jpg", "");
    return true;
  }();
  (void)images;
  static const char* const names[] = {"captions.jsonl", "captions.csv", "captions.tsv", "captions.txt"};
  const std::string name = names[data[0] & 3];
  const std::string path =
      fm::fuzz::write_file("captions/" + name, {reinterpret_cast<const char*>(data + 1), size - 1});
  fm::data::CaptionFolderOptions options;
  if (data[0] & 4) options.separator = ';';
  if (data[0] & 8) options.caption_column = "text";
  try {
    auto source = fm::data::open_caption_folder(path, options);
    for (int64_t i = 0; i < source->size(); ++i) {
      try {
        const fm::data::ImageTextSample s = source->read(i);
        volatile size_t sink = s.caption.size() + s.image.size() + s.key.size();
        (void)sink;
      } catch (const fm::Error& e) {
        fm::fuzz::note(e);
      }
    }
    volatile size_t sink = source->skip_messages().size() + source->name().size();
    (void)sink;
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  std::remove(path.c_str());  // the next input may pick another format
  return 0;
}
