// Reader for checkpoints written by torch.save (PyTorch >= 1.6 zip format):
//   <archive>/data.pkl     the pickled object (state dict, trainer checkpoint dict, ...)
//   <archive>/data/<key>   one stored record per storage, little-endian
//   <archive>/byteorder    "little" (absent in older files, which are little-endian)
//   <archive>/version, .data/serialization_id
// The folder name <archive> is arbitrary (torch uses the file stem).
//
// data.pkl is read with the restricted unpickler (pickle_reader.h), so no code in the
// checkpoint is ever run; tensors point into the mapped file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "models/pickle_reader.h"
#include "models/tensor_data.h"

namespace gd::models {

// Maps and reads a torch.save checkpoint. A file that is not a zip archive (the legacy
// pre-1.6 format, or garbage) gives "<path>: not a torch.save zip archive (legacy pre-1.6
// format is not supported)".
PickleValue read_torch_checkpoint(const std::string& path);

// The same, over bytes that `owner` keeps alive; `label` names the source in errors.
PickleValue parse_torch_checkpoint(std::shared_ptr<const void> owner, const std::uint8_t* bytes,
                                   std::size_t size, const std::string& label);

// Every Tensor value of a Dict whose key is a string; other values (ints, None, nested
// dicts) are skipped. Throws gd::Error naming `where` when `dict` is not a Dict.
TensorMap state_dict_tensors(const PickleValue& dict, const std::string& where);

// The value under string key `key` of a Dict, or nullptr when absent; throws gd::Error
// naming `where` when `dict` is not a Dict.
const PickleValue* dict_get(const PickleValue& dict, const std::string& key,
                            const std::string& where);

}  // namespace gd::models
