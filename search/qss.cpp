#include "search/qss.h"

#include <cmath>
#include <map>
#include <stdexcept>

#include "autoqnn/runtime.h"
#include "quantizers/registry.h"

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
    } else if (k == "theta_init") {
      if (!v.is_object()) throw std::invalid_argument("qss option 'theta_init' must be {layer: {\"w|a\": logit}}");
      for (auto l = v.begin(); l != v.end(); ++l) {
        if (!l.value().is_object())
          throw std::invalid_argument("qss option 'theta_init': layer '" + l.key() + "' must map candidates to logits");
        for (auto c = l.value().begin(); c != l.value().end(); ++c)
          if (!c.value().is_number() || !std::isfinite(c.value().get<double>()))
            throw std::invalid_argument("qss option 'theta_init': layer '" + l.key() + "', candidate '" + c.key() +
                                        "' needs a finite number");
      }
      o.theta_init = v;
    } else {
      throw std::invalid_argument("unknown qss option '" + k +
                                  "' (valid: sampling, tau_start, tau_end, tau_schedule, all_act_paths, gumbel, "
                                  "theta_init)");
    }
  }
  o.tau.validate();
  return o;
}

json QssOptions::to_json() const {
  json j = {{"sampling", sampling_name(sampling)}, {"tau_start", tau.start},         {"tau_end", tau.end},
            {"tau_schedule", tau.kind},             {"all_act_paths", all_act_paths}, {"gumbel", gumbel}};
  if (!theta_init.empty()) j["theta_init"] = theta_init;  // absent when unused: older states keep their key
  return j;
}

QssStrategy::QssStrategy(ModelPtr model, const SearchSpace& space, QssOptions opt)
    : net_(std::make_shared<Supernet>(std::move(model), space)), opt_(std::move(opt)) {
  opt_.tau.validate();
  net_->set_all_act_paths(opt_.all_act_paths);
  if (!opt_.theta_init.empty()) apply_theta_init();
}

void QssStrategy::apply_theta_init() {
  const auto& layers = net_->layers();
  // canonical "<weight>|<act>" keys (the JSON may say "binary" for "binary:1")
  std::map<std::string, std::map<std::string, double>> prior;
  for (auto it = opt_.theta_init.begin(); it != opt_.theta_init.end(); ++it) {
    bool found = false;
    for (const auto& l : layers) found = found || l.name == it.key();
    if (!found) throw std::invalid_argument("qss theta_init names layer '" + it.key() + "', which the model does not have");
    for (auto c = it.value().begin(); c != it.value().end(); ++c) {
      const auto bar = c.key().find('|');
      if (bar == std::string::npos)
        throw std::invalid_argument("qss theta_init: layer '" + it.key() + "': candidate '" + c.key() +
                                    "' must read \"<weight spec>|<act spec>\"");
      std::string key;
      try {
        key = quant::validate_spec(quant::QuantSpec::parse(c.key().substr(0, bar)), quant::Role::Weight).to_string() +
              "|" +
              quant::validate_spec(quant::QuantSpec::parse(c.key().substr(bar + 1)), quant::Role::Activation).to_string();
      } catch (const std::exception& e) {
        throw std::invalid_argument("qss theta_init: layer '" + it.key() + "', candidate '" + c.key() + "': " + e.what());
      }
      prior[it.key()][key] = c.value().get<double>();
    }
  }
  int64_t set = 0, total = 0;
  torch::NoGradGuard ng;
  for (const auto& G : net_->groups()) {
    if (!G.searched()) continue;
    std::vector<double> th(G.size(), 0.0);
    for (int64_t c = 0; c < G.size(); ++c) {
      const std::string key =
          G.cands.weight[G.cands.weight_index(c)].to_string() + "|" + G.cands.act[G.cands.act_index(c)].to_string();
      double sum = 0;
      int64_t n = 0;
      for (int64_t li : G.layers) {
        auto lp = prior.find(layers[li].name);
        if (lp == prior.end()) continue;
        auto v = lp->second.find(key);
        if (v == lp->second.end()) continue;
        sum += v->second;
        ++n;
      }
      ++total;
      if (n > 0) {
        th[c] = sum / static_cast<double>(n);
        ++set;
      }
    }
    G.theta.copy_(torch::tensor(th, torch::kFloat64).to(G.theta.options()));
  }
  log_info("qss: initial architecture logits from theta_init: " + std::to_string(set) + " of " + std::to_string(total) +
           " candidates set (the others start at 0)");
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
