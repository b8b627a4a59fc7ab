// IDX reading through zlib's gz* calls, which read gzipped and plain files alike.
#include "runtime/Idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>

#include "runtime/Format.h"
#include "gradc/Types.h"
#include "runtime/File.h"

namespace gradc {
namespace {

constexpr uint8_t kUnsignedByte = 0x08;
constexpr int kMaxIdxRank = 4;  // below gradc's kMaxRank: IDX files hold images and labels
// Past this, the byte count no longer fits the int that gzread and most consumers take.
constexpr int64_t kMaxBytes = int64_t{1} << 31;
// Reads go in chunks so that a header that claims more than the file holds allocates
// no more than the file does.
constexpr size_t kChunk = size_t{1} << 20;

std::string_view type_name(uint8_t code) {
  switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
  }
  return "not an IDX type";
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    // Opened here, where the type is checked without blocking (a FIFO would hang gzopen).
    int fd = open_regular_file(path);
    file_.reset(gzdopen(fd, "rb"));
    if (!file_) {
      ::close(fd);
      fail(SourceLoc{path_}, "cannot open file: out of memory");
    }
  }

  // Reads up to `n` bytes into `out` and returns how many came; fewer means end of file.
  size_t read(uint8_t* out, size_t n) {
    size_t got = 0;
    while (got < n) {
      auto want = static_cast<unsigned>(std::min(n - got, kChunk));
      int r = gzread(file_.get(), out + got, want);
      // zlib reports a truncated gzip stream as a short read with an error set, not as -1,
      // so the error is checked after every read, short or not.
      check();
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    return got;
  }

 private:
  void check() {
    int code = Z_OK;
    const char* text = gzerror(file_.get(), &code);
    if (code == Z_OK) return;
    std::string_view msg = text;
    // zlib prefixes its message with the path, which the error's location already gives.
    // (gzdopen's streams are named "<fd:N>").
    if (msg.starts_with(path_) && msg.substr(path_.size()).starts_with(": ")) msg.remove_prefix(path_.size() + 2);
    if (auto end = msg.find(">: "); msg.starts_with("<fd:") && end != std::string_view::npos) msg.remove_prefix(end + 3);
    if (code == Z_ERRNO) fail(SourceLoc{path_}, "cannot read file: {}", msg);
    fail(SourceLoc{path_}, "corrupt or truncated gzip stream: {}", msg);
  }

  std::string path_;
  GzFile file_;
};

uint32_t big_endian_u32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

void read_header(Reader& in, const std::string& path, uint8_t* out, size_t n, std::string_view what) {
  size_t got = in.read(out, n);
  if (got < n) fail(SourceLoc{path}, "truncated header: expected {} bytes of {}, found {}", n, what, got);
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  Reader in(path);

  uint8_t magic[4];
  read_header(in, path, magic, 4, "magic number");
  if (magic[0] != 0 || magic[1] != 0)
    fail(SourceLoc{path}, "bad magic {:02x} {:02x}: an IDX file starts with two zero bytes", magic[0], magic[1]);
  if (magic[2] != kUnsignedByte)
    fail(SourceLoc{path}, "unsupported IDX type 0x{:02x} ({}): only 0x08 (unsigned byte) is supported", magic[2],
         type_name(magic[2]));
  int rank = magic[3];
  if (rank == 0 || rank > kMaxIdxRank) fail(SourceLoc{path}, "unsupported rank {}: expected 1 to {}", rank, kMaxIdxRank);

  uint8_t dims[4 * kMaxIdxRank];
  read_header(in, path, dims, 4 * static_cast<size_t>(rank), "dimensions");
  IdxArray a;
  for (int i = 0; i < rank; ++i) a.shape.push_back(big_endian_u32(dims + 4 * i));
  int64_t total = 1;
  for (size_t i = 0; i < a.shape.size(); ++i) {
    int64_t d = a.shape[i];
    if (d == 0) fail(SourceLoc{path}, "dimension {} of shape {} is 0: the array is empty", i, to_string(a.shape));
    // Checked before multiplying, so that four u32 dims never overflow.
    if (total > kMaxBytes / d) fail(SourceLoc{path}, "shape {} is over 2^31 bytes", to_string(a.shape));
    total *= d;
  }

  while (a.data.size() < static_cast<size_t>(total)) {
    size_t have = a.data.size();
    size_t want = std::min(kChunk, static_cast<size_t>(total) - have);
    a.data.resize(have + want);
    size_t got = in.read(a.data.data() + have, want);
    if (got < want)
      fail(SourceLoc{path}, "truncated data: expected {} bytes for shape {}, found {}", total, to_string(a.shape),
           have + got);
  }

  size_t extra = 0;
  std::vector<uint8_t> rest(kChunk);
  for (size_t got; (got = in.read(rest.data(), rest.size())) > 0;) extra += got;
  if (extra > 0)
    fail(SourceLoc{path}, "{} trailing bytes after the {} bytes of data for shape {}", extra, total,
         to_string(a.shape));
  return a;
}

}  // namespace gradc
