#include "fm/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "fm/factory.h"
#include "fm/io/atomic_file.h"
#include "fm/io/mapped_file.h"

namespace fm::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeName {
  const char* name;
  DType dtype;
};
constexpr DTypeName kDTypeNames[] = {{"F32", DType::f32}, {"F64", DType::f64}, {"BF16", DType::bf16},
                                     {"F16", DType::f16}, {"I32", DType::i32}, {"I64", DType::i64},
                                     {"U8", DType::u8},   {"BOOL", DType::b8}};
constexpr const char* kSupportedNames = "F32, F64, BF16, F16, I32, I64, U8, BOOL";
// Valid in the format, but libfm has no such dtype.
constexpr const char* kForeignDTypes[] = {"I8",      "I16",     "U16",     "U32",     "U64",     "F8_E4M3",
                                          "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",      "C64"};

const char* format_name(DType t) {
  for (const auto& d : kDTypeNames)
    if (d.dtype == t) return d.name;
  error("safetensors: no format name for dtype ", t);
}

// ------------------------------------------------------------------ writing

struct PlannedTensor {
  const std::string* name;
  Tensor tensor;  // as given: any layout, any device
  uint64_t begin = 0, end = 0;
};

std::string header_text(const std::string& path, const std::vector<PlannedTensor>& tensors, const Metadata& metadata) {
  // ordered_json keeps insertion order: metadata first (as the Python writer does), then tensors by name.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  for (const auto& t : tensors) {
    nlohmann::ordered_json entry;
    entry["dtype"] = format_name(t.tensor.dtype());
    entry["shape"] = t.tensor.shape().vec();
    entry["data_offsets"] = {t.begin, t.end};
    header[*t.name] = std::move(entry);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    error("save_safetensors: ", path, ": tensor names and metadata must be valid UTF-8 (", e.what(), ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  return text;
}

// ------------------------------------------------------------------ reading

// Prefixes every message with the operation and the file.
struct Context {
  const std::string& path;
  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    error("load_safetensors: ", path, ": ", parts...);
  }
  template <class... Parts>
  [[noreturn]] void fail_tensor(const std::string& name, const Parts&... parts) const {
    fail("tensor '", name, "': ", parts...);
  }
};

std::shared_ptr<MappedFile> map_file(const Context& cx) {
  // Writable (copy on write): loaded tensors can be updated in place and the file never changes.
  auto m = std::make_shared<MappedFile>(cx.path, "load_safetensors: ", /*writable=*/true);
  if (m->size() < 8) cx.fail("file is ", m->size(), " bytes, shorter than the 8-byte header length");
  return m;
}

// Parses the header JSON, rejecting a key that appears twice in one object
// (nlohmann would silently keep the last).
json parse_header(const Context& cx, const char* text, size_t n) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  bool duplicate_is_tensor = false;
  auto on_event = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        duplicate = key;
        duplicate_is_tensor = open_objects.size() == 1;
      }
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + n, on_event);
  } catch (const json::exception& e) {
    cx.fail("header is not valid JSON: ", e.what());
  }
  if (!duplicate.empty()) {
    if (duplicate_is_tensor) cx.fail("tensor name '", duplicate, "' appears twice in the header");
    cx.fail("key '", duplicate, "' appears twice in one object of the header");
  }
  return header;
}

Metadata parse_metadata(const Context& cx, const json& value) {
  if (!value.is_object()) cx.fail("__metadata__ must be an object of strings, not ", value.type_name());
  Metadata out;
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) cx.fail("__metadata__ '", key, "' must be a string, not ", v.type_name());
    out.emplace(key, v.get<std::string>());
  }
  return out;
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

DType parse_dtype(const Context& cx, const std::string& name, const json& value) {
  if (!value.is_string()) cx.fail_tensor(name, "dtype must be a string, not ", value.type_name());
  const std::string& s = value.get_ref<const std::string&>();
  for (const auto& d : kDTypeNames)
    if (s == d.name) return d.dtype;
  for (const char* foreign : kForeignDTypes)
    if (s == foreign) cx.fail_tensor(name, "dtype ", s, " has no libfm equivalent (libfm reads ", kSupportedNames, ")");
  cx.fail_tensor(name, "unknown dtype '", s, "' (libfm reads ", kSupportedNames, ")");
}

Shape parse_shape(const Context& cx, const std::string& name, const json& value) {
  if (!value.is_array()) cx.fail_tensor(name, "shape must be an array, not ", value.type_name());
  if (value.size() > size_t(kMaxDims))
    cx.fail_tensor(name, "shape ", value.dump(), " has ", value.size(), " dimensions; libfm supports at most ", kMaxDims);
  Shape shape;
  for (const json& d : value) {
    // nlohmann keeps non-negative integers as unsigned; signed means negative.
    if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      cx.fail_tensor(name, "shape ", value.dump(), " must hold non-negative integers");
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

const json& field(const Context& cx, const std::string& name, const json& entry, const char* key) {
  auto it = entry.find(key);
  if (it == entry.end()) cx.fail_tensor(name, "missing \"", key, "\"");
  return *it;
}

// Unknown fields are ignored, as the reference implementation does.
Entry parse_entry(const Context& cx, const std::string& name, const json& value, uint64_t data_size) {
  if (!value.is_object()) cx.fail_tensor(name, "entry must be an object, not ", value.type_name());
  Entry e{name, parse_dtype(cx, name, field(cx, name, value, "dtype")),
          parse_shape(cx, name, field(cx, name, value, "shape")), 0, 0};
  const json& offsets = field(cx, name, value, "data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
    cx.fail_tensor(name, "data_offsets ", offsets.dump(), " must be two non-negative integers");
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.begin > e.end) cx.fail_tensor(name, "data_offsets [", e.begin, ", ", e.end, "] end before they begin");
  if (e.end > data_size)
    cx.fail_tensor(name, "data_offsets [", e.begin, ", ", e.end, "] run past the data section (", data_size, " bytes)");
  uint64_t bytes = itemsize(e.dtype);
  for (int64_t d : e.shape)
    if (__builtin_mul_overflow(bytes, uint64_t(d), &bytes))
      cx.fail_tensor(name, "shape ", e.shape, " of ", format_name(e.dtype), " needs more than 2^64 bytes");
  if (e.end - e.begin != bytes)
    cx.fail_tensor(name, "data_offsets [", e.begin, ", ", e.end, "] do not match shape ", e.shape, " of ",
                   format_name(e.dtype), " (", bytes, " bytes)");
  return e;
}

// The format requires the tensors to tile the data section exactly: no
// overlaps, no bytes that belong to no tensor.
void check_coverage(const Context& cx, const std::vector<Entry>& entries, uint64_t data_size) {
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return std::pair(a->begin, a->end) < std::pair(b->begin, b->end); });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : by_offset) {
    if (e->begin < covered)
      cx.fail_tensor(e->name, "data_offsets [", e->begin, ", ", e->end, "] overlap tensor '", previous->name, "' [",
                     previous->begin, ", ", previous->end, "]");
    if (e->begin > covered)
      cx.fail("bytes [", covered, ", ", e->begin, ") of the data section belong to no tensor");
    covered = e->end;
    previous = e;
  }
  if (covered != data_size) cx.fail("bytes [", covered, ", ", data_size, ") of the data section belong to no tensor");
}

Tensor tensor_in_mapping(const Entry& e, char* data, const std::shared_ptr<MappedFile>& mapping) {
  char* p = data + e.begin;
  // Files from other writers may place a tensor at an offset its dtype cannot
  // be read from directly; those few are copied.
  if (reinterpret_cast<uintptr_t>(p) % itemsize(e.dtype) != 0) return from_buffer(p, e.shape, e.dtype);
  return from_blob(p, e.shape, e.dtype, mapping);
}

}  // namespace

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  std::vector<PlannedTensor> planned;  // by name
  for (const auto& [name, t] : tensors) {
    if (name == kMetadataKey) error("save_safetensors: ", path, ": '", kMetadataKey, "' is not a valid tensor name");
    if (!t.defined()) error("save_safetensors: ", path, ": tensor '", name, "' is undefined");
    planned.push_back({&name, t.detach()});
  }
  // Widest dtype first: as the data section starts 8-byte aligned, each tensor
  // then starts at an offset aligned for its dtype, and loads need no copy.
  std::vector<PlannedTensor*> data_order;
  for (auto& p : planned) data_order.push_back(&p);
  std::stable_sort(data_order.begin(), data_order.end(),
                   [](const PlannedTensor* a, const PlannedTensor* b) { return a->tensor.itemsize() > b->tensor.itemsize(); });
  uint64_t offset = 0;
  for (PlannedTensor* p : data_order) {
    p->begin = offset;
    offset += p->tensor.nbytes();
    p->end = offset;
  }

  const std::string header = header_text(path, planned, metadata);
  const uint64_t header_size = header.size();
  AtomicFile file(path, "save_safetensors");
  file.write(&header_size, sizeof header_size);
  file.write(header.data(), header.size());
  for (const PlannedTensor* p : data_order) {
    if (p->tensor.nbytes() == 0) continue;
    // One tensor at a time: a host copy (from a GPU, or to make it contiguous) lives only while it is written.
    const Tensor host = p->tensor.to(Device::cpu()).contiguous();
    file.write(host.data_ptr(), host.nbytes());
  }
  file.commit();
}

Safetensors load_safetensors(const std::string& path) {
  const Context cx{path};
  std::shared_ptr<MappedFile> mapping = map_file(cx);
  char* bytes = mapping->data();
  uint64_t header_size;
  std::memcpy(&header_size, bytes, sizeof header_size);
  if (header_size > kMaxHeaderBytes)
    cx.fail("header length ", header_size, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  if (header_size > mapping->size() - 8)
    cx.fail("header length ", header_size, " runs past the end of the file (", mapping->size(), " bytes)");
  if (header_size == 0 || bytes[8] != '{') cx.fail("header does not start with '{'");
  const json header = parse_header(cx, bytes + 8, header_size);

  Safetensors out;
  std::vector<Entry> entries;
  const uint64_t data_size = mapping->size() - 8 - header_size;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey)
      out.metadata = parse_metadata(cx, value);
    else
      entries.push_back(parse_entry(cx, key, value, data_size));
  }
  check_coverage(cx, entries, data_size);
  char* data = bytes + 8 + header_size;
  for (const auto& e : entries) out.tensors.emplace(e.name, tensor_in_mapping(e, data, mapping));
  return out;
}

}  // namespace fm::io
