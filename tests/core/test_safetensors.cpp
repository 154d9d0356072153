// safetensors checkpoints: round trips, the exact bytes of the format, corrupt
// files, atomic saves under SIGKILL, and files shared with Python's safetensors.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "fm/io/atomic_file.h"
#include "fm/io/safetensors.h"
#include "fm/tensor_impl.h"
#include "helpers.h"

using namespace fm;
using namespace fm::io;
using fm::test::all_close;
using fm::test::read_file;
using fm::test::write_file;
namespace fs = std::filesystem;
using Bytes = std::string;  // file contents

namespace {

const DType kAllDTypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16,
                            DType::i32, DType::i64, DType::u8,   DType::b8};

class SafetensorsIO : public fm::test::TempDirTest {
 protected:
  SafetensorsIO() : TempDirTest("fm_safetensors_") {}
};

Bytes u64_le(uint64_t v) {
  Bytes b(8, '\0');
  for (int i = 0; i < 8; ++i) b[size_t(i)] = char((v >> (8 * i)) & 0xff);
  return b;
}

// A file as the format lays it out: header length, header text, data.
Bytes file_bytes(const std::string& header, const Bytes& data = "") { return u64_le(header.size()) + header + data; }

// A tensor's bytes in row-major order, so comparisons are bit exact.
Bytes raw(const Tensor& t) {
  Tensor c = t.contiguous();
  return Bytes(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

Tensor random_tensor(DType t, const Shape& shape, Generator& g) {
  switch (t) {
    case DType::f32: case DType::f64: return randn(shape, t, &g);
    case DType::bf16: case DType::f16: return randn(shape, DType::f32, &g).to(t);
    case DType::i32: return randint(INT32_MIN, INT32_MAX, shape, t, &g);
    case DType::i64: return randint(-(int64_t(1) << 62), int64_t(1) << 62, shape, t, &g);
    case DType::u8: return randint(0, 256, shape, t, &g);
    case DType::b8: return randint(0, 2, shape, DType::u8, &g).to(DType::b8);
  }
  return {};
}

uint64_t fresh_seed() { return (uint64_t(std::random_device{}()) << 32) | std::random_device{}(); }

// Loading `path` throws fm::Error whose message names the file and holds each of `parts`.
void expect_load_error(const std::string& path, const std::vector<std::string>& parts) {
  try {
    load_safetensors(path);
    ADD_FAILURE() << "loaded " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("load_safetensors: " + path + ": ", 0), 0u) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// ------------------------------------------------------------------ round trips

TEST_F(SafetensorsIO, RoundTripsEveryDTypeAndShape) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Generator gen(seed);
  const std::vector<Shape> shapes = {{}, {0}, {3, 0, 2}, {1}, {7}, {2, 3}, {2, 3, 5}, {1, 2, 1, 2, 1, 2, 1, 3}};
  TensorMap tensors;
  for (DType t : kAllDTypes)
    for (size_t i = 0; i < shapes.size(); ++i)
      tensors["layers." + std::string(name(t)) + "." + std::to_string(i)] = random_tensor(t, shapes[i], gen);
  const Metadata metadata = {{"step", "1200"}, {"config", "{\"lr\": 3e-4}"}, {"empty", ""}, {"ünï", "cödé ✓"}};
  save_safetensors(path("all.safetensors"), tensors, metadata);

  const auto loaded = load_safetensors(path("all.safetensors"));
  EXPECT_EQ(loaded.metadata, metadata);
  ASSERT_EQ(loaded.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    const Tensor& l = loaded.tensors.at(name);
    EXPECT_EQ(l.dtype(), t.dtype());
    EXPECT_EQ(l.shape(), t.shape());
    EXPECT_TRUE(l.device().is_cpu());
    EXPECT_TRUE(l.is_contiguous());
    EXPECT_EQ(raw(l), raw(t));
    EXPECT_NE(l.impl()->storage->owner, nullptr);  // a view of the mapping, not a copy
  }
}

TEST_F(SafetensorsIO, EmptyFilesRoundTrip) {
  save_safetensors(path("none.safetensors"), {});
  EXPECT_EQ(read_file(path("none.safetensors")), file_bytes("{}      "));
  const auto nothing = load_safetensors(path("none.safetensors"));
  EXPECT_TRUE(nothing.tensors.empty());
  EXPECT_TRUE(nothing.metadata.empty());

  // Only zero-size tensors: the data section is empty.
  save_safetensors(path("empty.safetensors"), {{"e", zeros({0, 3})}, {"f", zeros({4, 0}, DType::i64)}}, {{"k", "v"}});
  const auto empty = load_safetensors(path("empty.safetensors"));
  EXPECT_EQ(empty.tensors.at("e").shape(), Shape({0, 3}));
  EXPECT_EQ(empty.tensors.at("f").dtype(), DType::i64);
  EXPECT_EQ(empty.metadata.at("k"), "v");
}

TEST_F(SafetensorsIO, WritesNonContiguousTensorsAsTheirValues) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Generator gen(seed);
  Tensor base = randn({4, 5, 6}, DType::f64, &gen);
  const TensorMap views = {
      {"permuted", base.permute({2, 0, 1})},
      {"strided", base.slice(2, 1, 6, 2)},
      {"selected", base.select(1, 3)},
      {"expanded", randn({1, 5}, {}, &gen).expand({3, 5})},
      {"transposed_bf16", base.to(DType::bf16).transpose(0, 2)},
      {"offset_view", base.narrow(0, 2, 2)},
      {"requires_grad", randn({3}, TensorOptions().requires_grad(), &gen)},
  };
  save_safetensors(path("views.safetensors"), views);
  const auto loaded = load_safetensors(path("views.safetensors"));
  for (const auto& [name, t] : views) {
    SCOPED_TRACE(name);
    EXPECT_EQ(loaded.tensors.at(name).shape(), t.shape());
    EXPECT_EQ(raw(loaded.tensors.at(name)), raw(t.detach().contiguous()));
    EXPECT_FALSE(loaded.tensors.at(name).requires_grad());
  }
}

TEST_F(SafetensorsIO, LoadedTensorsOwnTheMappingAndNeverWriteTheFile) {
  save_safetensors(path("w.safetensors"), {{"w", arange(0, 6).reshape({2, 3})}});
  const Bytes before = read_file(path("w.safetensors"));
  Tensor w = load_safetensors(path("w.safetensors")).tensors.at("w");  // the map is gone, w lives
  fs::remove(path("w.safetensors"));                                      // and the mapping outlives the name
  EXPECT_TRUE(all_close(w, {0, 1, 2, 3, 4, 5}));
  write_file(path("w.safetensors"), before);
  Tensor again = load_safetensors(path("w.safetensors")).tensors.at("w");
  again.fill_(-1);  // private mapping: copy on write
  EXPECT_TRUE(all_close(again, std::vector<double>(6, -1)));
  EXPECT_EQ(read_file(path("w.safetensors")), before);
  EXPECT_TRUE(all_close(load_safetensors(path("w.safetensors")).tensors.at("w"), {0, 1, 2, 3, 4, 5}));
}

TEST_F(SafetensorsIO, AlignsEveryTensorForZeroCopyLoads) {
  // Odd sizes in name order would misalign the wider tensors that follow them.
  save_safetensors(path("mixed.safetensors"), {{"a_u8", zeros({3}, DType::u8)},
                                               {"b_f16", ones({3}, DType::f16)},
                                               {"c_f64", full({2}, 2.5, DType::f64)},
                                               {"d_f32", full({1}, 7)}});
  const auto loaded = load_safetensors(path("mixed.safetensors"));
  for (const auto& [name, t] : loaded.tensors) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % t.itemsize(), 0u) << name;
    EXPECT_NE(t.impl()->storage->owner, nullptr) << name;
  }
  EXPECT_TRUE(all_close(loaded.tensors.at("c_f64"), {2.5, 2.5}));
}

TEST_F(SafetensorsIO, CopiesMisalignedTensorsFromOtherWriters) {
  // Another writer may put an f32 at an odd offset; it loads correctly, as a copy.
  const float value = 1.5f;
  Bytes data = "\x09" + Bytes(reinterpret_cast<const char*>(&value), 4);
  write_file(path("odd.safetensors"),
             file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                        R"("b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}})",
                        data));
  const auto loaded = load_safetensors(path("odd.safetensors"));
  EXPECT_EQ(loaded.tensors.at("a").to_vector<uint8_t>(), std::vector<uint8_t>{9});
  EXPECT_EQ(loaded.tensors.at("b").to_vector<float>(), std::vector<float>{1.5f});
  EXPECT_EQ(loaded.tensors.at("b").impl()->storage->owner, nullptr);
}

// ------------------------------------------------------------------ the exact bytes

TEST_F(SafetensorsIO, WritesTheBytesTheSpecDescribes) {
  save_safetensors(path("small.safetensors"),
                   {{"b", tensor(std::vector<float>{1.0f, -2.0f})},
                    {"a", scalar_tensor(7, DType::i64)},
                    {"c", tensor(std::vector<uint8_t>{1, 2, 3})}},
                   {{"k", "v"}});
  // Metadata first, then tensors by name; data widest dtype first: a (i64), b (f32), c (u8).
  std::string header =
      R"({"__metadata__":{"k":"v"},)"
      R"("a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("c":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}})";
  ASSERT_EQ(header.size(), 186u);
  header += Bytes(6, ' ');  // 8 + 192: the data section starts at a multiple of 8
  const Bytes data = Bytes("\x07\0\0\0\0\0\0\0", 8)      // 7 as little-endian i64
                     + Bytes("\x00\x00\x80\x3f", 4)        // 1.0f = 0x3f800000
                     + Bytes("\x00\x00\x00\xc0", 4)        // -2.0f = 0xc0000000
                     + Bytes("\x01\x02\x03", 3);
  const Bytes expected = Bytes("\xc0\0\0\0\0\0\0\0", 8) + header + data;  // 192 = 0xc0
  EXPECT_EQ(read_file(path("small.safetensors")), expected);
}

// ------------------------------------------------------------------ corrupt files

TEST_F(SafetensorsIO, RejectsEveryTruncation) {
  save_safetensors(path("full.safetensors"),
                   {{"w", randn({3, 4})}, {"b", zeros({5}, DType::bf16)}, {"ids", arange(0, 3, 1, DType::i64)}},
                   {{"step", "1"}});
  const Bytes full = read_file(path("full.safetensors"));
  uint64_t header_size;
  std::memcpy(&header_size, full.data(), 8);
  for (size_t cut = 0; cut < full.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    write_file(path("cut.safetensors"), full.substr(0, cut));
    if (cut < 8)
      expect_load_error(path("cut.safetensors"), {"shorter than the 8-byte header length"});
    else if (cut < 8 + header_size)
      expect_load_error(path("cut.safetensors"), {"header length", "runs past the end of the file"});
    else
      expect_load_error(path("cut.safetensors"), {"tensor '", "run past the data section"});
  }
}

TEST_F(SafetensorsIO, RejectsBadHeaderLengths) {
  const std::string p = path("bad.safetensors");
  write_file(p, u64_le(100) + "{}");
  expect_load_error(p, {"header length 100 runs past the end of the file (10 bytes)"});
  write_file(p, u64_le(200'000'000) + "{}");
  expect_load_error(p, {"header length 200000000 exceeds the limit of 100000000 bytes"});
  write_file(p, u64_le(UINT64_MAX) + "{}");
  expect_load_error(p, {"exceeds the limit"});
  write_file(p, u64_le(0));
  expect_load_error(p, {"header does not start with '{'"});
  write_file(p, file_bytes("[1, 2]"));
  expect_load_error(p, {"header does not start with '{'"});
  write_file(p, "");
  expect_load_error(p, {"file is 0 bytes, shorter than the 8-byte header length"});
  expect_load_error(path("missing.safetensors"), {"cannot open"});
  expect_load_error(dir_.string(), {"not a regular file"});
}

TEST_F(SafetensorsIO, RejectsMalformedHeaders) {
  const std::string p = path("bad.safetensors");
  const Bytes four_floats(16, '\0');
  struct Case {
    std::string header;
    Bytes data;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {R"({"w": {"dtype": "F32", )", "", {"header is not valid JSON"}},
      {"{\"w\xff\": 1}", "", {"header is not valid JSON"}},  // not UTF-8
      {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}} x)", four_floats, {"not valid JSON"}},
      {R"({"w": [1]})", "", {"tensor 'w': entry must be an object"}},
      {R"({"w": {"shape": [4], "data_offsets": [0, 16]}})", four_floats, {"tensor 'w': missing \"dtype\""}},
      {R"({"w": {"dtype": "F32", "data_offsets": [0, 16]}})", four_floats, {"tensor 'w': missing \"shape\""}},
      {R"({"w": {"dtype": "F32", "shape": [4]}})", four_floats, {"tensor 'w': missing \"data_offsets\""}},
      {R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})", four_floats,
       {"tensor 'w': unknown dtype 'F128' (libfm reads F32, F64, BF16, F16, I32, I64, U8, BOOL)"}},
      {R"({"w": {"dtype": "I8", "shape": [16], "data_offsets": [0, 16]}})", four_floats,
       {"tensor 'w': dtype I8 has no libfm equivalent"}},
      {R"({"w": {"dtype": 4, "shape": [4], "data_offsets": [0, 16]}})", four_floats, {"dtype must be a string"}},
      {R"({"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}})", four_floats,
       {"tensor 'w': shape [-1,4] must hold non-negative integers"}},
      {R"({"w": {"dtype": "F32", "shape": [2.0, 2], "data_offsets": [0, 16]}})", four_floats,
       {"must hold non-negative integers"}},
      {R"({"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}})", four_floats, {"shape must be an array"}},
      {R"({"w": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,4], "data_offsets": [0, 16]}})", four_floats,
       {"has 9 dimensions; libfm supports at most 8"}},
      {R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 16]}})", four_floats,
       {"needs more than 2^64 bytes"}},
      {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 32]}})", four_floats,
       {"tensor 'w': data_offsets [0, 32] run past the data section (16 bytes)"}},
      {R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 8]}})", four_floats, {"end before they begin"}},
      {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}})", four_floats,
       {"data_offsets [-16,0] must be two non-negative integers"}},
      {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8, 16]}})", four_floats,
       {"must be two non-negative integers"}},
      {R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", four_floats,
       {"tensor 'w': data_offsets [0, 16] do not match shape [3] of F32 (12 bytes)"}},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
       R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
       Bytes(12, '\0'), {"tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"}},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
       R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
       Bytes(8, '\0'), {"overlap tensor"}},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
       R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
       Bytes(12, '\0'), {"bytes [4, 8) of the data section belong to no tensor"}},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", Bytes(8, '\0'),
       {"bytes [0, 4) of the data section belong to no tensor"}},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", Bytes(8, '\0'),
       {"bytes [4, 8) of the data section belong to no tensor"}},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
       R"( "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
       Bytes(8, '\0'), {"tensor name 'a' appears twice in the header"}},
      {R"({"a": {"dtype": "F32", "dtype": "F16", "shape": [1], "data_offsets": [0, 4]}})", Bytes(4, '\0'),
       {"key 'dtype' appears twice"}},
      {R"({"__metadata__": {"step": 3}})", "", {"__metadata__ 'step' must be a string, not number"}},
      {R"({"__metadata__": ["a"]})", "", {"__metadata__ must be an object of strings"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    write_file(p, file_bytes(c.header, c.data));
    expect_load_error(p, c.message);
  }
}

TEST_F(SafetensorsIO, NamesFileTensorShapeAndDTypeOnAMismatch) {
  const std::string p = path("ckpt.safetensors");
  write_file(p, file_bytes(R"({"h.0.attn.weight":{"dtype":"F32","shape":[4,8],"data_offsets":[0,100]}})",
                           Bytes(100, '\0')));
  try {
    load_safetensors(p);
    ADD_FAILURE() << "loaded";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "load_safetensors: " + p +
                                         ": tensor 'h.0.attn.weight': data_offsets [0, 100] do not match shape "
                                         "[4,8] of F32 (128 bytes)");
  }
}

TEST_F(SafetensorsIO, RandomHeaderCorruptionLoadsOrThrowsFmError) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  save_safetensors(path("good.safetensors"),
                   {{"w", randn({3, 4})}, {"b", zeros({4}, DType::f16)}, {"e", zeros({0})}, {"i", ones({2}, DType::i64)}},
                   {{"step", "12"}});
  const Bytes good = read_file(path("good.safetensors"));
  uint64_t header_size;
  std::memcpy(&header_size, good.data(), 8);
  int loaded = 0, rejected = 0;
  for (int round = 0; round < 3000; ++round) {
    Bytes bad = good;
    const int flips = 1 + int(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      // Mostly the header text, sometimes its length; random or JSON-significant bytes.
      const size_t at = rng() % 10 == 0 ? rng() % 8 : 8 + rng() % header_size;
      static const char kPunctuation[] = "{}[],:\"0123456789-. ";
      bad[at] = rng() % 2 ? char(rng()) : kPunctuation[rng() % (sizeof kPunctuation - 1)];
    }
    write_file(path("bad.safetensors"), bad);
    try {
      const auto s = load_safetensors(path("bad.safetensors"));
      for (const auto& [name, t] : s.tensors) (void)raw(t);  // every byte it claims must be readable
      ++loaded;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path("bad.safetensors")), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  std::cout << "corrupted headers: " << loaded << " still loaded, " << rejected << " rejected\n";
}

// ------------------------------------------------------------------ atomic writes

TEST_F(SafetensorsIO, AtomicFileReplacesTheTargetOnlyOnCommit) {
  const std::string p = path("f.bin");
  write_file(p, "old");
  std::string temp;
  {
    AtomicFile f(p, "test");
    temp = f.temp_path();
    EXPECT_EQ(temp.rfind(p + ".tmp." + std::to_string(::getpid()) + ".", 0), 0u) << temp;
    f.write("new", 3);
  }  // abandoned
  EXPECT_EQ(read_file(p), "old");
  EXPECT_FALSE(fs::exists(temp));
  {
    AtomicFile f(p, "test");
    EXPECT_NE(f.temp_path(), temp);  // unique per writer, even in one process
    f.write("new", 3);
    f.commit();
  }
  EXPECT_EQ(read_file(p), "new");
  EXPECT_EQ(files_in_dir(), std::vector<std::string>{"f.bin"});
}

TEST_F(SafetensorsIO, FailedSavesLeaveTheOldFile) {
  const std::string p = path("ckpt.safetensors");
  save_safetensors(p, {{"w", ones({2})}});
  const Bytes before = read_file(p);
  auto expect_save_error = [&](const std::string& target, const TensorMap& tensors, const Metadata& metadata,
                               const std::string& part) {
    try {
      save_safetensors(target, tensors, metadata);
      ADD_FAILURE() << "saved";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("save_safetensors: " + target + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(part), std::string::npos) << msg;
    }
  };
  expect_save_error(p, {{"w\xff", ones({2})}}, {}, "valid UTF-8");
  expect_save_error(p, {{"w", ones({2})}}, {{"k", "\xc3"}}, "valid UTF-8");
  expect_save_error(p, {{"__metadata__", ones({2})}}, {}, "not a valid tensor name");
  expect_save_error(p, {{"w", Tensor()}}, {}, "tensor 'w' is undefined");
  expect_save_error(path("no/such/dir/ckpt.safetensors"), {{"w", ones({2})}}, {}, "cannot create temp file");
  EXPECT_EQ(read_file(p), before);
  EXPECT_EQ(files_in_dir(), std::vector<std::string>{"ckpt.safetensors"});
}

// Version k: every element of both tensors is k, and the metadata says k.
void save_version(const std::string& path, int64_t k, std::vector<float>& a, std::vector<int64_t>& b) {
  std::fill(a.begin(), a.end(), float(k));
  std::fill(b.begin(), b.end(), k);
  save_safetensors(path,
                   {{"a", from_blob(a.data(), {int64_t(a.size())}, DType::f32)},
                    {"b", from_blob(b.data(), {int64_t(b.size())}, DType::i64)}},
                   {{"version", std::to_string(k)}});
}

TEST_F(SafetensorsIO, KilledWriterLeavesOneCompleteVersion) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::string p = path("ckpt.safetensors");
  std::vector<float> a(1 << 18);  // 1 MiB: large enough that kills land mid-write
  std::vector<int64_t> b(1 << 16);
  save_version(p, 0, a, b);
  int64_t newest = 0;
  int rounds_with_a_new_version = 0;
  for (int round = 0; round < 20; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      // Saves versions 1, 2, 3, ... until killed; never returns into the test.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      try {
        for (int64_t k = 1;; ++k) save_version(p, 1000 * (round + 1) + k, a, b);
      } catch (...) {
        ::_exit(1);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500 + rng() % 40000));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child ended by itself: " << status;

    const auto s = load_safetensors(p);
    const int64_t k = std::stoll(s.metadata.at("version"));
    EXPECT_EQ(s.tensors.at("a").to_vector<float>(), std::vector<float>(a.size(), float(k))) << "version " << k;
    EXPECT_EQ(s.tensors.at("b").to_vector<int64_t>(), std::vector<int64_t>(b.size(), k)) << "version " << k;
    newest = std::max(newest, k);
    rounds_with_a_new_version += k / 1000 == round + 1;
  }
  EXPECT_GT(newest, 0) << "no child finished a save: the test proved nothing";

  // Killed writers may leave temp files; they carry the child's pid and do not disturb later saves.
  const std::string ours = "ckpt.safetensors.tmp." + std::to_string(::getpid()) + ".";
  for (const auto& name : files_in_dir()) EXPECT_NE(name.rfind(ours, 0), 0u) << name;
  const size_t files_before = files_in_dir().size();
  std::cout << rounds_with_a_new_version << " of 20 rounds found a new version; killed writers left " << files_before - 1
            << " temp files\n";
  save_version(p, 7, a, b);
  EXPECT_EQ(load_safetensors(p).metadata.at("version"), "7");
  EXPECT_EQ(files_in_dir().size(), files_before);
}

// ------------------------------------------------------------------ Python interop

using nlohmann::json;

fs::path fixtures_dir() {
  if (const char* src = std::getenv("FM_SOURCE_DIR")) return fs::path(src) / "tests" / "fixtures";
  return fs::path(__FILE__).parent_path().parent_path() / "fixtures";
}

bool shell_succeeds(const std::string& command) { return std::system((command + " > /dev/null 2>&1").c_str()) == 0; }

const char* format_name(DType t) {
  static const char* const kNames[] = {"F32", "F64", "BF16", "F16", "I32", "I64", "U8", "BOOL"};
  return kNames[int(t)];  // in DType's order
}

// The values of a sidecar (tests/fixtures/sidecar.py): floats JSON cannot hold are strings.
json sidecar_values(const Tensor& t) {
  json values = json::array();
  if (is_floating(t.dtype())) {
    for (double v : t.to_vector<double>())
      values.push_back(std::isnan(v) ? json("nan") : std::isinf(v) ? json(v > 0 ? "inf" : "-inf") : json(v));
  } else {
    for (int64_t v : t.to_vector<int64_t>()) values.push_back(v);
  }
  return values;
}

double sidecar_double(const json& v) {
  if (!v.is_string()) return v.get<double>();
  const std::string s = v.get<std::string>();
  return s == "nan" ? NAN : s == "inf" ? INFINITY : -INFINITY;
}

void expect_matches_sidecar(const io::Safetensors& file, const json& expected) {
  EXPECT_EQ(file.metadata, expected.at("metadata").get<Metadata>());
  ASSERT_EQ(file.tensors.size(), expected.at("tensors").size());
  for (const auto& [name, e] : expected.at("tensors").items()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(file.tensors.count(name));
    const Tensor& t = file.tensors.at(name);
    EXPECT_EQ(format_name(t.dtype()), e.at("dtype").get<std::string>());
    EXPECT_EQ(t.shape(), Shape(e.at("shape").get<std::vector<int64_t>>()));
    const json& values = e.at("values");
    ASSERT_EQ(size_t(t.numel()), values.size());
    if (is_floating(t.dtype())) {
      const std::vector<double> actual = t.to_vector<double>();
      for (size_t i = 0; i < actual.size(); ++i) {
        const double want = sidecar_double(values[i]);
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(actual[i])) << "element " << i;
        } else {
          EXPECT_EQ(actual[i], want) << "element " << i;
          EXPECT_EQ(std::signbit(actual[i]), std::signbit(want)) << "element " << i;
        }
      }
    } else {
      EXPECT_EQ(t.to_vector<int64_t>(), values.get<std::vector<int64_t>>());
    }
  }
}

TEST_F(SafetensorsIO, ReadsFilesPythonWrote) {
  const fs::path dir = fixtures_dir();
  ASSERT_TRUE(fs::exists(dir / "python_written.safetensors")) << dir << " (set FM_SOURCE_DIR to the source tree)";
  std::ifstream sidecar(dir / "python_written.json");
  expect_matches_sidecar(load_safetensors((dir / "python_written.safetensors").string()), json::parse(sidecar));
}

TEST_F(SafetensorsIO, PythonReadsFilesLibfmWrote) {
  if (!shell_succeeds("python3 -c 'import safetensors, numpy'"))
    GTEST_SKIP() << "python3 with numpy and safetensors is not installed";
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Generator gen(seed);
  TensorMap tensors;
  for (DType t : kAllDTypes) tensors[std::string("x.") + name(t)] = random_tensor(t, {3, 5}, gen).t();
  tensors["scalar"] = scalar_tensor(-0.0);
  tensors["empty"] = zeros({2, 0}, DType::i32);
  tensors["special"] = tensor(std::vector<float>{INFINITY, -INFINITY, NAN, -0.0f, 1e-45f});
  if (!shell_succeeds("python3 -c 'import torch'")) tensors.erase("x.bfloat16");  // numpy has no bf16
  const Metadata metadata = {{"format", "pt"}, {"ünï", "\"quoted\" \\ ✓"}};

  const std::string file = path("libfm.safetensors"), expected = path("expected.json");
  save_safetensors(file, tensors, metadata);
  json doc = {{"metadata", metadata}, {"tensors", json::object()}};
  for (const auto& [name, t] : tensors)
    doc["tensors"][name] = {{"dtype", format_name(t.dtype())}, {"shape", t.shape().vec()}, {"values", sidecar_values(t)}};
  std::ofstream(expected) << doc.dump(1);

  const std::string checker = (fixtures_dir() / "check_libfm_file.py").string();
  EXPECT_EQ(std::system(("python3 -B '" + checker + "' '" + file + "' '" + expected + "'").c_str()), 0);
  // And the sidecar schema is read back the same way on this side.
  expect_matches_sidecar(load_safetensors(file), doc);
}

}  // namespace
