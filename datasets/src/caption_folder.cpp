// open_caption_folder: images listed with their captions in a JSONL, CSV or
// TSV file (open_clip's CsvDataset layout).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "delimited.h"
#include "fm/data/image_text.h"
#include "fm/error.h"
#include "skip_log.h"

namespace fm::data {
namespace {

namespace fs = std::filesystem;

struct Entry {
  std::string path;  // as opened
  std::string key;   // the path relative to the caption file's folder, without extension
  std::string format;
  std::string caption;
};

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) error("open_caption_folder: cannot open '", path, "'");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

std::string find_caption_file(const std::string& dir_or_file) {
  if (!fs::is_directory(dir_or_file)) {
    if (!fs::exists(dir_or_file)) error("open_caption_folder: no such file or folder '", dir_or_file, "'");
    return dir_or_file;
  }
  for (const char* name : {"captions.jsonl", "captions.tsv", "captions.csv"})
    if (fs::exists(fs::path(dir_or_file) / name)) return (fs::path(dir_or_file) / name).string();
  error("open_caption_folder: folder '", dir_or_file, "' holds none of captions.jsonl, captions.tsv, captions.csv");
}

// (image path as written, caption, line) rows of a JSONL file.
struct Row {
  std::string image, caption;
  int64_t line;
};

std::vector<Row> jsonl_rows(const std::string& path, const std::string& image_field, const std::string& caption_field) {
  std::vector<Row> rows;
  std::istringstream in(read_whole(path));
  std::string text;
  for (int64_t line = 1; std::getline(in, text); ++line) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      error(path, ":", line, ": not JSON: ", e.what());
    }
    auto field = [&](const std::string& name) {
      if (!j.is_object() || !j.contains(name)) error(path, ":", line, ": no field \"", name, "\"");
      if (!j[name].is_string()) error(path, ":", line, ": field \"", name, "\" is not a string");
      return j[name].get<std::string>();
    };
    rows.push_back({field(image_field), field(caption_field), line});
  }
  return rows;
}

std::vector<Row> delimited_rows(const std::string& path, char separator, const std::string& image_column,
                                const std::string& caption_column) {
  std::vector<DelimitedRow> table = parse_delimited(read_whole(path), separator, path);
  if (table.empty()) error(path, ": empty (expected a header row with columns '", image_column, "' and '",
                           caption_column, "')");
  const std::vector<std::string>& header = table.front().fields;
  auto column = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) {
      std::string have;
      for (const std::string& h : header) have += (have.empty() ? "'" : ", '") + h + "'";
      error(path, ": no column '", name, "' in the header (columns: ", have, ")");
    }
    return size_t(it - header.begin());
  };
  const size_t image = column(image_column), caption = column(caption_column);
  std::vector<Row> rows;
  for (size_t r = 1; r < table.size(); ++r) {
    const DelimitedRow& row = table[r];
    if (row.fields.size() != header.size())
      error(path, ":", row.line, ": ", row.fields.size(), " fields, but the header has ", header.size());
    rows.push_back({row.fields[image], row.fields[caption], row.line});
  }
  return rows;
}

class CaptionFolder final : public ImageTextSource {
 public:
  CaptionFolder(std::string file, std::vector<Entry> entries, SkipLog skips)
      : file_(std::move(file)), entries_(std::move(entries)), skips_(std::move(skips)) {}

  int64_t size() const override { return int64_t(entries_.size()); }
  std::string name() const override { return file_; }
  int64_t skipped() const override { return skips_.count; }
  std::vector<std::string> skip_messages() const override { return skips_.messages; }

  ImageTextSample read(int64_t index) const override {
    FM_CHECK(index >= 0 && index < size(), "caption folder ", file_, ": index ", index, " is not in [0, ", size(),
             ")");
    const Entry& e = entries_[size_t(index)];
    std::ifstream in(e.path, std::ios::binary);
    if (!in) error("caption folder ", file_, ": cannot read image '", e.path, "'");
    ImageTextSample s;
    s.image.assign(std::istreambuf_iterator<char>(in), {});
    if (in.bad()) error("caption folder ", file_, ": error reading image '", e.path, "'");
    s.key = e.key;
    s.origin = e.path;
    s.image_format = e.format;
    s.caption = e.caption;
    return s;
  }

 private:
  std::string file_;
  std::vector<Entry> entries_;
  SkipLog skips_;
};

}  // namespace

std::string image_format_of(const std::string& path) {
  std::string format = lower(fs::path(path).extension().string());
  if (!format.empty()) format.erase(0, 1);
  return format;
}

std::unique_ptr<ImageTextSource> open_caption_folder(const std::string& dir_or_file,
                                                     const CaptionFolderOptions& options) {
  const std::string file = find_caption_file(dir_or_file);
  const std::string ext = lower(fs::path(file).extension().string());
  const bool jsonl = ext == ".jsonl" || ext == ".json";
  auto pick = [](const std::string& given, const char* fallback) { return given.empty() ? std::string(fallback) : given; };
  const std::string image_column = pick(options.image_column, jsonl ? "file" : "filepath");
  const std::string caption_column = pick(options.caption_column, jsonl ? "caption" : "title");
  const char separator = options.separator ? options.separator : ext == ".tsv" ? '\t' : ',';
  const std::vector<Row> rows = jsonl ? jsonl_rows(file, image_column, caption_column)
                                      : delimited_rows(file, separator, image_column, caption_column);

  const fs::path root = fs::path(file).parent_path();
  std::vector<Entry> entries;
  SkipLog skips;
  for (const Row& row : rows) {
    const fs::path image = fs::path(row.image).is_absolute() ? fs::path(row.image) : root / row.image;
    std::error_code ec;
    if (row.image.empty() || !fs::is_regular_file(image, ec)) {
      skips.add(file + ":" + std::to_string(row.line) + ": no image file '" + image.string() + "'");
      continue;
    }
    fs::path key = fs::path(row.image).lexically_normal();
    key.replace_extension();
    entries.push_back({image.string(), key.generic_string(), image_format_of(image.string()), row.caption});
  }
  return std::make_unique<CaptionFolder>(file, std::move(entries), std::move(skips));
}

}  // namespace fm::data
