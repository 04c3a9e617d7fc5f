// A restricted unpickler for the pickles inside torch.save archives (data.pkl).
//
// It understands only the opcodes that protocols 2-5 use for state dicts and training
// checkpoints, and only a short allow-list of globals (collections.OrderedDict, the torch
// tensor/parameter rebuild functions, torch storage classes, torch.device). Every other global
// is refused by name before anything could call it, so a malicious checkpoint cannot run code.
// Nothing is ever executed: allowed globals are interpreted by this reader.
//
// The result is a tree of PickleValue. Containers are shared_ptr-linked because pickle's memo
// lets one object appear in several places (torch de-duplicates storages this way); cycles are
// refused, nesting depth and total size are bounded, and every problem is one gd::Error line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/tensor_data.h"

namespace gd::models {

// The bytes of one storage, as the caller's persistent loader finds them.
struct StorageBytes {
  std::shared_ptr<const void> owner;  // keeps `data` alive
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;  // bytes available; must be >= numel * dtype_size
};

// Called for each BINPERSID ('storage', <storage class>, key, location, numel) record.
// May throw gd::Error (for example when the storage record is missing from the archive).
using PersistentLoader =
    std::function<StorageBytes(DType dtype, const std::string& key, std::int64_t numel)>;

struct PickleValue;
using PickleRef = std::shared_ptr<PickleValue>;

struct PickleValue {
  enum class Kind {
    None,
    Bool,
    Int,
    Float,
    String,
    Bytes,
    List,
    Tuple,
    Dict,     // dict and collections.OrderedDict (see `ordered`)
    Global,   // an allowed global that was not called (e.g. a storage class)
    Storage,  // a persistent-id storage record, before a tensor is rebuilt on it
    Tensor,
  };

  Kind kind = Kind::None;
  bool boolean = false;          // Bool
  std::int64_t integer = 0;      // Int
  double real = 0.0;             // Float
  std::string text;              // String, Bytes; Global: module; Storage: key
  std::string name;              // Global: name
  std::vector<PickleRef> items;  // List, Tuple
  std::vector<std::pair<PickleRef, PickleRef>> entries;  // Dict, in insertion order
  bool ordered = false;                                  // Dict: was a collections.OrderedDict
  PickleRef state;             // Dict: BUILD state (OrderedDict `_metadata`), kept but unused
  DType dtype = DType::F32;    // Storage
  std::int64_t numel = 0;      // Storage: elements
  StorageBytes storage;        // Storage
  RawTensor tensor;            // Tensor
  bool requires_grad = false;  // Tensor

  // Bookkeeping for the unpickler's safety checks.
  bool shared = false;  // has been put inside another value: may no longer be mutated
  int depth = 1;        // nesting depth of this value
};

const char* kind_name(PickleValue::Kind kind);

// Unpickles `bytes`. `label` names the source in errors ("model.pt: data.pkl").
PickleValue parse_pickle(const std::uint8_t* bytes, std::size_t size,
                         const PersistentLoader& loader, const std::string& label);

// The value stored under string key `key` in a Dict, or nullptr when absent. If the key
// appears more than once (only possible in hand-made pickles) the last one wins, as in Python.
// Throws gd::Error when `dict` is not a Dict.
const PickleValue* dict_lookup(const PickleValue& dict, const std::string& key);

}  // namespace gd::models
