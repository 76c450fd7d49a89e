#include "search/qss.h"

#include <stdexcept>

namespace autoqnn::search {

using nlohmann::json;

QssOptions QssOptions::from_json(const json& j) {
  QssOptions o;
  if (j.is_null()) return o;
  if (!j.is_object()) throw std::invalid_argument("qss options must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    auto num = [&]() {
      if (!v.is_number()) throw std::invalid_argument("qss option '" + k + "' must be a number");
      return v.get<double>();
    };
    auto boolean = [&]() {
      if (!v.is_boolean()) throw std::invalid_argument("qss option '" + k + "' must be true or false");
      return v.get<bool>();
    };
    if (k == "sampling") {
      if (!v.is_string()) throw std::invalid_argument("qss option 'sampling' must be \"soft\" or \"hard\"");
      o.sampling = parse_sampling(v.get<std::string>());
    } else if (k == "tau_start") {
      o.tau.start = num();
    } else if (k == "tau_end") {
      o.tau.end = num();
    } else if (k == "tau_schedule") {
      if (!v.is_string()) throw std::invalid_argument("qss option 'tau_schedule' must be a string");
      o.tau.kind = v.get<std::string>();
    } else if (k == "all_act_paths") {
      o.all_act_paths = boolean();
    } else if (k == "gumbel") {
      o.gumbel = boolean();
    } else {
      throw std::invalid_argument("unknown qss option '" + k +
                                  "' (valid: sampling, tau_start, tau_end, tau_schedule, all_act_paths, gumbel)");
    }
  }
  o.tau.validate();
  return o;
}

json QssOptions::to_json() const {
  return {{"sampling", sampling_name(sampling)}, {"tau_start", tau.start},         {"tau_end", tau.end},
          {"tau_schedule", tau.kind},             {"all_act_paths", all_act_paths}, {"gumbel", gumbel}};
}

QssStrategy::QssStrategy(ModelPtr model, const SearchSpace& space, QssOptions opt)
    : net_(std::make_shared<Supernet>(std::move(model), space)), opt_(std::move(opt)) {
  opt_.tau.validate();
  net_->set_all_act_paths(opt_.all_act_paths);
}

void QssStrategy::begin_step(Phase phase, double progress, uint64_t step_seed) {
  double tau = phase == Phase::Warmup ? opt_.tau.start : opt_.tau.at(progress);
  net_->sample(opt_.sampling, tau, /*arch_grad=*/phase == Phase::Arch, step_seed, opt_.gumbel);
}

void QssStrategy::calibrate(const torch::Tensor& images, uint64_t step_seed) {
  // Soft mixing so that every act candidate sees the batch (and its running statistics start from data).
  torch::NoGradGuard ng;
  net_->calibrate_next();
  net_->sample(SamplingMode::Soft, opt_.tau.start, false, step_seed, opt_.gumbel);
  net_->forward(images);
}

std::vector<std::pair<std::string, std::pair<quant::QuantSpec, quant::QuantSpec>>> QssStrategy::layer_specs(
    const std::vector<int64_t>& choice) {
  auto specs = net_->layer_specs(choice);
  std::vector<std::pair<std::string, std::pair<quant::QuantSpec, quant::QuantSpec>>> out;
  for (size_t i = 0; i < specs.size(); ++i) out.push_back({net_->layers()[i].name, specs[i]});
  return out;
}

std::vector<std::pair<std::string, double>> QssStrategy::metrics(double progress) {
  return {{"tau", opt_.tau.at(progress)}, {"entropy", net_->mean_entropy()}};
}

std::unique_ptr<SearchStrategy> make_qss_strategy(ModelPtr model, const SearchSpace& space, const json& options) {
  return std::make_unique<QssStrategy>(std::move(model), space, QssOptions::from_json(options));
}

}  // namespace autoqnn::search
