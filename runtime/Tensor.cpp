// Tensor is header-only; this file keeps the runtime library non-empty until its other parts land.
#include "runtime/Tensor.h"
