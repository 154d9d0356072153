#include "fm/data/token_shard.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "fm/error.h"
#include "fm/io/atomic_file.h"
#include "fm/io/mapped_file.h"

namespace fm::data {
namespace {

static_assert(std::endian::native == std::endian::little,
              "token shards are little-endian; a big-endian host would need byte swaps");

constexpr int64_t kMaxTokens = std::numeric_limits<int32_t>::max();  // header[2] is an int32
constexpr uint32_t kMaxInt32Token = std::numeric_limits<int32_t>::max();

int64_t token_bytes(int version) { return version == 1 ? 2 : 4; }
const char* token_type(int version) { return version == 1 ? "uint16" : "uint32"; }

template <class... Parts>
[[noreturn]] void fail(const std::string& path, const Parts&... parts) {
  error("token shard ", path, ": ", parts...);
}

std::shared_ptr<io::MappedFile> map_file(const std::string& path) {
  auto m = std::make_shared<io::MappedFile>(path, "token shard ");
  if (m->size() < size_t(kTokenShardHeaderBytes))
    fail(path, "file is ", m->size(), " bytes, shorter than the ", kTokenShardHeaderBytes, "-byte header");
  return m;
}

template <class T>
void check_vocab(const std::string& path, const T* tokens, int64_t n, int64_t vocab_size) {
  if (vocab_size > int64_t(std::numeric_limits<T>::max())) return;  // every id fits
  const T* bad = std::find_if(tokens, tokens + n, [&](T t) { return int64_t(t) >= vocab_size; });
  if (bad != tokens + n)
    fail(path, "token ", uint64_t(*bad), " at index ", bad - tokens, " is not below the vocab size ", vocab_size);
}

}  // namespace

void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens, int version) {
  const char* op = "write_token_shard";
  if (version != 0 && version != 1 && version != 2)
    error(op, ": ", path, ": version ", version, " is not 0 (choose), 1 (uint16) or 2 (uint32)");
  if (int64_t(tokens.size()) > kMaxTokens)
    error(op, ": ", path, ": ", tokens.size(), " tokens; a shard holds at most ", kMaxTokens);
  const auto too_big = std::find_if(tokens.begin(), tokens.end(), [](uint32_t t) { return t > 0xFFFF; });
  if (version == 0) version = too_big == tokens.end() ? 1 : 2;
  if (version == 1 && too_big != tokens.end())
    error(op, ": ", path, ": token ", *too_big, " at index ", too_big - tokens.begin(),
          " does not fit version 1 (uint16 tokens); use version 2 or 0");

  int32_t header[kTokenShardHeaderInts] = {};
  header[0] = kTokenShardMagic;
  header[1] = version;
  header[2] = int32_t(tokens.size());
  io::AtomicFile file(path, op);
  file.write(header, sizeof header);
  if (version == 2) {
    file.write(tokens.data(), tokens.size() * sizeof(uint32_t));
  } else {
    // Narrowed in chunks so a large shard needs no second full-size buffer.
    std::vector<uint16_t> chunk;
    for (size_t begin = 0; begin < tokens.size(); begin += 1 << 16) {
      const size_t end = std::min(tokens.size(), begin + (1 << 16));
      chunk.assign(tokens.begin() + ptrdiff_t(begin), tokens.begin() + ptrdiff_t(end));
      file.write(chunk.data(), chunk.size() * sizeof(uint16_t));
    }
  }
  file.commit();
}

TokenShard::TokenShard(const std::string& path, int64_t vocab_size) : path_(path) {
  std::shared_ptr<io::MappedFile> m = map_file(path);
  const char* bytes = m->data();
  int32_t header[3];
  std::memcpy(header, bytes, sizeof header);
  if (header[0] != kTokenShardMagic)
    fail(path, "bad magic ", header[0], " (expected ", kTokenShardMagic, "; is this an llm.c/nanoGPT .bin shard?)");
  if (header[1] != 1 && header[1] != 2)
    fail(path, "unknown version ", header[1], " (1 means uint16 tokens, 2 means uint32 tokens)");
  version_ = header[1];
  if (header[2] < 0) fail(path, "negative token count ", header[2], " in the header");
  size_ = header[2];
  const int64_t data_bytes = int64_t(m->size()) - kTokenShardHeaderBytes;
  if (data_bytes != size_ * token_bytes(version_))
    fail(path, "the header counts ", size_, " ", token_type(version_), " tokens (", size_ * token_bytes(version_),
         " bytes) but the file has ", data_bytes, " bytes after the ", kTokenShardHeaderBytes, "-byte header");
  tokens_ = bytes + kTokenShardHeaderBytes;  // page-aligned mapping + 1024: aligned for both types
  if (vocab_size > 0) {
    if (version_ == 1)
      check_vocab(path, static_cast<const uint16_t*>(tokens_), size_, vocab_size);
    else
      check_vocab(path, static_cast<const uint32_t*>(tokens_), size_, vocab_size);
  }
  mapping_ = std::move(m);
}

void TokenShard::check_range(int64_t start, int64_t n) const {
  if (start < 0 || n < 0 || start > size_ - n)
    fail(path_, "tokens [", start, ", ", start + n, ") are outside the shard's ", size_, " tokens");
}

uint32_t TokenShard::operator[](int64_t i) const {
  check_range(i, 1);
  return version_ == 1 ? static_cast<const uint16_t*>(tokens_)[i] : static_cast<const uint32_t*>(tokens_)[i];
}

template <class Out>
void TokenShard::copy_tokens(int64_t start, int64_t n, Out* out) const {
  check_range(start, n);
  if (version_ == 1) {
    std::copy_n(static_cast<const uint16_t*>(tokens_) + start, n, out);
    return;
  }
  const uint32_t* in = static_cast<const uint32_t*>(tokens_) + start;
  if constexpr (sizeof(Out) == 4) {
    const uint32_t* bad = std::find_if(in, in + n, [](uint32_t t) { return t > kMaxInt32Token; });
    if (bad != in + n)
      fail(path_, "token ", *bad, " at index ", start + (bad - in), " does not fit an int32 output");
  }
  std::copy_n(in, n, out);
}

void TokenShard::copy_window(int64_t start, int64_t n, int32_t* out) const { copy_tokens(start, n, out); }
void TokenShard::copy_window(int64_t start, int64_t n, int64_t* out) const { copy_tokens(start, n, out); }

}  // namespace fm::data
