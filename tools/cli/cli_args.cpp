#include "tools/cli/cli_args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace gd::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& valued,
           const std::set<std::string>& flags, const std::map<std::string, std::string>& aliases) {
  for (std::size_t i = 0; i < argv.size(); ++i) {
    std::string arg = argv[i];
    std::string name;
    std::optional<std::string> inline_value;
    if (auto alias = aliases.find(arg); alias != aliases.end()) {
      name = alias->second;
    } else if (arg.rfind("--", 0) == 0 && arg.size() > 2) {
      name = arg.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
    } else {
      throw UsageError("unexpected argument '" + arg + "'");
    }
    if (flags.count(name)) {
      if (inline_value) throw UsageError("--" + name + " takes no value");
      flags_.insert(name);
    } else if (valued.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argv.size()) throw UsageError("--" + name + " needs a value");
        inline_value = argv[++i];
      }
      if (values_.count(name)) throw UsageError("--" + name + " given twice");
      values_[name] = *inline_value;
    } else {
      throw UsageError("unknown option '" + arg + "'");
    }
  }
}

std::optional<std::string> Args::value(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::required(const std::string& name) const {
  auto v = value(name);
  if (!v) throw UsageError("--" + name + " is required");
  return *v;
}

long long parse_integer(const std::string& name, const std::string& text, long long lo,
                        long long hi) {
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    throw UsageError("--" + name + " must be a whole number, not '" + text + "'");
  }
  if (value < lo || value > hi) {
    throw UsageError("--" + name + " must be between " + std::to_string(lo) + " and " +
                     std::to_string(hi) + ", not " + text);
  }
  return value;
}

double parse_real(const std::string& name, const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(value)) {
    throw UsageError("--" + name + " must be a number, not '" + text + "'");
  }
  return value;
}

}  // namespace gd::cli
