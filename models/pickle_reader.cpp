#include "models/pickle_reader.h"

#include <cstring>
#include <iterator>
#include <unordered_map>

#include "core/error.h"

namespace gd::models {

namespace {

using Kind = PickleValue::Kind;

// Bounds that keep a hostile pickle from exhausting the stack or memory. Real checkpoints
// nest a handful of levels and create tens of thousands of values.
constexpr int kMaxDepth = 100;
constexpr std::size_t kMaxValues = std::size_t{1} << 20;    // values created
constexpr std::size_t kMaxElements = std::size_t{1} << 22;  // container slots filled
constexpr std::size_t kMaxStringBytes = std::size_t{1} << 30;
constexpr std::size_t kMaxGlobalLine = 256;
constexpr std::size_t kMaxDims = 64;

struct StorageType {
  const char* name;
  DType dtype;
};
const StorageType kStorageTypes[] = {
    {"FloatStorage", DType::F32},  {"HalfStorage", DType::F16}, {"BFloat16Storage", DType::BF16},
    {"DoubleStorage", DType::F64}, {"LongStorage", DType::I64}, {"IntStorage", DType::I32},
    {"ShortStorage", DType::I16},  {"CharStorage", DType::I8},  {"ByteStorage", DType::U8},
    {"BoolStorage", DType::Bool},
};

bool storage_dtype(const PickleValue& global, DType* dtype) {
  if (global.kind != Kind::Global || global.text != "torch") return false;
  for (const StorageType& t : kStorageTypes) {
    if (global.name == t.name) {
      *dtype = t.dtype;
      return true;
    }
  }
  return false;
}

bool is_allowed_global(const std::string& module, const std::string& name) {
  if (module == "collections" && name == "OrderedDict") return true;
  if (module == "torch._utils" && (name == "_rebuild_tensor_v2" || name == "_rebuild_parameter" ||
                                   name == "_rebuild_parameter_with_state")) {
    return true;
  }
  if (module == "torch" && name == "device") return true;
  PickleValue probe;
  probe.kind = Kind::Global;
  probe.text = module;
  probe.name = name;
  DType unused;
  return storage_dtype(probe, &unused);
}

class Unpickler {
 public:
  Unpickler(const std::uint8_t* bytes, std::size_t size, const PersistentLoader& loader,
            const std::string& label)
      : p_(bytes), n_(size), loader_(loader), label_(label) {}

  PickleValue run();

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw Error(label_ + ": pickle: " + message + " (opcode at byte " + std::to_string(op_pos_) +
                ")");
  }

  // --- input ---
  const std::uint8_t* take(std::size_t count) {
    if (count > n_ - pos_) fail("truncated input: needs " + std::to_string(count) + " more bytes");
    const std::uint8_t* at = p_ + pos_;
    pos_ += count;
    return at;
  }
  std::uint64_t take_le(std::size_t count) {
    const std::uint8_t* at = take(count);
    std::uint64_t v = 0;
    for (std::size_t i = count; i-- > 0;) v = (v << 8) | at[i];
    return v;
  }
  std::string take_line() {
    std::size_t start = pos_;
    while (pos_ < n_ && p_[pos_] != '\n') {
      if (pos_ - start >= kMaxGlobalLine) fail("GLOBAL name is too long");
      ++pos_;
    }
    if (pos_ >= n_) fail("truncated input: GLOBAL name has no newline");
    std::string line(reinterpret_cast<const char*>(p_ + start), pos_ - start);
    ++pos_;
    return line;
  }
  std::string take_string(std::uint64_t length) {
    if (length > kMaxStringBytes)
      fail("string of " + std::to_string(length) + " bytes is too long");
    if (length > n_ - pos_) {
      fail("truncated input: string of " + std::to_string(length) + " bytes but only " +
           std::to_string(n_ - pos_) + " remain");
    }
    const std::uint8_t* at = take(static_cast<std::size_t>(length));
    return std::string(reinterpret_cast<const char*>(at), static_cast<std::size_t>(length));
  }

  // --- values ---
  PickleRef make(Kind kind) {
    if (++values_ > kMaxValues)
      fail("too many values (more than " + std::to_string(kMaxValues) + ")");
    auto v = std::make_shared<PickleValue>();
    v->kind = kind;
    return v;
  }
  PickleRef make_int(std::int64_t i) {
    PickleRef v = make(Kind::Int);
    v->integer = i;
    return v;
  }
  PickleRef make_string(Kind kind, std::string s) {
    PickleRef v = make(kind);
    v->text = std::move(s);
    return v;
  }

  // Records that `child` now lives inside `parent`. Refusing to mutate a value that is already
  // inside another one rules out reference cycles, which torch pickles never contain.
  void adopt(PickleValue& parent, const PickleRef& child) {
    if (child.get() == &parent) fail("a container cannot contain itself");
    child->shared = true;
    if (child->depth + 1 > parent.depth) parent.depth = child->depth + 1;
    if (parent.depth > kMaxDepth)
      fail("values nested deeper than " + std::to_string(kMaxDepth) + " levels");
    if (++elements_ > kMaxElements) fail("too many container elements");
  }
  void check_mutable(const PickleValue& v, const char* op) {
    if (v.shared) fail(std::string(op) + " on a container that is already inside another value");
  }

  // --- stack ---
  void push(PickleRef v) {
    if (stack_.size() >= kMaxElements) fail("too many values on the stack");
    stack_.push_back(std::move(v));
  }
  PickleRef pop() {
    std::size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() <= floor) fail("stack underflow");
    PickleRef v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PickleRef& top() {
    std::size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() <= floor) fail("stack underflow");
    return stack_.back();
  }
  // Pops everything above the last MARK (and the mark).
  std::vector<PickleRef> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<PickleRef> items(
        std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(mark)),
        std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }
  PickleRef make_tuple(std::vector<PickleRef> items) {
    PickleRef t = make(Kind::Tuple);
    for (const PickleRef& item : items) adopt(*t, item);
    t->items = std::move(items);
    return t;
  }

  // --- memo ---
  void memo_put(std::uint64_t index) {
    if (memo_.size() >= kMaxValues && memo_.count(index) == 0) fail("memo too large");
    memo_[index] = top();
  }
  PickleRef memo_get(std::uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo key " + std::to_string(index) + " is not defined");
    return it->second;
  }

  // --- container ops ---
  void append(PickleValue& list, const PickleRef& item) {
    if (list.kind != Kind::List)
      fail(std::string("APPEND to a ") + kind_name(list.kind) + ", not a list");
    check_mutable(list, "APPEND");
    adopt(list, item);
    list.items.push_back(item);
  }
  void set_item(PickleValue& dict, const PickleRef& key, const PickleRef& value) {
    if (dict.kind != Kind::Dict)
      fail(std::string("SETITEM on a ") + kind_name(dict.kind) + ", not a dict");
    check_mutable(dict, "SETITEM");
    adopt(dict, key);
    adopt(dict, value);
    dict.entries.emplace_back(key, value);
  }

  // --- globals ---
  PickleRef global(const std::string& module, const std::string& name) {
    if (!is_allowed_global(module, name)) fail("forbidden global '" + module + "." + name + "'");
    PickleRef g = make(Kind::Global);
    g->text = module;
    g->name = name;
    return g;
  }
  PickleRef call(const PickleValue& callable, const PickleValue& args);
  PickleRef rebuild_tensor(const PickleValue& args);
  PickleRef persistent_load(const PickleValue& pid);

  std::int64_t arg_int(const PickleValue& v, const char* what) {
    if (v.kind != Kind::Int)
      fail(std::string(what) + " is a " + kind_name(v.kind) + ", not an int");
    return v.integer;
  }
  std::vector<std::int64_t> arg_ints(const PickleValue& v, const char* what) {
    if (v.kind != Kind::Tuple)
      fail(std::string(what) + " is a " + kind_name(v.kind) + ", not a tuple");
    if (v.items.size() > kMaxDims) fail(std::string(what) + " has more than 64 entries");
    std::vector<std::int64_t> out;
    for (const PickleRef& item : v.items) {
      std::int64_t x = arg_int(*item, what);
      if (x < 0) fail(std::string(what) + " has a negative entry " + std::to_string(x));
      out.push_back(x);
    }
    return out;
  }

  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  std::size_t op_pos_ = 0;
  const PersistentLoader& loader_;
  const std::string& label_;
  std::vector<PickleRef> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, PickleRef> memo_;
  std::size_t values_ = 0;
  std::size_t elements_ = 0;
};

PickleRef Unpickler::persistent_load(const PickleValue& pid) {
  // torch.save writes ('storage', <storage class>, key, location, numel).
  if (pid.kind != Kind::Tuple || pid.items.size() != 5 || pid.items[0]->kind != Kind::String ||
      pid.items[0]->text != "storage") {
    fail("persistent id is not a ('storage', type, key, location, numel) tuple");
  }
  DType dtype;
  if (!storage_dtype(*pid.items[1], &dtype)) fail("persistent id names an unknown storage type");
  if (pid.items[2]->kind != Kind::String) fail("persistent id key is not a string");
  if (pid.items[3]->kind != Kind::String) fail("persistent id location is not a string");
  std::int64_t numel = arg_int(*pid.items[4], "storage size");
  if (numel < 0) fail("storage size " + std::to_string(numel) + " is negative");
  const std::string& key = pid.items[2]->text;
  std::uint64_t need = 0;
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel),
                             static_cast<std::uint64_t>(dtype_size(dtype)), &need)) {
    fail("storage '" + key + "' size overflows");
  }
  StorageBytes bytes = loader_(dtype, key, numel);
  if (bytes.size < need || (need > 0 && bytes.data == nullptr)) {
    fail("storage '" + key + "' has " + std::to_string(bytes.size) + " bytes but " +
         std::to_string(numel) + " x " + dtype_name(dtype) + " needs " + std::to_string(need));
  }
  PickleRef s = make(Kind::Storage);
  s->text = key;
  s->dtype = dtype;
  s->numel = numel;
  s->storage = std::move(bytes);
  return s;
}

PickleRef Unpickler::rebuild_tensor(const PickleValue& args) {
  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
  // metadata])
  if (args.items.size() != 6 && args.items.size() != 7) {
    fail("_rebuild_tensor_v2 takes 6 or 7 arguments, got " + std::to_string(args.items.size()));
  }
  const PickleValue& storage = *args.items[0];
  if (storage.kind != Kind::Storage) fail("_rebuild_tensor_v2 storage is not a storage record");
  std::int64_t offset = arg_int(*args.items[1], "tensor storage offset");
  std::vector<std::int64_t> shape = arg_ints(*args.items[2], "tensor size");
  std::vector<std::int64_t> strides = arg_ints(*args.items[3], "tensor stride");
  if (shape.size() != strides.size()) fail("tensor size and stride have different lengths");
  if (args.items[4]->kind != Kind::Bool) fail("tensor requires_grad is not a bool");
  const std::string where = "tensor on storage '" + storage.text + "'";
  if (offset < 0 || offset > storage.numel) {
    fail(where + " has offset " + std::to_string(offset) + " outside the storage's " +
         std::to_string(storage.numel) + " elements");
  }
  // The farthest element reachable is offset + sum((size - 1) * stride); it must lie inside
  // the storage. Every step is overflow-checked.
  bool empty = false;
  std::int64_t numel = 1;
  for (std::int64_t d : shape) {
    if (d == 0) empty = true;
    else if (__builtin_mul_overflow(numel, d, &numel))
      fail(where + " has a size whose element count overflows");
  }
  if (!empty) {
    std::int64_t last = offset;
    for (std::size_t i = 0; i < shape.size(); ++i) {
      std::int64_t step = 0;
      if (__builtin_mul_overflow(shape[i] - 1, strides[i], &step) ||
          __builtin_add_overflow(last, step, &last)) {
        fail(where + " reaches an element index that overflows");
      }
    }
    if (last >= storage.numel) {
      fail(where + " with size " + shape_string(shape) + ", stride " + shape_string(strides) +
           " and offset " + std::to_string(offset) + " reaches element " + std::to_string(last) +
           " but the storage has " + std::to_string(storage.numel));
    }
  }
  PickleRef t = make(Kind::Tensor);
  t->tensor.dtype = storage.dtype;
  t->tensor.shape = std::move(shape);
  t->tensor.strides = std::move(strides);
  t->tensor.data =
      storage.storage.data == nullptr
          ? nullptr
          : storage.storage.data + static_cast<std::size_t>(offset) * dtype_size(storage.dtype);
  t->tensor.owner = storage.storage.owner;
  t->requires_grad = args.items[4]->boolean;
  return t;
}

PickleRef Unpickler::call(const PickleValue& callable, const PickleValue& args) {
  if (callable.kind != Kind::Global) fail(std::string("cannot call a ") + kind_name(callable.kind));
  if (args.kind != Kind::Tuple) fail("call arguments are not a tuple");
  const std::string qualified = callable.text + "." + callable.name;
  if (qualified == "collections.OrderedDict") {
    if (!args.items.empty()) fail("collections.OrderedDict is only supported with no arguments");
    PickleRef d = make(Kind::Dict);
    d->ordered = true;
    return d;
  }
  if (qualified == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args);
  if (qualified == "torch._utils._rebuild_parameter" ||
      qualified == "torch._utils._rebuild_parameter_with_state") {
    // (data, requires_grad, backward_hooks[, state]): a Parameter is its tensor plus a flag.
    std::size_t expected = qualified == "torch._utils._rebuild_parameter" ? 3 : 4;
    if (args.items.size() != expected)
      fail(qualified + " takes " + std::to_string(expected) + " arguments");
    if (args.items[0]->kind != Kind::Tensor) fail(qualified + " data is not a tensor");
    if (args.items[1]->kind != Kind::Bool) fail(qualified + " requires_grad is not a bool");
    PickleRef t = make(Kind::Tensor);
    t->tensor = args.items[0]->tensor;
    t->requires_grad = args.items[1]->boolean;
    return t;
  }
  if (qualified == "torch.device") {
    // torch.device('cuda', 0) -> "cuda:0"; kept as a plain string.
    if (args.items.empty() || args.items.size() > 2 || args.items[0]->kind != Kind::String) {
      fail("torch.device takes a type string and an optional index");
    }
    std::string text = args.items[0]->text;
    if (args.items.size() == 2) {
      if (args.items[1]->kind != Kind::Int) fail("torch.device index is not an int");
      text += ":" + std::to_string(args.items[1]->integer);
    }
    return make_string(Kind::String, text);
  }
  fail("'" + qualified + "' cannot be called");
}

PickleValue Unpickler::run() {
  while (true) {
    op_pos_ = pos_;
    const std::uint8_t op = *take(1);
    switch (op) {
      case 0x80: {  // PROTO
        std::uint8_t proto = *take(1);
        if (proto > 5) fail("unsupported pickle protocol " + std::to_string(proto));
        break;
      }
      case 0x95:  // FRAME: a length hint only; the frame's opcodes follow inline
        take(8);
        break;
      case '.': {  // STOP
        if (!marks_.empty()) fail("STOP with an open MARK");
        if (stack_.size() != 1)
          fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
        PickleValue result = *stack_.back();
        return result;
      }
      case '(':  // MARK
        if (marks_.size() >= static_cast<std::size_t>(kMaxDepth) * 4) fail("too many open MARKs");
        marks_.push_back(stack_.size());
        break;
      case '0':  // POP
        pop();
        break;
      case '1':  // POP_MARK
        pop_mark();
        break;
      case '2':  // DUP
        push(top());
        break;
      case 'N': push(make(Kind::None)); break;
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        PickleRef b = make(Kind::Bool);
        b->boolean = op == 0x88;
        push(b);
        break;
      }
      case 'J':  // BININT: 4-byte signed
        push(make_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(take_le(4)))));
        break;
      case 'K':  // BININT1
        push(make_int(static_cast<std::int64_t>(take_le(1))));
        break;
      case 'M':  // BININT2
        push(make_int(static_cast<std::int64_t>(take_le(2))));
        break;
      case 0x8a:    // LONG1
      case 0x8b: {  // LONG4
        std::uint64_t length = take_le(op == 0x8a ? 1 : 4);
        if (length > 8)
          fail("integer of " + std::to_string(length) + " bytes does not fit in 64 bits");
        std::uint64_t raw = length == 0 ? 0 : take_le(static_cast<std::size_t>(length));
        // Two's complement little-endian: sign-extend from the top byte.
        if (length > 0 && length < 8 && (raw >> (8 * length - 1)) & 1)
          raw |= ~std::uint64_t{0} << (8 * length);
        std::int64_t value;
        std::memcpy(&value, &raw, sizeof value);
        push(make_int(value));
        break;
      }
      case 'G': {  // BINFLOAT: 8-byte big-endian double
        const std::uint8_t* at = take(8);
        std::uint64_t raw = 0;
        for (int i = 0; i < 8; ++i) raw = (raw << 8) | at[i];
        PickleRef f = make(Kind::Float);
        std::memcpy(&f->real, &raw, sizeof raw);
        push(f);
        break;
      }
      case 'X':  // BINUNICODE
        push(make_string(Kind::String, take_string(take_le(4))));
        break;
      case 0x8c:  // SHORT_BINUNICODE
        push(make_string(Kind::String, take_string(take_le(1))));
        break;
      case 0x8d:  // BINUNICODE8
        push(make_string(Kind::String, take_string(take_le(8))));
        break;
      case 'B':  // BINBYTES
        push(make_string(Kind::Bytes, take_string(take_le(4))));
        break;
      case 'C':  // SHORT_BINBYTES
        push(make_string(Kind::Bytes, take_string(take_le(1))));
        break;
      case 0x8e:  // BINBYTES8
        push(make_string(Kind::Bytes, take_string(take_le(8))));
        break;
      case '}': push(make(Kind::Dict)); break;
      case ']': push(make(Kind::List)); break;
      case ')': push(make(Kind::Tuple)); break;
      case 't': push(make_tuple(pop_mark())); break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::size_t count = static_cast<std::size_t>(op - 0x84);
        std::vector<PickleRef> items(count);
        for (std::size_t i = count; i-- > 0;) items[i] = pop();
        push(make_tuple(std::move(items)));
        break;
      }
      case 'a': {  // APPEND
        PickleRef item = pop();
        append(*top(), item);
        break;
      }
      case 'e': {  // APPENDS
        std::vector<PickleRef> items = pop_mark();
        PickleRef list = top();
        for (const PickleRef& item : items) append(*list, item);
        break;
      }
      case 's': {  // SETITEM
        PickleRef value = pop();
        PickleRef key = pop();
        set_item(*top(), key, value);
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<PickleRef> items = pop_mark();
        if (items.size() % 2 != 0) fail("SETITEMS with an odd number of values");
        PickleRef dict = top();
        for (std::size_t i = 0; i < items.size(); i += 2) set_item(*dict, items[i], items[i + 1]);
        break;
      }
      case 'b': {  // BUILD
        PickleRef state = pop();
        PickleValue& target = *top();
        // The only BUILD torch state dicts need: an OrderedDict getting its `_metadata`
        // attribute. The state is kept for completeness and otherwise ignored.
        if (target.kind != Kind::Dict || !target.ordered) {
          fail(std::string("BUILD on a ") + kind_name(target.kind) + " is not supported");
        }
        if (state->kind != Kind::Dict && state->kind != Kind::None && state->kind != Kind::Tuple) {
          fail(std::string("BUILD state is a ") + kind_name(state->kind));
        }
        check_mutable(target, "BUILD");
        adopt(target, state);
        target.state = state;
        break;
      }
      case 'c': {  // GLOBAL "module\nname\n"
        std::string module = take_line();
        std::string name = take_line();
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        PickleRef name = pop();
        PickleRef module = pop();
        if (module->kind != Kind::String || name->kind != Kind::String)
          fail("STACK_GLOBAL needs two strings");
        push(global(module->text, name->text));
        break;
      }
      case 'R': {  // REDUCE
        PickleRef args = pop();
        PickleRef callable = pop();
        push(call(*callable, *args));
        break;
      }
      case 0x81: {  // NEWOBJ cls.__new__(cls, *args): only OrderedDict
        PickleRef args = pop();
        PickleRef cls = pop();
        if (cls->kind != Kind::Global || cls->text != "collections" || cls->name != "OrderedDict") {
          fail("NEWOBJ is only supported for collections.OrderedDict");
        }
        push(call(*cls, *args));
        break;
      }
      case 'q': memo_put(take_le(1)); break;
      case 'r': memo_put(take_le(4)); break;
      case 0x94:  // MEMOIZE
        memo_put(memo_.size());
        break;
      case 'h': push(memo_get(take_le(1))); break;
      case 'j': push(memo_get(take_le(4))); break;
      case 'Q': {  // BINPERSID
        PickleRef pid = pop();
        push(persistent_load(*pid));
        break;
      }
      default: {
        static const char kHex[] = "0123456789abcdef";
        std::string hex = "0x";
        hex += kHex[op >> 4];
        hex += kHex[op & 15];
        fail("unsupported opcode " + hex);
      }
    }
  }
}

}  // namespace

const char* kind_name(PickleValue::Kind kind) {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

PickleValue parse_pickle(const std::uint8_t* bytes, std::size_t size,
                         const PersistentLoader& loader, const std::string& label) {
  Unpickler unpickler(bytes, size, loader, label);
  return unpickler.run();
}

const PickleValue* dict_lookup(const PickleValue& dict, const std::string& key) {
  if (dict.kind != Kind::Dict)
    throw Error(std::string("expected a dict, found a ") + kind_name(dict.kind));
  for (auto it = dict.entries.rbegin(); it != dict.entries.rend(); ++it) {
    if (it->first->kind == Kind::String && it->first->text == key) return it->second.get();
  }
  return nullptr;
}

}  // namespace gd::models
