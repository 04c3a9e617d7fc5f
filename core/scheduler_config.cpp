#include "core/scheduler_config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace gd::core {

namespace {

using nlohmann::json;

// Typed getters that name the key when the JSON holds the wrong kind of value.
class Reader {
 public:
  Reader(const json& object, std::string source) : object_(object), source_(std::move(source)) {}

  bool has(const char* key) const { return object_.contains(key) && !object_[key].is_null(); }

  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& value = object_[key];
    if (!value.is_number()) fail(key, "must be a number");
    return value.get<double>();
  }
  int integer(const char* key, int fallback) const {
    if (!has(key)) return fallback;
    const json& value = object_[key];
    if (!value.is_number_integer()) fail(key, "must be an integer");
    return value.get<int>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& value = object_[key];
    if (!value.is_boolean()) fail(key, "must be true or false");
    return value.get<bool>();
  }
  std::string text(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& value = object_[key];
    if (!value.is_string()) fail(key, "must be a string");
    return value.get<std::string>();
  }
  [[noreturn]] void fail(const char* key, const std::string& problem) const {
    throw Error(source_ + ": '" + key + "' " + problem);
  }

 private:
  const json& object_;
  std::string source_;
};

}  // namespace

ScheduleConfig parse_scheduler_config(const std::string& json_text, const std::string& source) {
  json object = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) throw Error(source + ": not valid JSON");
  if (!object.is_object()) throw Error(source + ": expected a JSON object");
  Reader r(object, source);

  ScheduleConfig config;
  config.scheduler_class = r.text("_class_name", config.scheduler_class);
  config.num_train_timesteps = r.integer("num_train_timesteps", config.num_train_timesteps);
  if (config.num_train_timesteps < 1 || config.num_train_timesteps > 100000) {
    r.fail("num_train_timesteps", "must be between 1 and 100000");
  }
  config.beta_start = r.number("beta_start", config.beta_start);
  config.beta_end = r.number("beta_end", config.beta_end);
  if (!(config.beta_start > 0 && config.beta_start < 1)) r.fail("beta_start", "must be in (0, 1)");
  if (!(config.beta_end > 0 && config.beta_end < 1)) r.fail("beta_end", "must be in (0, 1)");

  const std::string schedule = r.text("beta_schedule", "linear");
  if (schedule == "linear") config.beta_schedule = BetaSchedule::Linear;
  else if (schedule == "scaled_linear") config.beta_schedule = BetaSchedule::ScaledLinear;
  else if (schedule == "squaredcos_cap_v2") config.beta_schedule = BetaSchedule::SquaredCosCapV2;
  else if (schedule == "sigmoid") config.beta_schedule = BetaSchedule::Sigmoid;
  else
    r.fail("beta_schedule",
           "is '" + schedule + "'; supported: linear, scaled_linear, squaredcos_cap_v2, sigmoid");

  if (r.has("trained_betas")) {
    const json& betas = object["trained_betas"];
    if (!betas.is_array()) r.fail("trained_betas", "must be a list of numbers");
    for (const json& b : betas) {
      if (!b.is_number()) r.fail("trained_betas", "must be a list of numbers");
      const double beta = b.get<double>();
      if (!(beta > 0 && beta < 1)) r.fail("trained_betas", "values must be in (0, 1)");
      config.given_betas.push_back(beta);
    }
    if (static_cast<int>(config.given_betas.size()) != config.num_train_timesteps) {
      r.fail("trained_betas", "has " + std::to_string(config.given_betas.size()) +
                                  " values but num_train_timesteps is " +
                                  std::to_string(config.num_train_timesteps));
    }
    config.beta_schedule = BetaSchedule::Given;
  }

  const std::string prediction = r.text("prediction_type", "epsilon");
  if (prediction == "epsilon") config.prediction_type = PredictionType::Epsilon;
  else if (prediction == "sample") config.prediction_type = PredictionType::Sample;
  else if (prediction == "v_prediction") config.prediction_type = PredictionType::V;
  else
    r.fail("prediction_type", "is '" + prediction + "'; supported: epsilon, sample, v_prediction");

  config.clip_sample = r.boolean("clip_sample", config.clip_sample);
  config.clip_sample_range = r.number("clip_sample_range", config.clip_sample_range);
  config.variance_type = r.text("variance_type", config.variance_type);
  if (config.variance_type != "fixed_small" && config.variance_type != "fixed_small_log" &&
      config.variance_type != "fixed_large" && config.variance_type != "fixed_large_log" &&
      config.variance_type != "learned" && config.variance_type != "learned_range") {
    r.fail("variance_type",
           "is '" + config.variance_type +
               "'; supported: fixed_small, "
               "fixed_small_log, fixed_large, fixed_large_log, learned, learned_range");
  }

  const std::string spacing = r.text("timestep_spacing", "leading");
  if (spacing == "linspace") config.timestep_spacing = TimestepSpacing::Linspace;
  else if (spacing == "leading") config.timestep_spacing = TimestepSpacing::Leading;
  else if (spacing == "trailing") config.timestep_spacing = TimestepSpacing::Trailing;
  else r.fail("timestep_spacing", "is '" + spacing + "'; supported: linspace, leading, trailing");
  config.steps_offset = r.integer("steps_offset", config.steps_offset);
  if (config.steps_offset < 0 || config.steps_offset >= config.num_train_timesteps) {
    r.fail("steps_offset", "must be in [0, num_train_timesteps)");
  }

  config.thresholding = r.boolean("thresholding", config.thresholding);
  config.dynamic_thresholding_ratio =
      r.number("dynamic_thresholding_ratio", config.dynamic_thresholding_ratio);
  config.sample_max_value = r.number("sample_max_value", config.sample_max_value);
  if (r.boolean("rescale_betas_zero_snr", false)) {
    r.fail("rescale_betas_zero_snr", "is true, which is not supported yet");
  }
  return config;
}

}  // namespace gd::core
