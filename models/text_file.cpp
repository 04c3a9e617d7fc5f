#include "models/text_file.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace gd::models {

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw Error(path + ": no such file");
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot be read");
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (text.size() > (64u << 20)) throw Error(path + ": too large for a configuration file");
  return text;
}

}  // namespace gd::models
