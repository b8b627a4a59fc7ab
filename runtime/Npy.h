// Arrays as .npy files, numpy's format: how `gradc train --input NAME=FILE.npy` takes its data.
//
// A file is the magic "\x93NUMPY", a major and a minor version byte, the header length (u16 in
// version 1.0, u32 in 2.0 and 3.0), the header, then the elements. The header is a Python dict
// literal such as "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" padded with
// spaces and a newline.
#pragma once

#include <string>

#include "gradc/Tensor.h"

namespace gradc {

// Reads `path` (versions 1.0, 2.0 and 3.0). Dtypes '<f4', '<f8' and '<i4' load as F32, F64 and
// I32; '<i8' (every value must fit in 32 bits), '|u1' and '<u1' load as I32, as labels and
// indices come in. Throws gradc::Error naming the file for a missing file, bad magic, another
// version, a malformed or truncated header, another dtype, big-endian or Fortran-order data, and
// data shorter or longer than the shape says.
Tensor load_npy(const std::string& path);

// Writes `t` as version 1.0 (2.0 when the header needs it) with the header numpy would write,
// replacing `path` all at once like every runtime writer. Throws gradc::Error on failure.
void save_npy(const std::string& path, const Tensor& t);

}  // namespace gradc
