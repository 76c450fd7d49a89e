#include "autoqnn/hessian_trace.h"

#include <cmath>
#include <random>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "autoqnn/quant_layers.h"

namespace autoqnn {

namespace {

// Stands in an empty act slot while the Fisher traces are drawn: hands on a view of its input (a node of
// its own, so the gradient in it is this layer's path only) and keeps it for autograd::grad.
class InputProbe : public quant::FakeQuantizer {
 public:
  torch::Tensor input;
  torch::Tensor forward(const torch::Tensor& x) override {
    input = x.requires_grad() ? x.view_as(x) : x.detach().requires_grad_(true);
    return input;
  }
  std::string describe() const override { return "Hessian-trace input probe"; }
};

}  // namespace

const char* trace_estimator_name(TraceEstimator e) { return e == TraceEstimator::Fisher ? "fisher" : "hutchinson"; }

std::vector<LayerHessianTrace> hessian_traces(Model& model, const TensorDataset& data, const HessianTraceOptions& opt) {
  if (data.size() == 0) throw std::invalid_argument("Hessian traces: the data set is empty");
  if (opt.batches < 0 || opt.samples < 0 || opt.batch_size < 1)
    throw std::invalid_argument("Hessian traces: batches and samples must be >= 0 (0: the default), batch size >= 1");
  const bool fisher = opt.estimator == TraceEstimator::Fisher;
  const int64_t batches = opt.batches > 0 ? opt.batches : (fisher ? 4 : 2);
  const int64_t samples = opt.samples > 0 ? opt.samples : (fisher ? 8 : 16);
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
  std::vector<std::shared_ptr<InputProbe>> probes;  // Fisher: the layers' inputs
  if (opt.estimator == TraceEstimator::Fisher && opt.act_traces)
    for (auto& l : layers) {
      probes.push_back(std::make_shared<InputProbe>());
      l.layer->set_act_quantizer(probes.back());
    }
  struct Restore {
    Model& m;
    bool training;
    std::vector<std::pair<torch::Tensor, bool>>& flags;
    std::vector<NamedQuantLayer>& layers;
    bool probed;
    ~Restore() {
      for (auto& [p, on] : flags) p.requires_grad_(on);
      if (probed)
        for (auto& l : layers) l.layer->set_act_quantizer(nullptr);
      m.train(training);
    }
  } restore{model, was_training, grad_flags, layers, !probes.empty()};

  const size_t L = params.size();
  std::vector<double> sum(2 * L, 0.0), sum_sq(2 * L, 0.0);  // weights, then (Fisher) the layers' inputs
  std::vector<int64_t> act_numel(L, 0);
  int64_t draws = 0, images = 0;
  std::mt19937_64 rng(opt.seed * 0x9E3779B97F4A7C15ULL + 17);
  BatchIterator it(data, opt.batch_size, /*shuffle=*/true, opt.seed);
  torch::Tensor x, y;
  auto add = [&](const std::vector<torch::Tensor>& per_layer) {  // one device-to-host copy per draw
    auto t = torch::stack(per_layer).to(torch::kCPU, torch::kFloat64);
    const double* tp = t.data_ptr<double>();
    for (size_t l = 0; l < per_layer.size(); ++l) {
      sum[l] += tp[l];
      sum_sq[l] += tp[l] * tp[l];
    }
  };
  for (int64_t b = 0; b < batches && it.next(x, y); ++b) {
    images += x.size(0);
    auto logits = model.forward(x.to(opt.device));
    if (fisher) {
      // log p(.|x) kept for every draw; labels drawn from p by inverse CDF with our generator
      auto logp = torch::log_softmax(logits, 1);
      auto cdf = logp.detach().exp().cumsum(1).to(torch::kCPU, torch::kFloat64).contiguous();
      const int64_t n = cdf.size(0), k = cdf.size(1);
      const double* c = cdf.data_ptr<double>();
      std::vector<torch::Tensor> wrt = params;
      for (size_t l = 0; l < probes.size(); ++l) {
        wrt.push_back(probes[l]->input);
        act_numel[l] = probes[l]->input.numel() / probes[l]->input.size(0);
      }
      for (int64_t s = 0; s < samples; ++s) {
        auto label = torch::empty({n, 1}, torch::kLong);
        auto sign = torch::empty({n, 1}, torch::kFloat32);
        int64_t* lp = label.data_ptr<int64_t>();
        float* sp = sign.data_ptr<float>();
        for (int64_t i = 0; i < n; ++i) {
          const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * c[i * k + k - 1];
          int64_t j = 0;
          while (j + 1 < k && c[i * k + j] <= u) ++j;
          lp[i] = j;
          sp[i] = (rng() >> 63) ? 1.0f : -1.0f;
        }
        auto signed_nll = -(logp.gather(1, label.to(opt.device)) * sign.to(opt.device, logp.scalar_type())).sum();
        auto g = torch::autograd::grad({signed_nll}, wrt, {}, /*retain_graph=*/true, /*create_graph=*/false);
        std::vector<torch::Tensor> t;
        for (const auto& gl : g) t.push_back(gl.pow(2).sum() / static_cast<double>(n));
        add(t);
        ++draws;
      }
      continue;
    }
    auto loss = torch::nn::functional::cross_entropy(logits, y.to(opt.device));
    auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true, /*create_graph=*/true);
    for (int64_t s = 0; s < samples; ++s) {
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
      std::vector<torch::Tensor> t;
      for (size_t l = 0; l < L; ++l) t.push_back((hv[l] * v[l]).sum());
      add(t);
      ++draws;
    }
  }
  if (draws == 0) throw std::invalid_argument("Hessian traces: no batch drawn from the data set");
  auto mean_and_std_error = [&](size_t i) {  // over the draws of accumulator i
    const double n = static_cast<double>(draws), mean = sum[i] / n;
    const double var = std::max(0.0, sum_sq[i] / n - mean * mean);
    return std::make_pair(mean, draws > 1 ? std::sqrt(var / (n - 1)) : 0.0);
  };
  std::vector<LayerHessianTrace> out;
  for (size_t l = 0; l < L; ++l) {
    LayerHessianTrace t;
    t.layer = layers[l].name;
    t.params = params[l].numel();
    std::tie(t.trace, t.std_error) = mean_and_std_error(l);
    if (!probes.empty()) {
      t.act_numel = act_numel[l];
      std::tie(t.act_trace, t.act_std_error) = mean_and_std_error(L + l);
    }
    t.draws = draws;
    t.images = images;
    out.push_back(t);
  }
  return out;
}

}  // namespace autoqnn
