#include "autoqnn/hessian_trace.h"

#include <cmath>
#include <random>
#include <stdexcept>

#include "autoqnn/quant_layers.h"

namespace autoqnn {

std::vector<LayerHessianTrace> hessian_traces(Model& model, const TensorDataset& data, const HessianTraceOptions& opt) {
  if (data.size() == 0) throw std::invalid_argument("Hessian traces: the data set is empty");
  if (opt.batches < 1 || opt.samples < 1 || opt.batch_size < 1)
    throw std::invalid_argument("Hessian traces: batches, samples and batch size must be >= 1");
  auto layers = quant_layers(model);
  if (layers.empty()) throw std::invalid_argument("Hessian traces: the model has no quantizable layer");
  std::vector<torch::Tensor> params;
  for (const auto& l : layers) {
    if (l.layer->weight_quantizer() || l.layer->act_quantizer())
      throw std::invalid_argument("Hessian traces need an FP32 model without quantizers (layer '" + l.name + "')");
    params.push_back(l.layer->weight_param());
  }
  model.to(opt.device);
  const bool was_training = model.is_training();
  model.eval();
  // Only the layers' weights need a gradient; the others are frozen for the double backward's sake.
  std::vector<std::pair<torch::Tensor, bool>> grad_flags;
  for (auto& p : model.parameters(/*recurse=*/true)) grad_flags.emplace_back(p, p.requires_grad());
  for (auto& [p, on] : grad_flags) p.requires_grad_(false);
  for (auto& p : params) p.requires_grad_(true);
  struct Restore {
    Model& m;
    bool training;
    std::vector<std::pair<torch::Tensor, bool>>& flags;
    ~Restore() {
      for (auto& [p, on] : flags) p.requires_grad_(on);
      m.train(training);
    }
  } restore{model, was_training, grad_flags};

  const size_t L = params.size();
  std::vector<double> sum(L, 0.0), sum_sq(L, 0.0);
  int64_t draws = 0;
  std::mt19937_64 rng(opt.seed * 0x9E3779B97F4A7C15ULL + 17);
  BatchIterator it(data, opt.batch_size, /*shuffle=*/true, opt.seed);
  torch::Tensor x, y;
  for (int64_t b = 0; b < opt.batches && it.next(x, y); ++b) {
    auto loss = torch::nn::functional::cross_entropy(model.forward(x.to(opt.device)), y.to(opt.device));
    auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true, /*create_graph=*/true);
    for (int64_t s = 0; s < opt.samples; ++s) {
      std::vector<torch::Tensor> v;
      torch::Tensor gv = torch::zeros({}, loss.options());
      for (size_t l = 0; l < L; ++l) {
        // Rademacher +-1 from our own generator: the same draws on every LibTorch build
        auto r = torch::empty(params[l].sizes(), torch::kFloat32);
        float* rp = r.data_ptr<float>();
        for (int64_t i = 0; i < r.numel(); ++i) rp[i] = (rng() >> 63) ? 1.0f : -1.0f;
        v.push_back(r.to(params[l].device(), params[l].scalar_type()));
        gv = gv + (grads[l] * v[l]).sum();
      }
      auto hv = torch::autograd::grad({gv}, params, {}, /*retain_graph=*/true, /*create_graph=*/false);
      for (size_t l = 0; l < L; ++l) {
        const double t = (hv[l] * v[l]).sum().item<double>();
        sum[l] += t;
        sum_sq[l] += t * t;
      }
      ++draws;
    }
  }
  if (draws == 0) throw std::invalid_argument("Hessian traces: no batch drawn from the data set");
  std::vector<LayerHessianTrace> out;
  for (size_t l = 0; l < L; ++l) {
    LayerHessianTrace t;
    t.layer = layers[l].name;
    t.params = params[l].numel();
    t.trace = sum[l] / static_cast<double>(draws);
    const double var = std::max(0.0, sum_sq[l] / static_cast<double>(draws) - t.trace * t.trace);
    t.std_error = draws > 1 ? std::sqrt(var / static_cast<double>(draws - 1)) : 0.0;
    out.push_back(t);
  }
  return out;
}

}  // namespace autoqnn
