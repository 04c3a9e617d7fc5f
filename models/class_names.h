// The names of a class-conditional model's classes: classes.json beside config.json, written by
// our trainer (one class per training image, named after its file). diffusers ignores the file;
// for models without it the classes are known by number only.
//
//   write_class_names(dir + "/" + kClassNamesFile, {"bricks", "leaves"});
//   std::vector<std::string> names = read_class_names(path, 2);   // {} when there is no file
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gd::models {

inline constexpr const char* kClassNamesFile = "classes.json";

// {"classes": ["name", ...]}; throws gd::Error when the file cannot be written.
void write_class_names(const std::string& path, const std::vector<std::string>& names);

// The names in `path`, or {} when the file does not exist. Throws gd::Error when it exists but
// is not valid, or lists other than `count` names.
std::vector<std::string> read_class_names(const std::string& path, std::int64_t count);

// The class called `text`: a name from `names`, or a number from 0 to count - 1. Throws
// gd::Error naming the problem otherwise.
std::int64_t find_class(const std::string& text, const std::vector<std::string>& names,
                        std::int64_t count);

// "3 (bricks)": a class number and, where the model has names, its name.
std::string describe_class(const std::vector<std::string>& names, std::int64_t k);

}  // namespace gd::models
