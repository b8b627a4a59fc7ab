// Reads IDX files, the array format of MNIST and Fashion-MNIST, gzipped or plain.
//
// An IDX file is big-endian: two zero bytes, a type byte, a rank byte, one u32 per
// dimension, then the elements in row-major order. Only unsigned bytes (type 0x08) are
// read: that is what the image and label files hold.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gradc {

struct IdxArray {
  std::vector<int64_t> shape;  // rank 1 to 4, every dim > 0
  std::vector<uint8_t> data;   // row-major, product(shape) bytes
};

// Reads `path`, decompressing it when it is gzipped. Throws gradc::Error naming the file
// when it is missing, unreadable, a corrupt gzip stream, not IDX, of another element type,
// of rank 0 or above 4, empty or over 2^31 bytes, truncated, or followed by extra bytes.
IdxArray read_idx(const std::string& path);

}  // namespace gradc
