// A small command-line option parser for gimp-diffusion-cli: "--name value", "--name=value"
// and boolean "--flag". Every option must be declared; an unknown one is a usage error.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace gd::cli {

// Wrong command-line usage (exit status 2), as opposed to a failure while running (1).
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

class Args {
 public:
  // `valued` options take a value, `flags` do not. Short aliases map to long names ("-o" ->
  // "output").
  Args(const std::vector<std::string>& argv, const std::set<std::string>& valued,
       const std::set<std::string>& flags, const std::map<std::string, std::string>& aliases = {});

  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  std::optional<std::string> value(const std::string& name) const;
  std::string required(const std::string& name) const;

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
};

// Option values, strictly: the whole text must be a number. Errors name the option.
long long parse_integer(const std::string& name, const std::string& text, long long lo,
                        long long hi);
double parse_real(const std::string& name, const std::string& text);

}  // namespace gd::cli
