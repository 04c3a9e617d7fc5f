#include "models/torch_zip_reader.h"

#include <map>
#include <utility>
#include <vector>

#include "core/error.h"
#include "models/mapped_file.h"
#include "models/zip_reader.h"

namespace gd::models {

namespace {

std::string not_torch_zip(const std::string& label) {
  return label + ": not a torch.save zip archive (legacy pre-1.6 format is not supported)";
}

// The folder every record lives under: the one holding "<folder>/data.pkl".
std::string find_archive_folder(const ZipArchive& zip) {
  std::string folder;
  int found = 0;
  const std::string suffix = "/data.pkl";
  for (const std::string& name : zip.names()) {
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::string candidate = name.substr(0, name.size() - suffix.size());
      if (candidate.find('/') != std::string::npos) continue;
      folder = candidate;
      ++found;
    }
  }
  if (found == 0)
    throw Error(zip.label() +
                ": zip archive has no <folder>/data.pkl, not a torch.save checkpoint");
  if (found > 1) throw Error(zip.label() + ": zip archive has several <folder>/data.pkl records");
  return folder;
}

}  // namespace

PickleValue parse_torch_checkpoint(std::shared_ptr<const void> owner, const std::uint8_t* bytes,
                                   std::size_t size, const std::string& label) {
  // Zip archives start with a local header ("PK\3\4"); the legacy format starts with a pickle.
  if (size < 4 || bytes[0] != 'P' || bytes[1] != 'K' || bytes[2] != 3 || bytes[3] != 4) {
    throw Error(not_torch_zip(label));
  }
  ZipArchive zip(std::move(owner), bytes, size, label);
  const std::string folder = find_archive_folder(zip);

  const std::string byteorder_name = folder + "/byteorder";
  if (zip.contains(byteorder_name)) {
    ZipEntryData order = zip.entry(byteorder_name);
    std::string text(reinterpret_cast<const char*>(order.data), order.size);
    if (text != "little") {
      throw Error(label + ": checkpoint byte order is '" + text.substr(0, 16) +
                  "'; only 'little' is supported");
    }
  }

  // Storages are looked up once per key: torch de-duplicates storages, so several tensors
  // (views, or shared weights) reference the same record.
  std::map<std::string, StorageBytes> cache;
  PersistentLoader loader = [&](DType dtype, const std::string& key, std::int64_t numel) {
    auto it = cache.find(key);
    if (it == cache.end()) {
      const std::string record = folder + "/data/" + key;
      if (!zip.contains(record))
        throw Error(label + ": storage record '" + record + "' is missing");
      ZipEntryData data = zip.entry(record);
      it = cache.emplace(key, StorageBytes{zip.owner(), data.data, data.size}).first;
    }
    std::uint64_t need = 0;
    if (numel < 0 ||
        __builtin_mul_overflow(static_cast<std::uint64_t>(numel),
                               static_cast<std::uint64_t>(dtype_size(dtype)), &need) ||
        it->second.size < need) {
      throw Error(label + ": storage record '" + folder + "/data/" + key + "' has " +
                  std::to_string(it->second.size) + " bytes but " + std::to_string(numel) + " x " +
                  dtype_name(dtype) + " needs " + std::to_string(need));
    }
    return it->second;
  };

  ZipEntryData pickle = zip.entry(folder + "/data.pkl");
  return parse_pickle(pickle.data, pickle.size, loader, label + ": " + folder + "/data.pkl");
}

PickleValue read_torch_checkpoint(const std::string& path) {
  std::shared_ptr<const MappedFile> file = map_file(path);
  const std::uint8_t* data = file->data();
  std::size_t size = file->size();
  return parse_torch_checkpoint(std::move(file), data, size, path);
}

const PickleValue* dict_get(const PickleValue& dict, const std::string& key,
                            const std::string& where) {
  if (dict.kind != PickleValue::Kind::Dict) {
    throw Error(where + ": expected a dict, found a " + kind_name(dict.kind));
  }
  return dict_lookup(dict, key);
}

TensorMap state_dict_tensors(const PickleValue& dict, const std::string& where) {
  if (dict.kind != PickleValue::Kind::Dict) {
    throw Error(where + ": expected a state dict, found a " + kind_name(dict.kind));
  }
  TensorMap tensors;
  for (const auto& [key, value] : dict.entries) {
    if (key->kind != PickleValue::Kind::String || value->kind != PickleValue::Kind::Tensor)
      continue;
    tensors[key->text] = value->tensor;  // a repeated key: the last one wins, as in Python
  }
  return tensors;
}

}  // namespace gd::models
