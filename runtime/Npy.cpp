// .npy reading and writing. The header is a Python literal, parsed here by hand (numpy itself
// calls ast.literal_eval): a dict of quoted keys to strings, True/False and tuples of ints.
// Every size is checked against the file's size before anything is allocated or read.
#include "runtime/Npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <span>
#include <string_view>
#include <vector>

#include "runtime/Format.h"
#include "gradc/Types.h"
#include "runtime/File.h"

namespace gradc {
namespace {

static_assert(std::endian::native == std::endian::little, "gradc's file formats assume a little-endian host");

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr size_t kPrefixBytes = 8;  // the magic and the two version bytes
// numpy writes headers of a few hundred bytes; a larger one is corrupt, and is not allocated.
constexpr uint64_t kMaxHeaderBytes = uint64_t{1} << 20;
// A header holds one level of nesting (the shape tuple); numpy writes no deeper ones.
constexpr int kMaxNesting = 16;
// numpy aligns the data to this, for memory mapping.
constexpr size_t kAlign = 64;
// numpy leaves room in the header for the first dim to grow to this many digits, so that a
// file can be appended to in place; written the same so that files match numpy's byte for byte.
constexpr size_t kGrowthDigits = 21;

// How a supported descr is stored and what it loads as.
enum class Source { Same, I64, U8 };
struct Descr {
  std::string_view name;
  DType dtype;
  Source source;
  int64_t item_bytes;
};
constexpr Descr kDescrs[] = {
    {"<f4", DType::F32, Source::Same, 4}, {"<f8", DType::F64, Source::Same, 8}, {"<i4", DType::I32, Source::Same, 4},
    {"<i8", DType::I32, Source::I64, 8},  {"|u1", DType::I32, Source::U8, 1},   {"<u1", DType::I32, Source::U8, 1},
};

// The descr a dtype is saved as: its entry of kDescrs that needs no conversion.
std::string_view descr_of(DType t) {
  for (const Descr& d : kDescrs)
    if (d.dtype == t && d.source == Source::Same) return d.name;
  return "?";
}

// ---- the header

// The header without the padding, to show in messages.
std::string_view trimmed(std::string_view header) {
  while (!header.empty() && (header.back() == ' ' || header.back() == '\n')) header.remove_suffix(1);
  return header;
}

// The header for a message: about 80 bytes of it around `at`, cut with "..." (a corrupt header
// may be a megabyte long).
std::string header_excerpt(std::string_view header, size_t at = 0) { return excerpt(trimmed(header), at).text; }

// A value of the header's Python literal: a string, a bool, an int, or a tuple or list of values.
struct PyValue {
  enum class Kind { Str, Bool, Int, Seq } kind = Kind::Str;
  std::string str;
  bool boolean = false;
  int64_t integer = 0;
  std::vector<PyValue> items;
};

// Recursive descent over the literal; errors show the header and the column.
class HeaderParser {
 public:
  HeaderParser(const std::string& path, std::string_view text) : path_(path), text_(text) {}

  std::map<std::string, PyValue> parse_dict() {
    std::map<std::string, PyValue> dict;
    expect('{', "'{' opening the header dict");
    while (!peek_is('}')) {
      if (peek() != '\'' && peek() != '"') error("a quoted key or '}'");
      std::string key = parse_string();
      expect(':', fmt::format("':' after the key '{}'", shortened(key)));
      PyValue value = parse_value();
      if (!dict.emplace(key, std::move(value)).second) error(fmt::format("no second '{}' key", shortened(key)));
      if (!peek_is(',')) break;
      ++pos_;
    }
    expect('}', "',' or '}' after a value");
    skip_space();
    if (pos_ != text_.size()) error("only spaces after the dict");
    return dict;
  }

 private:
  PyValue parse_value() {
    PyValue v;
    char c = peek();
    if (c == '\'' || c == '"') {
      v.str = parse_string();
    } else if (c == '(' || c == '[') {
      // Bounded, so that a header of nested parentheses cannot overflow the stack.
      if (depth_ == kMaxNesting) error(fmt::format("at most {} nested tuples or lists", kMaxNesting));
      ++depth_;
      v.kind = PyValue::Kind::Seq;
      char close = c == '(' ? ')' : ']';
      ++pos_;
      while (!peek_is(close)) {
        v.items.push_back(parse_value());
        if (!peek_is(',')) break;
        ++pos_;
      }
      expect(close, fmt::format("',' or '{}' in a sequence", close));
      --depth_;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = PyValue::Kind::Int;
      v.integer = parse_int();
    } else if (word("True") || word("False")) {
      v.kind = PyValue::Kind::Bool;
      v.boolean = c == 'T';
    } else {
      error("a string, True, False, an integer or a tuple");
    }
    return v;
  }

  std::string parse_string() {
    char quote = text_[pos_++];
    std::string s;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;  // an escaped quote or backslash
      s += text_[pos_++];
    }
    if (pos_ == text_.size()) error(fmt::format("the closing {} of a string", quote));
    ++pos_;
    return s;
  }

  int64_t parse_int() {
    int64_t v = 0;
    auto [end, ec] = std::from_chars(text_.data() + pos_, text_.data() + text_.size(), v);
    if (ec != std::errc()) error("an integer that fits in 64 bits");
    pos_ = static_cast<size_t>(end - text_.data());
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;  // Python 2 wrote longs as 3L
    return v;
  }

  bool word(std::string_view w) {
    if (!text_.substr(pos_).starts_with(w)) return false;
    pos_ += w.size();
    return true;
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  char peek() {
    skip_space();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }
  bool peek_is(char c) { return peek() == c; }
  void expect(char c, std::string_view what) {
    if (!peek_is(c)) error(what);
    ++pos_;
  }

  [[noreturn]] void error(std::string_view expected) const {
    fail(SourceLoc{path_}, "malformed .npy header: expected {} at column {} of {:?}", expected, pos_ + 1,
         header_excerpt(text_, pos_));
  }

  const std::string& path_;
  std::string_view text_;
  size_t pos_ = 0;
  int depth_ = 0;
};

struct Header {
  const Descr* descr = nullptr;
  Shape shape;
};

Header interpret(const std::string& path, std::string_view text, const std::map<std::string, PyValue>& dict) {
  // Errors about the dict's content show the header, where the offending value can be read.
  auto bad = [&](std::string_view what) { fail(SourceLoc{path}, "{} in .npy header {:?}", what, header_excerpt(text)); };
  for (const char* key : {"descr", "fortran_order", "shape"})
    if (!dict.contains(key)) bad(fmt::format("no '{}' key", key));

  const PyValue& descr = dict.at("descr");
  if (descr.kind == PyValue::Kind::Seq) bad("structured arrays (a list as descr) are not supported");
  if (descr.kind != PyValue::Kind::Str) bad("descr is not a string such as '<f4'");
  Header h;
  for (const Descr& d : kDescrs)
    if (descr.str == d.name) h.descr = &d;
  if (!h.descr && descr.str.starts_with('>'))
    fail(SourceLoc{path}, "big-endian dtype '{}' is not supported; save it little-endian, e.g. a.astype('<{}')",
         shortened(descr.str), shortened(descr.str.substr(1)));
  if (!h.descr)
    fail(SourceLoc{path}, "unsupported dtype '{}': expected '<f4', '<f8', '<i4', '<i8', '|u1' or '<u1'", shortened(descr.str));

  const PyValue& fortran = dict.at("fortran_order");
  if (fortran.kind != PyValue::Kind::Bool) bad("fortran_order is not True or False");
  if (fortran.boolean) fail(SourceLoc{path}, "Fortran order is not supported; save with np.ascontiguousarray");

  const PyValue& shape = dict.at("shape");
  if (shape.kind != PyValue::Kind::Seq) bad("shape is not a tuple such as (2, 3)");
  if (static_cast<int64_t>(shape.items.size()) > kMaxRank)
    fail(SourceLoc{path}, "shape has {} dims; gradc reads arrays of at most {}", shape.items.size(), kMaxRank);
  for (const PyValue& d : shape.items) {
    if (d.kind != PyValue::Kind::Int || d.integer < 0) bad("shape has a dim that is not a non-negative integer");
    h.shape.push_back(d.integer);
  }
  if (!checked_numel(h.shape)) fail(SourceLoc{path}, "shape {} has over 2^48 elements", to_string(h.shape));
  return h;
}

// ---- reading

template <typename T>
std::vector<T> read_elements(InputFile& in, int64_t n) {
  std::vector<T> v(static_cast<size_t>(n));
  in.read(v.data(), v.size() * sizeof(T));
  return v;
}

void convert(const std::string& path, InputFile& in, const Descr& d, Tensor& t) {
  int32_t* out = t.as<int32_t>();
  if (d.source == Source::U8) {
    auto v = read_elements<uint8_t>(in, t.numel());
    for (size_t i = 0; i < v.size(); ++i) out[i] = v[i];
    return;
  }
  auto v = read_elements<int64_t>(in, t.numel());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < std::numeric_limits<int32_t>::min() || v[i] > std::numeric_limits<int32_t>::max())
      fail(SourceLoc{path}, "'<i8' value {} at flat index {} does not fit in i32", v[i], i);
    out[i] = static_cast<int32_t>(v[i]);
  }
}

// ---- writing

// Python's repr of a shape tuple: (), (3,), (2, 3).
std::string shape_repr(const Shape& s) {
  if (s.size() == 1) return fmt::format("({},)", s[0]);
  return fmt::format("({})", fmt::join(s, ", "));
}

}  // namespace

Tensor load_npy(const std::string& path) {
  SourceLoc loc{path};
  InputFile in(path);
  if (in.size() < kPrefixBytes)
    fail(loc, "file is {} bytes, too short for the {}-byte .npy magic and version", in.size(), kPrefixBytes);
  char prefix[kPrefixBytes];
  in.read(prefix, kPrefixBytes);
  if (std::string_view(prefix, kMagic.size()) != kMagic)
    fail(loc, "not a .npy file: expected the magic \"\\x93NUMPY\", found {:?}",
         std::string_view(prefix, kMagic.size()));
  int major = static_cast<uint8_t>(prefix[6]), minor = static_cast<uint8_t>(prefix[7]);
  if (!(minor == 0 && major >= 1 && major <= 3))
    fail(loc, "unsupported .npy version {}.{}: expected 1.0, 2.0 or 3.0", major, minor);

  size_t length_bytes = major == 1 ? 2 : 4;
  if (in.left() < length_bytes)
    fail(loc, "truncated header: expected a {}-byte header length, found {} bytes", length_bytes, in.left());
  uint8_t length[4] = {};
  in.read(length, length_bytes);
  uint64_t n = uint64_t{length[0]} | uint64_t{length[1]} << 8 | uint64_t{length[2]} << 16 | uint64_t{length[3]} << 24;
  if (n > kMaxHeaderBytes) fail(loc, "header length {} is over the 1 MB limit: a corrupt file", n);
  if (n > in.left()) fail(loc, "truncated header: expected {} bytes, found {}", n, in.left());
  std::string text(n, '\0');
  in.read(text.data(), n);

  Header h = interpret(path, text, HeaderParser(path, text).parse_dict());
  TensorType type{h.descr->dtype, h.shape};
  uint64_t want = static_cast<uint64_t>(saturating_mul(type.numel(), h.descr->item_bytes));
  if (in.left() < want)
    fail(loc, "truncated data: expected {} bytes for shape {} of '{}', found {}", want, shape_repr(h.shape),
         h.descr->name, in.left());
  if (in.left() > want)
    fail(loc, "{} trailing bytes after the {} bytes of data for shape {} of '{}'", in.left() - want, want,
         shape_repr(h.shape), h.descr->name);

  Tensor t(type);
  if (h.descr->source == Source::Same)
    in.read(t.data(), t.bytes());
  else
    convert(path, in, *h.descr, t);
  return t;
}

void save_npy(const std::string& path, const Tensor& t) {
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr_of(t.dtype()),
                                 shape_repr(t.shape()));
  if (!t.shape().empty()) dict.append(kGrowthDigits - fmt::format("{}", t.shape()[0]).size(), ' ');
  // Version 1.0's length is a u16; numpy moves to 2.0 only when the header needs more.
  int major = dict.size() + kPrefixBytes + 2 + 1 + kAlign <= 0xffff ? 1 : 2;
  size_t length_bytes = major == 1 ? 2 : 4;
  // numpy's padding: spaces and a newline so the data starts at a multiple of 64 (a full 64
  // when it already would).
  size_t pad = kAlign - (kPrefixBytes + length_bytes + dict.size() + 1) % kAlign;
  dict.append(pad, ' ');
  dict += '\n';

  std::string head(kMagic);
  head += static_cast<char>(major);
  head += '\0';
  for (size_t i = 0; i < length_bytes; ++i) head += static_cast<char>(dict.size() >> (8 * i));
  head += dict;
  write_file_atomically(path, {std::as_bytes(std::span(head)), {t.data(), t.bytes()}});
}

}  // namespace gradc
