// Safetensors reading and writing.
//
// Reading checks the whole header before it allocates a tensor, then reads each tensor's bytes
// straight into it, so that a corrupt file costs no more memory than its header and a large
// checkpoint is never held twice.
#include "runtime/Safetensors.h"

#include "runtime/File.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "runtime/Format.h"
#include "gradc/Types.h"

namespace gradc {
namespace {

// The format is little-endian and a Tensor holds native bytes, which are copied as they are.
static_assert(std::endian::native == std::endian::little, "gradc's file formats assume a little-endian host");

using Json = nlohmann::json;

// The reference implementation's limit: past it a header is corrupt, or meant to exhaust memory.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int kMaxJsonDepth = 64;
constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::string_view kSupported = "F32, F64, I32";

std::string_view safetensors_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
  }
  return "?";
}

std::optional<DType> parse_safetensors_dtype(std::string_view s) {
  for (DType t : {DType::F32, DType::F64, DType::I32})
    if (s == safetensors_name(t)) return t;
  return std::nullopt;
}

// ---- writing

void check_names(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors) {
  std::set<std::string_view> seen;
  for (const auto& [name, t] : tensors) {
    GRADC_ASSERT(t != nullptr, "tensor \"{}\" is null", name);
    if (name == kMetadataKey) fail(SourceLoc{path}, "cannot save a tensor named \"{}\": the format reserves it", name);
    if (!seen.insert(name).second) fail(SourceLoc{path}, "cannot save two tensors named \"{}\"", name);
  }
}

// ---- reading

struct Entry {
  std::string name;
  TensorType type;
  uint64_t begin = 0, end = 0;
};

// A JSON number that is a non-negative integer, or nullopt.
std::optional<uint64_t> as_index(const Json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
  return std::nullopt;
}

// "F32, I32": every dtype the header names, for the message about an unsupported one.
std::string found_dtypes(const Json& header) {
  std::set<std::string> found;
  for (const auto& [name, info] : header.items())
    if (info.is_object() && info.contains("dtype") && info["dtype"].is_string()) found.insert(info["dtype"]);
  return fmt::format("{}", fmt::join(found, ", "));
}

Entry parse_entry(const std::string& path, const Json& header, const std::string& name, const Json& info,
                  uint64_t buffer_size) {
  SourceLoc loc{path};
  if (!info.is_object())
    fail(loc, "entry \"{}\" is a JSON {}, expected an object with dtype, shape and data_offsets", name,
         info.type_name());
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) fail(loc, "tensor \"{}\" has no \"{}\"", name, key);

  const Json& dtype = info["dtype"];
  if (!dtype.is_string())
    fail(loc, "tensor \"{}\": dtype is {}, expected a string such as \"F32\"", name, dtype.dump());
  auto type = parse_safetensors_dtype(dtype.get<std::string>());
  if (!type)
    fail(loc, "tensor \"{}\" has unsupported dtype {} (the file holds {}; gradc reads {})", name,
         dtype.get<std::string>(), found_dtypes(header), kSupported);

  Entry e{name, {*type, {}}};
  const Json& shape = info["shape"];
  if (!shape.is_array()) fail(loc, "tensor \"{}\": shape is {}, expected an array of sizes", name, shape.dump());
  if (shape.size() > static_cast<size_t>(kMaxRank))
    fail(loc, "tensor \"{}\": shape has {} dims; gradc reads tensors of at most {}", name, shape.size(), kMaxRank);
  for (const Json& d : shape) {
    auto size = as_index(d);
    if (!size)
      fail(loc, "tensor \"{}\": shape {} has dim {}, expected a non-negative integer", name, shape.dump(), d.dump());
    // Clamped, so that a dim past int64 still counts as too many elements and not as negative.
    e.type.shape.push_back(static_cast<int64_t>(std::min<uint64_t>(*size, kMaxElements + 1)));
  }
  auto numel = checked_numel(e.type.shape);
  if (!numel) fail(loc, "tensor \"{}\": shape {} has over 2^48 elements", name, shape.dump());

  const Json& offsets = info["data_offsets"];
  auto begin = offsets.is_array() && offsets.size() == 2 ? as_index(offsets[0]) : std::nullopt;
  auto end = offsets.is_array() && offsets.size() == 2 ? as_index(offsets[1]) : std::nullopt;
  if (!begin || !end)
    fail(loc, "tensor \"{}\": data_offsets is {}, expected [begin, end], two non-negative integers", name,
         offsets.dump());
  if (*end < *begin) fail(loc, "tensor \"{}\": data_offsets [{}, {}] end before they begin", name, *begin, *end);
  if (*end > buffer_size)
    fail(loc, "tensor \"{}\": data_offsets [{}, {}] reach past the end of the {}-byte data buffer", name, *begin, *end,
         buffer_size);
  uint64_t want = static_cast<uint64_t>(saturating_mul(*numel, dtype_bytes(*type)));
  if (*end - *begin != want)
    fail(loc, "tensor \"{}\": {} {} takes {} bytes, but data_offsets [{}, {}] hold {}", name, dtype.get<std::string>(),
         to_string(e.type.shape), want, *begin, *end, *end - *begin);
  e.begin = *begin;
  e.end = *end;
  return e;
}

// The header as JSON; duplicate tensor names are an error, as the JSON library would keep one.
Json parse_header(const std::string& path, const std::string& text) {
  std::string duplicate;
  std::set<std::string> names;
  auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    // The format nests three deep (header, entry, shape); a deeper header is refused before
    // anything recurses over it (dump() in a message, or the JSON value's destructor).
    if (depth > kMaxJsonDepth)
      fail(SourceLoc{path}, "header nests JSON arrays or objects over {} deep: not a safetensors header", kMaxJsonDepth);
    if (event == Json::parse_event_t::key && depth == 1 && !names.insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  Json header;
  try {
    header = Json::parse(text, on_event);
  } catch (const Json::exception& e) {
    // parse_error for bad syntax, out_of_range for a number past a double's range (found by
    // fuzz_files): either way the header is not JSON gradc can read.
    std::string_view why = e.what();
    // "[json.exception.parse_error.101] parse error at ...": the bracketed id says nothing to a user.
    if (auto close = why.find("] "); close != std::string_view::npos) why.remove_prefix(close + 2);
    fail(SourceLoc{path}, "header is not valid JSON: {}", why);
  }
  if (!header.is_object())
    fail(SourceLoc{path}, "header is a JSON {}, expected an object of tensors", header.type_name());
  if (!duplicate.empty()) fail(SourceLoc{path}, "header names \"{}\" twice", duplicate);
  return header;
}

// The tensors must tile the buffer exactly, as the reference implementation requires: each one
// starts where the one before ends, and the last ends at the end of the file.
void check_tiling(const std::string& path, std::vector<Entry> entries, uint64_t buffer_size) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t at = 0;
  const Entry* last = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < at)
      fail(SourceLoc{path}, "tensors \"{}\" (bytes {} to {}) and \"{}\" (bytes {} to {}) overlap", last->name,
           last->begin, last->end, e.name, e.begin, e.end);
    if (e.begin > at) fail(SourceLoc{path}, "bytes {} to {} of the data buffer belong to no tensor", at, e.begin);
    at = e.end;
    last = &e;
  }
  if (at != buffer_size)
    fail(SourceLoc{path}, "{} trailing bytes after the last tensor: the data buffer is {} bytes, the tensors cover {}",
         buffer_size - at, buffer_size, at);
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors) {
  check_names(path, tensors);
  // Ordered, so that the header lists the tensors in the order of their data.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", safetensors_name(t->dtype())},
                    {"shape", t->shape()},
                    {"data_offsets", {offset, offset + t->bytes()}}};
    offset += t->bytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::type_error&) {
    fail(SourceLoc{path}, "cannot save: a tensor name is not valid UTF-8");
  }
  // Spaces up to a multiple of 8, as the reference implementation pads, so the data is aligned.
  text.append((8 - text.size() % 8) % 8, ' ');

  std::byte length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<std::byte>(static_cast<uint64_t>(text.size()) >> (8 * i));
  std::vector<std::span<const std::byte>> pieces{length, std::as_bytes(std::span(text))};
  for (const auto& [name, t] : tensors) pieces.emplace_back(t->data(), t->bytes());
  write_file_atomically(path, pieces);
}

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  InputFile in(path);
  if (in.size() < 8)
    fail(SourceLoc{path}, "file is {} bytes, too short for the 8-byte header length of a safetensors file", in.size());
  uint8_t length[8];
  in.read_at(0, length, 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | length[i];
  if (n > kMaxHeaderBytes)
    fail(SourceLoc{path}, "header length {} is over the 100 MB limit: not a safetensors file, or a corrupt one", n);
  if (n > in.size() - 8)
    fail(SourceLoc{path}, "header length {} reaches past the end of the file ({} bytes follow the length)", n,
         in.size() - 8);

  std::string text(n, '\0');
  in.read_at(8, text.data(), n);
  Json header = parse_header(path, text);
  uint64_t data_start = 8 + n, buffer_size = in.size() - data_start;

  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items())
    if (name != kMetadataKey) entries.push_back(parse_entry(path, header, name, info, buffer_size));
  check_tiling(path, entries, buffer_size);

  std::map<std::string, Tensor> tensors;
  for (const Entry& e : entries) {
    Tensor t(e.type);
    in.read_at(data_start + e.begin, t.data(), t.bytes());
    tensors.emplace(e.name, std::move(t));
  }
  return tensors;
}

}  // namespace gradc
