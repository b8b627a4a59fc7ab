// Checkpoints as .safetensors files, the format of Hugging Face's safetensors library, so that
// PyTorch and other tools read what gradc writes and the reverse.
//
// A file is a little-endian u64 N, then N bytes of JSON, then the data buffer. The JSON maps each
// tensor's name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, the offsets
// counting from the start of the buffer, and may hold "__metadata__" (strings to strings). The
// tensors are row-major and little-endian, and they tile the buffer: no overlaps, no gaps,
// nothing after the last.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gradc/Tensor.h"

namespace gradc {

// Writes `tensors` (unique names, none "__metadata__") with their data in the order given.
// `path` is replaced all at once (see write_file_atomically) and never left half-written.
// Throws gradc::Error naming `path` and the OS's reason.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors);

// Reads every tensor of `path` (dtypes F32, F64 and I32), ignoring "__metadata__". Throws
// gradc::Error naming the file for anything the format does not allow: a missing or short file,
// a header length past the file or over 100 MB, a header that is not a JSON object of entries
// with a dtype, a shape and data_offsets, another dtype, a bad shape, offsets outside the buffer
// or not matching the shape, tensors that overlap or leave bytes of the buffer uncovered.
std::map<std::string, Tensor> load_safetensors(const std::string& path);

}  // namespace gradc
