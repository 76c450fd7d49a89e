// autoqnn afp: choose AFP's exponent/mantissa split per model or per layer (distribution distance x
// hardware cost, simulated annealing or exhaustive; docs/ptq.md) and write an AFP policy.
#include <functional>
#include <iomanip>
#include <sstream>
#include <iostream>

#include "autoqnn/afp_search.h"
#include "autoqnn/convert.h"
#include "autoqnn/model_io.h"
#include "autoqnn/runtime.h"
#include "autoqnn/trainer.h"
#include "cli.h"
#include "quantizers/registry.h"

namespace autoqnn::cli {
namespace {

int run_afp(const std::vector<std::string>& args) {
  CommonOptions c;
  CheckpointOptions ck;
  OutputOptions out;
  CalibBatchOptions calib(8);
  std::string search = "anneal", act = "fp32", qout;
  int bits = 5;
  bool per_layer = false, eval = false, json = false;
  po::options_description desc("afp options");
  add_common_options(desc, c);
  ck.add(desc, "FP32 checkpoint")
    ("bits", po::value(&bits)->required(), "total AFP bits N = 1 + E + M")
    ("per-layer", po::bool_switch(&per_layer), "choose E per layer (default: one E for the whole model)")
    ("search", po::value(&search)->default_value(search), "anneal | exhaustive")
    ("act", po::value(&act)->default_value(act), "input-activation spec of every layer (AFP quantizes weights)");
  out.add(desc, "AFP policy JSON to write (atomically)")
    ("checkpoint-out", po::value(&qout), "also write the quantized checkpoint (weights calibrated; act ranges "
                                         "from --calib-batches)");
  calib.add(desc, "calibration batches for quantized activations")
    ("eval", po::bool_switch(&eval), "evaluate the AFP model on the test split")
    ("json", po::bool_switch(&json), "with --eval: one JSON object on stdout");
  po::variables_map vm;
  if (!parse("afp", "--model NAME --checkpoint FP.pt --bits N [--per-layer] [--search anneal|exhaustive] --out P.json",
             desc, args, vm))
    return 0;
  if (search != "anneal" && search != "exhaustive")
    throw UsageError("--search '" + search + "' (valid: anneal, exhaustive)");
  if (bits < 2 || bits > 16) throw UsageError("--bits " + std::to_string(bits) + " out of range [2, 16]");
  quant::QuantSpec aspec;
  try {
    aspec = quant::validate_spec(quant::QuantSpec::parse(act), quant::Role::Activation);
  } catch (const std::exception& e) {
    throw UsageError(std::string("--act: ") + e.what());
  }
  auto device = setup_runtime(c);
  std::string expect = vm["model"].defaulted() ? "" : c.model;
  auto loaded = load_model(ck.path, expect, c.model_config());
  if (loaded.has_policy) throw std::runtime_error("checkpoint '" + ck.path + "' is already quantized; afp takes an FP32 checkpoint");
  Model& model = *loaded.model;
  auto layers = quant_layers(model);
  std::vector<torch::Tensor> ws;
  std::vector<double> share;
  double total = 0;
  for (auto& l : layers) {
    ws.push_back(l.layer->weight_param().detach().cpu());
    total += static_cast<double>(ws.back().numel());
  }
  for (auto& w : ws) share.push_back(static_cast<double>(w.numel()) / total);

  auto run = [&](const std::function<double(int)>& dist, uint64_t seed) {
    return search == "anneal" ? ptq::afp_anneal(bits, dist, seed) : ptq::afp_exhaustive(bits, dist);
  };
  Policy p = blank_policy(model);
  nlohmann::json prov = {{"method", "afp"}, {"bits", bits}, {"search", search}, {"per_layer", per_layer},
                         {"seed", c.seed}, {"version", AUTOQNN_VERSION}};
  auto report = [&](const std::string& who, const ptq::AfpSearchResult& r) {
    std::ostringstream os;
    os << who << ": E=" << r.best.E << " M=" << r.best.M << " (distance " << std::setprecision(4) << r.best.distance
       << " x cost " << r.best.cost << " = " << r.best.objective << "; " << r.visited.size() << " evaluations)";
    log_info("afp: " + os.str());
    nlohmann::json v = nlohmann::json::array();
    for (const auto& e : r.visited) v.push_back({{"E", e.E}, {"distance", e.distance}, {"objective", e.objective}});
    return nlohmann::json{{"E", r.best.E}, {"M", r.best.M}, {"distance", r.best.distance}, {"cost", r.best.cost},
                          {"visited", v}};
  };
  std::vector<int> E(layers.size());
  if (per_layer) {
    nlohmann::json pl = nlohmann::json::object();
    for (size_t i = 0; i < layers.size(); ++i) {
      auto r = run([&](int e) { return ptq::afp_distance_at(ws[i], bits, e); }, c.seed + i);
      E[i] = r.best.E;
      pl[layers[i].name] = report(layers[i].name, r);
    }
    prov["layers"] = pl;
  } else {
    auto r = run(
        [&](int e) {
          double d = 0;
          for (size_t i = 0; i < ws.size(); ++i) d += share[i] * ptq::afp_distance_at(ws[i], bits, e);
          return d;
        },
        c.seed);
    std::fill(E.begin(), E.end(), r.best.E);
    prov["model"] = report("model", r);
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerPolicy& l = *p.find(layers[i].name);
    l.weight = quant::validate_spec(
        quant::QuantSpec::parse("afp:" + std::to_string(bits) + ":e=" + std::to_string(E[i])), quant::Role::Weight);
    l.act = aspec;
  }
  update_totals(p);
  p.search = prov;
  save_policy(out.path, p);
  std::cout << "wrote " << out.path << " (" << p.totals.weight_bytes << " weight bytes, " << p.totals.avg_weight_bits
            << " bits/weight)" << std::endl;
  if (!qout.empty() || eval) {
    CalibOptions co;
    co.batches = aspec.is_fp() ? 0 : calib.batches;
    co.batch_size = c.batch_size;
    co.seed = c.seed;
    co.device = device;
    auto splits = load_splits(c.data_options());
    convert_model(model, p, &splits.full_train, co);
    if (!qout.empty()) {
      CheckpointMeta qm = quantized_meta(model, p, c.dataset, 0);
      qm.extra = {{"converted_from", ck.path}, {"afp", prov}};
      save_checkpoint(qout, model, qm);
    }
    if (eval) {
      auto r = evaluate(model, splits.test, c.batch_size, device);
      nlohmann::json j = {{"top1", r.top1}, {"loss", r.loss}, {"n", r.n}, {"model", model.name()},
                          {"weight_bytes", p.totals.weight_bytes}, {"avg_weight_bits", p.totals.avg_weight_bits}};
      if (json) std::cout << j.dump() << std::endl;
      else std::cout << "model " << model.name() << "  top-1 " << r.top1 * 100 << " %  (n=" << r.n << ")" << std::endl;
    }
  }
  return 0;
}

}  // namespace

AUTOQNN_VERB("afp", "choose the AFP exponent/mantissa split (annealing or exhaustive) and write an AFP policy", run_afp);

}  // namespace autoqnn::cli
