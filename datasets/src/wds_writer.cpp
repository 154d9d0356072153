// WebDatasetWriter: samples -> ustar shards through libarchive, each shard
// written to a temp file and renamed into place when complete (AtomicFile).
#include <archive.h>
#include <archive_entry.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "fm/data/wds.h"
#include "fm/error.h"
#include "fm/io/atomic_file.h"

namespace fm::data {

struct WebDatasetWriter::Shard {
  std::string path;
  io::AtomicFile file;
  std::exception_ptr write_error;  // from AtomicFile, carried across libarchive's C callback
  std::unique_ptr<struct archive, int (*)(struct archive*)> archive{archive_write_new(), archive_write_free};
  std::set<std::string> keys;
  int64_t samples = 0;

  explicit Shard(const std::string& p) : path(p), file(p, "WebDatasetWriter") {
    struct archive* a = archive.get();
    archive_write_set_format_ustar(a);
    if (archive_write_open2(a, this, nullptr, &Shard::write_callback, nullptr, nullptr) != ARCHIVE_OK) fail("open");
  }

  static la_ssize_t write_callback(struct archive*, void* self, const void* data, size_t n) {
    Shard& s = *static_cast<Shard*>(self);
    try {
      s.file.write(data, n);
      return la_ssize_t(n);
    } catch (...) {
      s.write_error = std::current_exception();
      return -1;
    }
  }

  [[noreturn]] void fail(const std::string& what) {
    if (write_error) std::rethrow_exception(write_error);
    const char* why = archive_error_string(archive.get());
    error("WebDatasetWriter: ", path, ": ", what, ": ", why ? why : "libarchive error");
  }

  void add(const std::string& name, const std::string& bytes) {
    std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(entry.get(), name.c_str());
    archive_entry_set_size(entry.get(), la_int64_t(bytes.size()));
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), 0644);
    archive_entry_set_mtime(entry.get(), 0, 0);
    if (archive_write_header(archive.get(), entry.get()) != ARCHIVE_OK) fail("member '" + name + "'");
    if (!bytes.empty() && archive_write_data(archive.get(), bytes.data(), bytes.size()) != la_ssize_t(bytes.size()))
      fail("member '" + name + "'");
  }

  void commit() {
    if (archive_write_close(archive.get()) != ARCHIVE_OK) fail("close");
    file.commit();
  }
};

WebDatasetWriter::WebDatasetWriter(std::string out_dir, std::string prefix, int64_t samples_per_shard)
    : out_dir_(std::move(out_dir)), prefix_(std::move(prefix)), samples_per_shard_(samples_per_shard) {
  FM_CHECK(samples_per_shard_ >= 1, "WebDatasetWriter: samples_per_shard ", samples_per_shard_, " must be at least 1");
  std::error_code ec;
  std::filesystem::create_directories(out_dir_, ec);
  if (ec) error("WebDatasetWriter: cannot create folder '", out_dir_, "': ", ec.message());
}

WebDatasetWriter::~WebDatasetWriter() = default;

void WebDatasetWriter::write(const ImageTextSample& sample) {
  const std::string& key = sample.key;
  const size_t base = key.rfind('/') == std::string::npos ? 0 : key.rfind('/') + 1;
  if (key.empty() || base == key.size() || key.find('.', base) != std::string::npos)
    error("WebDatasetWriter: key '", key, "' of ", sample.origin,
          " must be non-empty and have no dot in its base name (webdataset splits names at the first dot)");
  if (sample.image.empty())
    error("WebDatasetWriter: sample ", sample.origin.empty() ? key : sample.origin,
          sample.pixels.empty() ? " has no image" : " holds raw pixels; encode them (PNG, JPEG) first");
  if (sample.image_format.empty() || sample.image_format.find_first_of("./") != std::string::npos)
    error("WebDatasetWriter: sample ", key, ": image format '", sample.image_format, "' is not an extension like png");
  if (!shard_) {
    char name[32];
    std::snprintf(name, sizeof name, "-%06zu.tar", paths_.size());
    shard_ = std::make_unique<Shard>((std::filesystem::path(out_dir_) / (prefix_ + name)).string());
  }
  if (!shard_->keys.insert(key).second) error("WebDatasetWriter: ", shard_->path, ": key '", key, "' written twice");
  shard_->add(key + "." + sample.image_format, sample.image);
  shard_->add(key + ".txt", sample.caption);
  if (sample.label >= 0) shard_->add(key + ".cls", std::to_string(sample.label));
  ++samples_;
  if (++shard_->samples == samples_per_shard_) finish_shard();
}

void WebDatasetWriter::finish_shard() {
  shard_->commit();
  paths_.push_back(shard_->path);
  shard_.reset();
}

std::vector<std::string> WebDatasetWriter::close() {
  if (shard_) finish_shard();
  return paths_;
}

}  // namespace fm::data
