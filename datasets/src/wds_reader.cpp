// open_webdataset: WebDataset .tar shards indexed once, read by offset.
//
// How member offsets are found: libarchive reads each shard's headers
// (archive_read_data_skip seeks over the data). Right after
// archive_read_next_header the format reader has consumed every header block
// of the entry (ustar, pax extended headers, GNU long names), so the position
// of the first filter, archive_filter_bytes(a, 0) (the bytes consumed, not
// read ahead), is where the entry's data starts; archive_entry_size is its
// length. Tar data always starts on a 512-byte block, which is checked as a
// guard. This holds only when that filter is the file itself, so compressed
// shards are refused.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "fm/data/wds.h"
#include "fm/error.h"
#include "skip_log.h"

namespace fm::data {
namespace {

struct Member {
  std::string name;
  int64_t offset = -1, size = 0;
  bool present() const { return offset >= 0; }
};

struct Sample {
  int32_t shard = 0;
  std::string key;
  std::string image_format, caption_ext;
  Member image, caption, cls;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

// webdataset's split of a member path into key and extension: the key is the
// path up to the first dot of the base name, which must not be empty.
bool split_name(const std::string& name, std::string& key, std::string& ext) {
  const size_t slash = name.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = name.find('.', base);
  if (dot == std::string::npos || dot == base) return false;
  key = name.substr(0, dot);
  ext = lower(name.substr(dot + 1));
  return true;
}

// One shard's regular members, in order, with their data's place in the file.
std::vector<Member> index_shard(const std::string& path, SkipLog& skips) {
  std::error_code ec;
  const auto file_size = int64_t(std::filesystem::file_size(path, ec));
  if (ec) error("open_webdataset: shard '", path, "': ", ec.message());
  std::unique_ptr<struct archive, int (*)(struct archive*)> owner(archive_read_new(), archive_read_free);
  struct archive* a = owner.get();
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);  // only to name a compressed shard in the error below
  std::vector<Member> members;
  std::string failure, last_name;  // last_name: of the last header read, for messages
  if (archive_read_open_filename(a, path.c_str(), 1 << 16) != ARCHIVE_OK) {
    failure = archive_error_string(a) ? archive_error_string(a) : "cannot open";
  } else {
    for (;;) {
      struct archive_entry* entry = nullptr;
      const int rc = archive_read_next_header(a, &entry);
      // Checked before EOF too: a compressed shard of no members is an error, not an empty shard.
      if (archive_filter_code(a, 0) != ARCHIVE_FILTER_NONE) {
        error("open_webdataset: shard '", path, "' is compressed (", archive_filter_name(a, 0),
              "); shards are read by offset, so they must be plain .tar");
      }
      if (rc == ARCHIVE_EOF) break;
      if (rc == ARCHIVE_RETRY) {  // a damaged header; libarchive looks for the next one
        skips.add(path + ": damaged tar header after " +
                  (last_name.empty() ? std::string("the start") : "member '" + last_name + "'") + ": " +
                  archive_error_string(a));
        continue;
      }
      if (rc < ARCHIVE_WARN) {
        failure = archive_error_string(a) ? archive_error_string(a) : "unreadable";
        break;
      }
      last_name = archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "";
      if (archive_entry_filetype(entry) != AE_IFREG) continue;
      Member m{last_name, archive_filter_bytes(a, 0), archive_entry_size(entry)};
      if (m.offset % 512 != 0)
        error("open_webdataset: shard '", path, "': member '", m.name, "' has its data at ", m.offset,
              ", not on a 512-byte block; cannot read it by offset");
      if (archive_entry_sparse_count(entry) > 0) {
        skips.add(path + ":" + m.name + ": a sparse file (not supported)");
        continue;
      }
      if (m.size < 0 || m.size > file_size - m.offset) {  // not m.offset + m.size: a lying size may overflow
        skips.add(path + ":" + m.name + ": truncated (its " + std::to_string(m.size) + " bytes of data start at byte " +
                  std::to_string(m.offset) + ", the file has " + std::to_string(file_size) + ")");
        continue;
      }
      members.push_back(std::move(m));
    }
  }
  if (!failure.empty()) {
    if (members.empty()) error("open_webdataset: shard '", path, "' is not a readable tar: ", failure);
    skips.add(path + ": unreadable after member '" + last_name + "' (" + failure + "); the members before are used");
  }
  return members;
}

// The first of `preferred` extensions that the sample has.
const std::pair<const std::string, Member>* pick(const std::map<std::string, Member>& members,
                                                 const std::vector<std::string>& preferred) {
  for (const std::string& ext : preferred) {
    auto it = members.find(ext);
    if (it != members.end()) return &*it;
  }
  return nullptr;
}

class WebDataset final : public ImageTextSource {
 public:
  WebDataset(std::vector<std::string> shards, const WdsOptions& options) : shards_(std::move(shards)), options_(options) {
    for (size_t s = 0; s < shards_.size(); ++s) {
      std::vector<Member> members = index_shard(shards_[s], skips_);
      // Consecutive members with one key form a sample (webdataset's group_by_keys).
      std::map<std::string, Member> group;
      std::string key, ext, group_key;
      for (size_t i = 0; i <= members.size(); ++i) {
        const bool named = i < members.size() && split_name(members[i].name, key, ext);
        if (i < members.size() && !named) continue;  // no extension: not part of any sample
        if (i == members.size() || key != group_key) {
          if (!group.empty()) add_sample(int32_t(s), group_key, group);
          group.clear();
          group_key = key;
        }
        if (i < members.size()) group.emplace(ext, members[i]);  // a repeated extension keeps the first
      }
    }
  }

  int64_t size() const override { return int64_t(samples_.size()); }
  int64_t skipped() const override { return skips_.count; }
  std::vector<std::string> skip_messages() const override { return skips_.messages; }
  std::string name() const override {
    return shards_.size() == 1 ? shards_[0] : shards_[0] + " (and " + std::to_string(shards_.size() - 1) + " more shards)";
  }

  ImageTextSample read(int64_t index) const override {
    FM_CHECK(index >= 0 && index < size(), "webdataset ", name(), ": index ", index, " is not in [0, ", size(), ")");
    const Sample& s = samples_[size_t(index)];
    const std::string& shard = shards_[size_t(s.shard)];
    const int fd = ::open(shard.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) error("webdataset: cannot open shard '", shard, "': ", std::strerror(errno));
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    ImageTextSample out;
    out.key = s.key;
    out.origin = shard + ":" + s.image.name;
    out.image = fetch(fd, shard, s.image);
    out.image_format = s.image_format;
    const std::string caption = fetch(fd, shard, s.caption);
    if (s.caption_ext == "json") {
      const std::string where = shard + ":" + s.caption.name;
      nlohmann::json j = nlohmann::json::parse(caption, nullptr, false);
      if (j.is_discarded()) error("webdataset: ", where, ": not JSON");
      if (!j.is_object() || !j.contains(options_.json_caption_field) || !j[options_.json_caption_field].is_string())
        error("webdataset: ", where, ": no string field \"", options_.json_caption_field, "\"");
      out.caption = j[options_.json_caption_field].get<std::string>();
    } else {
      out.caption = caption;
    }
    if (s.cls.present()) {
      const std::string text = fetch(fd, shard, s.cls);
      try {
        size_t used = 0;
        out.label = std::stoll(text, &used);
        if (text.find_first_not_of(" \t\r\n", used) != std::string::npos) throw std::invalid_argument("trailing text");
      } catch (const std::exception&) {
        error("webdataset: ", shard, ":", s.cls.name, ": '", text, "' is not an integer class label");
      }
    }
    return out;
  }

 private:
  void add_sample(int32_t shard, const std::string& key, const std::map<std::string, Member>& group) {
    const auto* image = pick(group, options_.image_exts);
    const auto* caption = pick(group, options_.caption_exts);
    if (!image || !caption) {
      skips_.add(shards_[size_t(shard)] + ":" + key + ": no " + (image ? "caption" : "image") + " member");
      return;
    }
    Sample s{shard, key, image->first, caption->first, image->second, caption->second, {}};
    if (auto it = group.find("cls"); it != group.end()) s.cls = it->second;
    samples_.push_back(std::move(s));
  }

  static std::string fetch(int fd, const std::string& shard, const Member& m) {
    std::string bytes(size_t(m.size), '\0');
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done, off_t(m.offset + int64_t(done)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) error("webdataset: ", shard, ":", m.name, ": read error: ", std::strerror(errno));
      if (n == 0) error("webdataset: ", shard, ":", m.name, ": truncated (", done, " of ", m.size, " bytes)");
      done += size_t(n);
    }
    return bytes;
  }

  std::vector<std::string> shards_;
  WdsOptions options_;
  std::vector<Sample> samples_;
  SkipLog skips_;
};

}  // namespace

std::unique_ptr<ImageTextSource> open_webdataset(const std::vector<std::string>& shards, const WdsOptions& options) {
  std::vector<std::string> paths;
  for (const std::string& pattern : shards)
    for (std::string& p : expand_braces(pattern)) paths.push_back(std::move(p));
  if (paths.empty()) error("open_webdataset: no shards given");
  return std::make_unique<WebDataset>(std::move(paths), options);
}

}  // namespace fm::data
