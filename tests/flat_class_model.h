// A fake class-conditional model for the pipeline tests: it predicts x0 directly, a flat gray
// whatever its input, of level k / (classes - 1) * 2 - 1 (model space) for class k and 0, the
// mean of all the levels, for the mean class (kMeanClassLabel). It records each call's batch
// size and each call's labels.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/pipeline.h"

namespace gd::test {

struct FlatClassModel {
  std::int64_t classes = 6;
  std::vector<std::int64_t> batches;  // batch size of each call
  std::vector<at::Tensor> calls;      // labels of each call
  // Images evaluated since the last reset: a guided step evaluates each image twice, in one
  // call of 2N or two of N.
  std::int64_t evaluations() const {
    std::int64_t n = 0;
    for (std::int64_t b : batches) n += b;
    return n;
  }
  void reset() {
    batches.clear();
    calls.clear();
  }
  core::PipelineModel model() {
    core::PipelineModel m;
    m.schedule.num_train_timesteps = 100;
    m.schedule.prediction_type = core::PredictionType::Sample;
    m.schedule.clip_sample = false;
    m.num_classes = static_cast<int>(classes);
    m.native_width = m.native_height = 8;
    m.network = [this](const at::Tensor& x, const at::Tensor&, const core::Conditioning& cond) {
      const at::Tensor& labels = cond.class_labels;
      if (!labels.defined()) throw Error("no class set");
      batches.push_back(x.size(0));
      calls.push_back(labels.clone());
      const at::Tensor l = labels.to(at::kFloat).expand({x.size(0)});  // [N]
      const at::Tensor level =
          at::where(l < 0, at::zeros_like(l), l / (classes - 1) * 2 - 1);  // [N]
      return level.view({-1, 1, 1, 1}).expand(x.sizes()).contiguous();     // [N, C, H, W]
    };
    return m;
  }
};

}  // namespace gd::test
