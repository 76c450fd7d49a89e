#include "search/qss.h"

#include <cmath>
#include <map>
#include <stdexcept>

#include "autoqnn/option_fields.h"
#include "autoqnn/runtime.h"
#include "quantizers/registry.h"
#include "search/sensitivity_prior.h"

namespace autoqnn::search {

using nlohmann::json;

namespace {
const OptionFields<QssOptions>& qss_fields() {
  using F = OptionFields<QssOptions>;
  static const F f = F("qss")
      .field("sampling", [](const QssOptions& o) { return json(sampling_name(o.sampling)); },
             [](QssOptions& o, const json& v) {
               if (!v.is_string()) throw std::invalid_argument("qss option 'sampling' must be \"soft\" or \"hard\"");
               o.sampling = parse_sampling(v.get<std::string>());
             })
      .field("tau_start", [](const QssOptions& o) { return json(o.tau.start); },
             [](QssOptions& o, const json& v) { o.tau.start = F::convert<double>(v, "qss", "tau_start"); })
      .field("tau_end", [](const QssOptions& o) { return json(o.tau.end); },
             [](QssOptions& o, const json& v) { o.tau.end = F::convert<double>(v, "qss", "tau_end"); })
      .field("tau_schedule", [](const QssOptions& o) { return json(o.tau.kind); },
             [](QssOptions& o, const json& v) { o.tau.kind = F::convert<std::string>(v, "qss", "tau_schedule"); })
      .field("arch_logits", [](const QssOptions& o) { return json(arch_logits_name(o.arch_logits)); },
             [](QssOptions& o, const json& v) {
               if (!v.is_string()) throw std::invalid_argument("qss option 'arch_logits' must be \"factored\" or \"joint\"");
               o.arch_logits = parse_arch_logits(v.get<std::string>());
             })
      .member("all_act_paths", &QssOptions::all_act_paths)
      .member("gumbel", &QssOptions::gumbel)
      // absent when unused: older states keep their resume key
      .field("theta_init", [](const QssOptions& o) { return o.theta_init.empty() ? json() : o.theta_init; },
             [](QssOptions& o, const json& v) {
               if (!v.is_object()) throw std::invalid_argument("qss option 'theta_init' must be {layer: {\"w|a\": logit}}");
               for (auto l = v.begin(); l != v.end(); ++l) {
                 if (!l.value().is_object())
                   throw std::invalid_argument("qss option 'theta_init': layer '" + l.key() +
                                               "' must map candidates to logits");
                 for (auto c = l.value().begin(); c != l.value().end(); ++c)
                   if (!c.value().is_number() || !std::isfinite(c.value().get<double>()))
                     throw std::invalid_argument("qss option 'theta_init': layer '" + l.key() + "', candidate '" +
                                                 c.key() + "' needs a finite number");
               }
               o.theta_init = v;
             });
  return f;
}
}  // namespace

QssOptions QssOptions::from_json(const json& j) {
  QssOptions o = qss_fields().from_json(j);
  o.validate();
  return o;
}

json QssOptions::to_json() const { return qss_fields().to_json(*this); }

void QssOptions::validate() const { tau.validate(); }

std::vector<MethodFlag> qss_flags() {
  return {
      {"sampling", "hard (straight-through Gumbel, the sampled candidate per step) | soft (every candidate mixed)",
       "hard", false},
      {"tau-start", "Gumbel-softmax temperature at the start", "5", false},
      {"tau-end", "temperature at the end of the search", "0.1", false},
      {"tau-schedule", "exp | linear | constant", "exp", false},
      {"arch-logits",
       "joint (one logit per (weight, act) pair) | factored (one per weight and one per act candidate, summed); "
       "the same when only weights are searched",
       "joint", false},
      {"act-paths",
       "hard sampling, architecture steps: all (every act candidate evaluated: the exact gradient of the act "
       "choice) | sampled (only the sampled one: faster, but the act choice learns from one path per step)",
       "all", false},
      {"no-gumbel", "no Gumbel noise: mixing weights softmax(theta / tau)", "", true},
      {"init-from-sensitivity", "initial architecture logits from an `autoqnn analyze` table (-K x accuracy drop)", "",
       false},
      {"sensitivity-scale",
       "K of --init-from-sensitivity: logit = -K x drop (drop as a fraction; 20: a 5-point drop -> -1)", "20", false},
  };
}

QssOptions qss_options_from_flags(const FlagValues& f) {
  QssOptions q;
  q.sampling = parse_sampling(f.text("sampling"));
  q.tau.start = f.number("tau-start");
  q.tau.end = f.number("tau-end");
  q.tau.kind = f.text("tau-schedule");
  q.arch_logits = parse_arch_logits(f.text("arch-logits"));
  const std::string act_paths = f.text("act-paths");
  if (act_paths != "all" && act_paths != "sampled")
    throw std::invalid_argument("--act-paths must be all or sampled, got '" + act_paths + "'");
  q.all_act_paths = act_paths == "all";
  q.gumbel = !f.on("no-gumbel");
  if (f.has("init-from-sensitivity")) {
    const std::string& csv = f.text("init-from-sensitivity");
    const double scale = f.number("sensitivity-scale");
    q.theta_init = theta_prior_from_sensitivity(ptq::parse_sensitivity_csv(read_text_file(csv), csv), scale, csv);
    log_info("search: architecture prior from " + csv + " (" + std::to_string(q.theta_init.size()) +
             " layers, scale " + f.text("sensitivity-scale") + ")");
  } else if (f.has("sensitivity-scale")) {
    throw std::invalid_argument("--sensitivity-scale needs --init-from-sensitivity");
  }
  q.validate();
  return q;
}

QssStrategy::QssStrategy(ModelPtr model, const SearchSpace& space, QssOptions opt)
    : NetStrategy(std::make_shared<Supernet>(std::move(model), space, opt.arch_logits)), opt_(std::move(opt)) {
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
  quality_.assign(net_->groups().size(), {});
  for (size_t gi = 0; gi < net_->groups().size(); ++gi) {
    const auto& G = net_->groups()[gi];
    if (!G.searched()) continue;
    std::vector<double> th(G.size(), 0.0), q(G.size(), 0.0);
    bool covered = true;
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
      q[c] = sum;
      covered = covered && n == static_cast<int64_t>(G.layers.size());
    }
    if (covered) quality_[gi] = q;  // the budget fill's measured gain (every candidate of the group known)
    net_->set_logits(static_cast<int64_t>(gi), torch::tensor(th, torch::kFloat64));
  }
  log_info("qss: initial architecture logits from theta_init: " + std::to_string(set) + " of " + std::to_string(total) +
           " candidates set (the others start at 0)");
}

ChoiceProblem QssStrategy::choice_problem() {
  ChoiceProblem p = net_->choice_problem();
  for (size_t g = 0; g < p.groups.size() && g < quality_.size(); ++g) p.groups[g].quality = quality_[g];
  return p;
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

std::vector<std::pair<std::string, double>> QssStrategy::metrics(double progress) {
  return {{"tau", opt_.tau.at(progress)}, {"entropy", net_->mean_entropy()}};
}

SearchMethod qss_method() {
  SearchMethod m;
  m.name = "qss";
  m.summary = "schemes x bits: Gumbel-softmax search over the candidates of a search space";
  m.needs_supernet = true;
  m.flags = qss_flags();
  m.options_from_flags = [](const FlagValues& f) { return std::make_shared<QssOptions>(qss_options_from_flags(f)); };
  m.options_from_json = [](const json& j) { return std::make_shared<QssOptions>(QssOptions::from_json(j)); };
  m.make = [](ModelPtr model, const SearchSpace& space, const StrategyOptions* o) -> std::unique_ptr<SearchStrategy> {
    return std::make_unique<QssStrategy>(std::move(model), space, options_as<QssOptions>(o, "qss"));
  };
  return m;
}

}  // namespace autoqnn::search
