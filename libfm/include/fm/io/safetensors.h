#pragma once
// Checkpoint files in the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length N, N bytes of JSON header
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the data section (offsets relative to its start, row-major, little-endian).
// libfm reads and writes F32, F64, BF16, F16, I32, I64, U8 and BOOL.
#include <map>
#include <string>

#include "fm/tensor.h"

namespace fm::io {

using TensorMap = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;  // the header's "__metadata__" object

struct Safetensors {
  TensorMap tensors;
  Metadata metadata;
};

// Writes atomically (temp file in the same directory, fsync, rename over
// `path`, fsync the directory): a process killed at any instant leaves either
// the old file or the new one. Tensors may be non-contiguous or on any device.
// The data section starts at a multiple of 8 bytes and tensors follow each
// other without gaps, widest dtype first, so every tensor is aligned for its
// dtype; the header lists them by name.
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// Maps the file and validates the whole header before returning: its length,
// the JSON, dtypes, shapes, offsets (inside the data section, matching the
// shape, no overlaps, every data byte covered by exactly one tensor) and
// unique names. The tensors are CPU tensors that share the mapping (no copy;
// a tensor whose offset is not aligned for its dtype is copied instead). The
// mapping is private: writing to a loaded tensor never changes the file.
// Any problem throws fm::Error naming the file and, where relevant, the tensor.
Safetensors load_safetensors(const std::string& path);

}  // namespace fm::io
