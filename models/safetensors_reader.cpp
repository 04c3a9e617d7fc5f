#include "models/safetensors_reader.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "core/error.h"
#include "models/mapped_file.h"

namespace gd::models {

namespace {

// Real headers are a few hundred kB even for large models; anything bigger is corrupt, and
// the limit keeps a lying length from making us parse gigabytes of tensor data as JSON.
constexpr std::uint64_t kMaxHeaderBytes = 100u * 1000u * 1000u;

bool parse_dtype(const std::string& name, DType* out) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F64", DType::F64}, {"F32", DType::F32},  {"F16", DType::F16}, {"BF16", DType::BF16},
      {"I64", DType::I64}, {"I32", DType::I32},  {"I16", DType::I16}, {"I8", DType::I8},
      {"U8", DType::U8},   {"BOOL", DType::Bool}};
  for (const auto& entry : kNames) {
    if (name == entry.first) {
      *out = entry.second;
      return true;
    }
  }
  return false;
}

// Reads a JSON number as a non-negative integer that fits int64; false otherwise.
bool as_count(const nlohmann::json& value, std::uint64_t* out) {
  if (value.is_number_unsigned()) {
    std::uint64_t v = value.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
    *out = v;
    return true;
  }
  if (value.is_number_integer()) {
    std::int64_t v = value.get<std::int64_t>();
    if (v < 0) return false;
    *out = static_cast<std::uint64_t>(v);
    return true;
  }
  return false;
}

struct Entry {
  std::string name;
  SafetensorsEntry info;
};

// Validates the header of `bytes` and returns its tensors in header order, and in *data_start
// where the data section begins. With `check_data`, every tensor's bytes must lie inside the
// data section; without, the data section is not looked at (header-only reads), and everything
// else is checked the same way.
std::vector<Entry> parse_header(const std::uint8_t* bytes, std::size_t size, const std::string& f,
                                bool check_data, std::uint64_t* data_start) {
  if (size < 8) {
    throw Error(f + ": not a safetensors file (" + std::to_string(size) +
                " bytes, shorter than the 8-byte header length)");
  }
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8) {
    throw Error(f + ": header length " + std::to_string(header_len) + " runs past the end of the " +
                std::to_string(size) + "-byte file");
  }
  if (header_len > kMaxHeaderBytes) {
    throw Error(f + ": header length " + std::to_string(header_len) + " exceeds the " +
                std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  *data_start = 8 + header_len;
  const std::uint64_t data_size = size - 8 - header_len;
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json header = nlohmann::json::parse(header_begin, header_begin + header_len,
                                                /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) throw Error(f + ": header is not valid JSON");
  if (!header.is_object()) throw Error(f + ": header is not a JSON object");

  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& info = it.value();
    if (name == "__metadata__") {
      if (!info.is_object()) throw Error(f + ": __metadata__ is not a JSON object");
      continue;
    }
    const std::string where = f + ": tensor '" + name + "'";
    if (!info.is_object()) throw Error(where + " is not described by a JSON object");

    auto dtype_it = info.find("dtype");
    if (dtype_it == info.end() || !dtype_it->is_string())
      throw Error(where + " has no dtype string");
    Entry entry;
    entry.name = name;
    SafetensorsEntry& e = entry.info;
    const std::string dtype_text = dtype_it->get<std::string>();
    if (!parse_dtype(dtype_text, &e.dtype)) {
      throw Error(where + " has unsupported dtype '" + dtype_text + "'");
    }

    auto shape_it = info.find("shape");
    if (shape_it == info.end() || !shape_it->is_array()) throw Error(where + " has no shape array");
    // numel is kept in uint64 and checked against the data size at every step, so it can
    // neither overflow nor exceed what the file could possibly hold.
    std::uint64_t numel = 1;
    bool numel_too_big = false;
    for (const nlohmann::json& dim : *shape_it) {
      std::uint64_t d = 0;
      if (!as_count(dim, &d))
        throw Error(where + " has a shape entry that is not a non-negative integer");
      e.shape.push_back(static_cast<std::int64_t>(d));
      if (d != 0 && numel > std::numeric_limits<std::uint64_t>::max() / d) numel_too_big = true;
      else numel *= d;
    }
    if (e.shape.size() > 64) throw Error(where + " has more than 64 dimensions");
    const std::uint64_t elem = dtype_size(e.dtype);
    if (numel_too_big || (numel != 0 && numel > std::numeric_limits<std::uint64_t>::max() / elem)) {
      // A zero dimension makes the whole tensor empty regardless of the others.
      if (std::find(e.shape.begin(), e.shape.end(), 0) == e.shape.end()) {
        throw Error(where + " has shape " + shape_string(e.shape) + " whose size overflows");
      }
      numel = 0;
    }
    const std::uint64_t need = numel * elem;

    auto offsets_it = info.find("data_offsets");
    if (offsets_it == info.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !as_count((*offsets_it)[0], &e.begin) || !as_count((*offsets_it)[1], &e.end)) {
      throw Error(where + " has no data_offsets [begin, end] of non-negative integers");
    }
    const std::string offsets_text =
        "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.begin > e.end)
      throw Error(where + " has data_offsets " + offsets_text + " with begin after end");
    if (check_data && e.end > data_size) {
      throw Error(where + " has data_offsets " + offsets_text + " but the data section has only " +
                  std::to_string(data_size) + " bytes");
    }
    if (e.end - e.begin != need) {
      throw Error(where + " has data_offsets " + offsets_text + " but shape " +
                  shape_string(e.shape) + " of " + dtype_text + " needs " + std::to_string(need) +
                  " bytes");
    }
    entries.push_back(std::move(entry));
  }

  // Overlap check: sort by begin and compare neighbours. Empty tensors occupy no bytes.
  std::vector<const Entry*> order;
  for (const Entry& e : entries) {
    if (e.info.end > e.info.begin) order.push_back(&e);
  }
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->info.begin != b->info.begin ? a->info.begin < b->info.begin : a->name < b->name;
  });
  for (std::size_t i = 1; i < order.size(); ++i) {
    const SafetensorsEntry& cur = order[i]->info;
    const SafetensorsEntry& prev = order[i - 1]->info;
    if (cur.begin < prev.end) {
      throw Error(f + ": tensor '" + order[i]->name + "' (bytes " + std::to_string(cur.begin) +
                  ".." + std::to_string(cur.end) + ") overlaps tensor '" + order[i - 1]->name +
                  "' (bytes " + std::to_string(prev.begin) + ".." + std::to_string(prev.end) + ")");
    }
  }
  return entries;
}

}  // namespace

TensorMap parse_safetensors(std::shared_ptr<const void> owner, const std::uint8_t* bytes,
                            std::size_t size, const std::string& label) {
  std::uint64_t data_start = 0;
  std::vector<Entry> entries = parse_header(bytes, size, label, /*check_data=*/true, &data_start);
  const std::uint8_t* data = bytes + data_start;
  TensorMap result;
  for (Entry& e : entries) {
    RawTensor tensor;
    tensor.dtype = e.info.dtype;
    tensor.shape = std::move(e.info.shape);
    tensor.strides = contiguous_strides(tensor.shape);
    tensor.data = data + e.info.begin;
    tensor.owner = owner;
    result.emplace(e.name, std::move(tensor));
  }
  return result;
}

SafetensorsHeader parse_safetensors_header(const std::uint8_t* bytes, std::size_t size,
                                           const std::string& label) {
  std::uint64_t data_start = 0;
  std::vector<Entry> entries = parse_header(bytes, size, label, /*check_data=*/false, &data_start);
  SafetensorsHeader header;
  header.data_start = data_start;
  for (Entry& e : entries) header.tensors.emplace(e.name, std::move(e.info));
  return header;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  // Mapping is cheap; only the pages of the header are touched.
  std::shared_ptr<const MappedFile> file = map_file(path);
  return parse_safetensors_header(file->data(), file->size(), path);
}

TensorMap read_safetensors(const std::string& path) {
  std::shared_ptr<const MappedFile> file = map_file(path);
  const std::uint8_t* data = file->data();
  std::size_t size = file->size();
  return parse_safetensors(std::move(file), data, size, path);
}

}  // namespace gd::models
