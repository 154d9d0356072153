#pragma once
// Image-text data: one sample type, one random-access source interface, and
// the caption-folder reader (open_clip's CSV/TSV, or JSONL). Readers hand out
// the encoded image bytes; decoding belongs to modalities/image, called from
// the DataLoader's transform. Other readers: fm/data/idx.h, fm/data/wds.h.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fm::data {

struct ImageTextSample {
  std::string key;     // unique within the source: "photos/cat_01", "000123", "idx:123"
  std::string origin;  // where it came from, for messages: "shard-003.tar:000123.png", a file path
  std::string image;         // encoded bytes (PNG, JPEG, WebP, ...); empty when `pixels` holds the image
  std::string image_format;  // lower-case extension of the image: "png", "jpg", "jpeg", "webp", ...
  std::vector<uint8_t> pixels;  // raw pixels, row-major [height, width, channels] (IDX)
  int height = 0, width = 0, channels = 0;
  std::string caption;
  int64_t label = -1;  // class index where the source has one, else -1
};

// Samples by index in [0, size()). read() is const and safe to call from
// several threads at once (the DataLoader's workers do). A sample that
// cannot be read (a vanished or truncated file) throws fm::Error naming it;
// the DataLoader counts it and skips it.
class ImageTextSource {
 public:
  virtual ~ImageTextSource();
  virtual int64_t size() const = 0;
  virtual ImageTextSample read(int64_t index) const = 0;
  virtual std::string name() const = 0;  // for logs: the file or shards read
  // Entries left out when the source was opened (a row whose image file is
  // missing, a tar sample without caption), and the first few reasons.
  virtual int64_t skipped() const { return 0; }
  virtual std::vector<std::string> skip_messages() const { return {}; }
};

// A caption file, or a folder holding one:
//   captions.jsonl  one object per line, {"file": "a/cat.jpg", "caption": "a cat"}
//   *.csv, *.tsv    a header row naming the columns (open_clip's `filepath`
//                   and `title` by default); fields may be quoted as in
//                   RFC 4180 ("a, b" and "say ""hi""", newlines inside quotes)
// Given a folder, the file is the first of captions.jsonl, captions.tsv,
// captions.csv found in it. Image paths are relative to the caption file's
// folder (or absolute). Samples keep the file's row order.
struct CaptionFolderOptions {
  std::string image_column;    // "" = "file" (JSONL) or "filepath" (CSV/TSV)
  std::string caption_column;  // "" = "caption" (JSONL) or "title" (CSV/TSV)
  char separator = 0;          // CSV/TSV field separator; 0 = '\t' for .tsv, ',' otherwise
};

// Errors (fm::Error naming the file, and the line or column): no caption
// file, a missing column or JSON field, a malformed row. A row whose image
// file does not exist is left out and counted (skipped(), skip_messages()).
std::unique_ptr<ImageTextSource> open_caption_folder(const std::string& dir_or_file,
                                                     const CaptionFolderOptions& options = {});

// A file's format as ImageTextSample::image_format holds it: the lower-case
// extension without its dot ("photos/Cat.JPG" -> "jpg"; none -> "").
std::string image_format_of(const std::string& path);

// Captions for class labels in the style of open_clip's zero-shot templates
// ("a photo of a {}."): "{}" is replaced by the class name.
const std::vector<std::string>& default_caption_templates();
std::string apply_caption_template(const std::string& caption_template, const std::string& class_name);
// One template per draw, chosen by `seed` (pass the DataLoader's sample seed
// so the choice is reproducible): templates[seed % templates.size()].
std::string class_caption(const std::string& class_name, uint64_t seed,
                          const std::vector<std::string>& templates = default_caption_templates());

}  // namespace fm::data
