#include "core/prediction.h"

#include <ATen/ATen.h>

namespace gd::core {

Prediction interpret_output(PredictionType type, const at::Tensor& x_t,
                            const at::Tensor& model_output, const at::Tensor& alpha,
                            const at::Tensor& sigma) {
  switch (type) {
    case PredictionType::Epsilon: return {(x_t - sigma * model_output) / alpha, model_output};
    case PredictionType::Sample: return {model_output, (x_t - alpha * model_output) / sigma};
    case PredictionType::V:
      return {alpha * x_t - sigma * model_output, alpha * model_output + sigma * x_t};
  }
  return {};
}

at::Tensor eps_from_x0(const at::Tensor& x_t, const at::Tensor& x0, const at::Tensor& alpha,
                       const at::Tensor& sigma) {
  return (x_t - alpha * x0) / sigma;
}

}  // namespace gd::core
