#pragma once
// WebDataset shards: uncompressed .tar files whose members are grouped into
// samples by key, as the webdataset package does: a member's key is its path
// up to the first dot of its base name, the rest is its extension
// ("a/000123.seg.png" -> key "a/000123", extension "seg.png"); consecutive
// members with the same key form one sample.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fm/data/image_text.h"

namespace fm::data {

// Brace expansion as the braceexpand package (which webdataset uses):
// "data-{000..031}.tar" (zero-padded to the width of the bounds), "{a,b}",
// "{0..10..2}", "{a..e}", nested and several groups; "\{" is a literal brace.
// Unbalanced braces are an error naming the pattern.
std::vector<std::string> expand_braces(const std::string& pattern);

struct WdsOptions {
  // Member extensions (lower case) that hold the image, in order of preference.
  std::vector<std::string> image_exts = {"jpg", "jpeg", "png", "webp"};
  // Members that hold the caption, in order of preference: a "json" member is
  // an object whose field `json_caption_field` is the caption; others are text.
  std::vector<std::string> caption_exts = {"txt", "json"};
  std::string json_caption_field = "caption";
};

// Opens shards (paths or brace patterns, expanded in order) and indexes each
// once: for every member its name, data offset and size. read() then fetches
// members with pread, so any sample is one or two reads away and reads from
// several threads do not contend. The shard files must not change while open.
//
// Left out and counted (skipped(), skip_messages()): samples without an image
// or without a caption member, members whose data the file does not hold
// (a truncated tar: the samples before the cut are kept). Errors, naming the
// shard: an empty list, a missing file, a compressed or unreadable tar with
// no readable member. A JSON caption without the field is an fm::Error from
// read(), so the DataLoader skips that sample. A ".cls" member, if any, is
// read as the integer label.
std::unique_ptr<ImageTextSource> open_webdataset(const std::vector<std::string>& shards, const WdsOptions& options = {});

// Writes samples into shards <out_dir>/<prefix>-000000.tar, ... of at most
// `samples_per_shard` samples each, as ustar tar with members <key>.<image
// format>, <key>.txt (the caption) and <key>.cls when the label is >= 0.
// Each shard appears atomically when full or at close(). Keys must be
// non-empty and unique (checked within each shard; duplicates there are an
// error), without dots in their base name; members carry mtime 0, so equal
// samples give equal bytes. Samples must hold encoded images (`image`);
// raw `pixels` are an error (encode them first).
class WebDatasetWriter {
 public:
  WebDatasetWriter(std::string out_dir, std::string prefix, int64_t samples_per_shard);
  ~WebDatasetWriter();  // a shard still open when not closed is discarded
  WebDatasetWriter(const WebDatasetWriter&) = delete;
  WebDatasetWriter& operator=(const WebDatasetWriter&) = delete;

  void write(const ImageTextSample& sample);
  std::vector<std::string> close();  // finishes the last shard; returns every shard's path, in order

  int64_t samples_written() const { return samples_; }

 private:
  struct Shard;
  void finish_shard();

  std::string out_dir_, prefix_;
  int64_t samples_per_shard_;
  int64_t samples_ = 0;
  std::unique_ptr<Shard> shard_;
  std::vector<std::string> paths_;
};

}  // namespace fm::data
