#include "search/ilp.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "autoqnn/checkpoint.h"
#include "autoqnn/data.h"
#include "autoqnn/data_folder.h"
#include "autoqnn/data_files.h"
#include "autoqnn/hessian_trace.h"
#include "autoqnn/number_text.h"
#include "autoqnn/policy.h"
#include "autoqnn/runtime.h"
#include "autoqnn/sensitivity.h"
#include "quantizers/registry.h"
#include "search/search_driver.h"

namespace autoqnn::search {

using nlohmann::json;

json IlpOptions::to_json() const {
  return {{"sensitivity", sensitivity}, {"budgets_bits", budgets_bits}, {"budgets_kib", budgets_kib},
          {"solver", alloc_solver_name(solver)}, {"proxy", proxy},
          {"trace_batches", trace_batches}, {"trace_samples", trace_samples}};
}

IlpOptions IlpOptions::from_json(const json& j) {
  IlpOptions o;
  try {
    o.sensitivity = j.value("sensitivity", "");
    o.budgets_bits = j.value("budgets_bits", std::vector<double>{});
    o.budgets_kib = j.value("budgets_kib", std::vector<double>{});
    o.solver = parse_alloc_solver(j.value("solver", "auto"));
    o.proxy = j.value("proxy", "accuracy");
    o.trace_batches = j.value("trace_batches", int64_t{0});
    o.trace_samples = j.value("trace_samples", int64_t{0});
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("ilp options: ") + e.what());
  }
  return o;
}

namespace {

std::string canonical(const std::string& spec, quant::Role role) {
  return quant::validate_spec(quant::QuantSpec::parse(spec), role).to_string();
}

// Quality of a table row (see ilp.h).
double row_quality(const ptq::SensitivityRow& r, bool accuracy) {
  double rel = std::isinf(r.sqnr_db) && r.sqnr_db > 0 ? 0.0 : std::pow(10.0, -r.sqnr_db / 10.0);
  if (!std::isfinite(rel)) rel = 1.0;
  return accuracy ? -std::max(r.drop, 0.0) - 0.01 * rel : -rel;
}

struct Front {
  std::string tag;                         // "" (one policy) | "1.25bits" | "12kib"
  std::map<std::string, double> flags;     // budget flags of the point
};

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::invalid_argument("--sensitivity: cannot read '" + path + "'");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string stem_of(const std::string& out) {
  return out.size() > 5 && out.substr(out.size() - 5) == ".json" ? out.substr(0, out.size() - 5) : out;
}

SearchResult run_ilp(const SearchOptions& opt) {
  const IlpOptions io = options_as<IlpOptions>(opt.strategy.get(), "ilp");
  const auto t0 = std::chrono::steady_clock::now();
  seed_everything(opt.seed);
  const ModelFactory factory = opt.model_factory ? opt.model_factory
                                                 : [](const std::string& n, const ModelConfig& c) { return make_model(n, c); };
  SearchSpace space = SearchSpace::load(find_search_space(opt.space_path));
  if (space.granularity != Granularity::PerLayer)
    throw std::invalid_argument("--method ilp allocates per layer; the space '" + opt.space_path + "' is " +
                                granularity_name(space.granularity));
  CheckpointMeta ck = read_checkpoint_meta(opt.checkpoint);
  if (ck.model != opt.model)
    throw std::invalid_argument("checkpoint " + opt.checkpoint + " holds model '" + ck.model + "', not --model '" +
                                opt.model + "'");
  if (ck.kind != "fp32")
    throw std::invalid_argument("--method ilp starts from an FP32 checkpoint; " + opt.checkpoint + " is a '" + ck.kind +
                                "' checkpoint");
  ModelPtr model = factory(opt.model, ck.config);
  load_checkpoint_weights(opt.checkpoint, *model);

  // ---- the candidates and their exact costs
  std::vector<LayerProfile> prof = profile_model(*model);
  std::vector<std::string> names;
  int64_t N = 0;
  for (const auto& p : prof) names.push_back(p.name), N += p.params;
  if (space.act_by_input_sign && space.input_one_sided.empty())
    measure_input_signs(space, *model, load_splits(opt.data).train, opt.seed);
  std::vector<CandidateSet> sets = space.resolve(names);
  ChoiceProblem problem;
  problem.num_weights = N;
  std::vector<std::vector<std::pair<quant::QuantSpec, quant::QuantSpec>>> cands(prof.size());
  for (size_t i = 0; i < prof.size(); ++i) {
    ChoiceGroup g;
    g.name = prof[i].name;
    g.layers = {prof[i].name};
    const LayerDims dims = layer_dims(prof[i]);
    for (int64_t c = 0; c < sets[i].size(); ++c) {
      const auto& w = sets[i].weight[static_cast<size_t>(sets[i].weight_index(c))];
      const auto& a = sets[i].act[static_cast<size_t>(sets[i].act_index(c))];
      cands[i].push_back({w, a});
      g.labels.push_back(sets[i].label(c));
      g.cost.push_back(layer_cost(dims, w, a));
      g.prob.push_back(1.0 / static_cast<double>(sets[i].size()));
    }
    problem.groups.push_back(std::move(g));
  }

  // ---- the front's budgets (checked before the analysis: a bad budget costs nothing)
  const std::map<std::string, double>& common = opt.budgets;
  int64_t macs = 0;
  for (const auto& p : prof) macs += p.macs;
  std::vector<Front> front;
  const bool lists = !io.budgets_bits.empty() || !io.budgets_kib.empty();
  if (lists) {
    if (common.count("--avg-bits") || common.count("--budget-kib"))
      throw std::invalid_argument("give either --budgets / --budgets-kib (a front) or --avg-bits / --budget-kib, not both");
    for (double v : io.budgets_bits) {
      Front f{format_number("%g", v) + "bits", common};
      f.flags["--avg-bits"] = v;
      front.push_back(f);
    }
    for (double v : io.budgets_kib) {
      Front f{format_number("%g", v) + "kib", common};
      f.flags["--budget-kib"] = v;
      front.push_back(f);
    }
  } else {
    front.push_back({"", common});
  }
  std::vector<Budgets> budgets;
  for (const auto& f : front) {
    budgets.push_back(make_budgets(f.flags, N, macs));
    check_feasible(problem, budgets.back());
  }
  log_info("ilp: " + opt.model + ", space " + opt.space_path + ", " + std::to_string(front.size()) + " budget(s)");

  // ---- the sensitivity table
  std::vector<ptq::SensitivityRow> rows;
  std::string table_source;
  std::map<std::string, double> trace_of;  // --ilp-proxy hessian: layer -> Tr(H_l)
  std::map<std::string, double> act_trace_of;  // --ilp-proxy fisher: layer -> Tr of the Hessian in its input
  bool acts_searched = false;
  for (const auto& set : sets) acts_searched = acts_searched || set.act.size() > 1;
  if (io.proxy == "hessian" || io.proxy == "fisher") {
    for (size_t i = 0; i < sets.size(); ++i)
      if (io.proxy == "hessian" && sets[i].act.size() > 1)
        throw std::invalid_argument("--ilp-proxy hessian ranks weight candidates only; layer '" + names[i] + "' has " +
                                    std::to_string(sets[i].act.size()) + " act candidates in the space '" +
                                    opt.space_path + "' (--ilp-proxy fisher ranks acts too; or the measured table, "
                                    "--ilp-proxy accuracy)");
    Splits splits = load_splits(opt.data);
    HessianTraceOptions ho;
    ho.estimator = io.proxy == "fisher" ? TraceEstimator::Fisher : TraceEstimator::Hutchinson;
    ho.act_traces = acts_searched;
    ho.batches = io.trace_batches;
    ho.samples = io.trace_samples;
    ho.batch_size = opt.batch_size;
    ho.seed = opt.seed;
    ho.device = opt.device;
    int64_t trace_draws = 0, trace_images = 0;
    for (const auto& t : hessian_traces(*model, splits.train, ho)) {
      trace_of[t.layer] = t.trace;
      trace_draws = t.draws;
      trace_images = t.images;
      if (!std::isnan(t.act_trace)) act_trace_of[t.layer] = t.act_trace;
      log_info("ilp: " + t.layer + ": Tr(H) " + format_number("%.4g", t.trace) + " +- " +
               format_number("%.2g", t.std_error) + " over " + std::to_string(t.params) + " weights" +
               (std::isnan(t.act_trace) ? std::string()
                                        : "; input " + format_number("%.4g", t.act_trace) + " +- " +
                                              format_number("%.2g", t.act_std_error) + " over " +
                                              std::to_string(t.act_numel) + " values per image"));
    }
    ptq::SensitivityOptions so;
    so.accuracy = false;  // the weight and act errors only
    so.calib_batches = opt.calib_batches;
    so.batch_size = opt.batch_size;
    so.seed = opt.seed;
    so.device = opt.device;
    rows = ptq::analyze_sensitivity(*model, cands, splits.train, splits.train, so);
    table_source = io.proxy == "fisher" ? "Hessian traces (Fisher, " + std::to_string(trace_draws) + " draws on " +
                                              std::to_string(trace_images) + " train images) x weight" +
                                              (acts_searched ? " and act errors" : " errors")
                                        : "Hessian traces (Hutchinson, " + std::to_string(trace_draws) +
                                              " vectors on " + std::to_string(trace_images) +
                                              " train images) x weight errors";
  } else if (!io.sensitivity.empty()) {
    rows = ptq::parse_sensitivity_csv(read_text(io.sensitivity), io.sensitivity);
    table_source = io.sensitivity;
  } else {
    Splits splits = load_splits(opt.data);
    if (splits.val.size() == 0) throw std::invalid_argument("ilp: the val split is empty; raise --train-limit");
    TensorDataset val = splits.val.head(opt.val_eval_limit);
    ptq::SensitivityOptions so;
    so.calib_batches = opt.calib_batches;
    so.batch_size = opt.batch_size;
    so.seed = opt.seed;
    so.device = opt.device;
    rows = ptq::analyze_sensitivity(*model, cands, splits.train, val, so);
    table_source = "measured on " + std::to_string(val.size()) + " val images";
  }
  bool accuracy = false;
  for (const auto& r : rows) accuracy = accuracy || r.top1 != 0 || r.drop != 0;
  std::map<std::string, double> q_of;  // "layer|w|a" -> quality
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    std::string key;
    try {
      key = r.layer + "|" + canonical(r.weight, quant::Role::Weight) + "|" + canonical(r.act, quant::Role::Activation);
    } catch (const std::exception& e) {
      throw std::invalid_argument(table_source + ": row " + std::to_string(i + 1) + " (layer '" + r.layer + "'): " + e.what());
    }
    // Tr/n x ||dW||^2 = Tr x mse (and the same per image for the layer's input)
    q_of[key] = trace_of.empty() ? row_quality(r, accuracy)
                                 : -trace_of.at(r.layer) * r.mse -
                                       (r.act_mse > 0 ? act_trace_of.at(r.layer) * r.act_mse : 0.0);
  }
  for (size_t i = 0; i < problem.groups.size(); ++i) {
    auto& g = problem.groups[i];
    for (const auto& [w, a] : cands[i]) {
      auto it = q_of.find(g.name + "|" + w.to_string() + "|" + a.to_string());
      if (it == q_of.end())
        throw std::invalid_argument(table_source + ": no row for layer '" + g.name + "', candidate " + w.to_string() +
                                    " / " + a.to_string() + " (made for another model or search space?)");
      g.quality.push_back(it->second);
    }
  }
  const double analysis_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_info("ilp: sensitivity table " + table_source + format_number(" (%.1f s)", analysis_s) +
           (!trace_of.empty() ? "; quality = -Tr(H) / n x ||dW||^2" +
                                    std::string(act_trace_of.empty() ? "" : " - Tr(H_input) / n x ||dA||^2")
            : accuracy        ? "; quality = -drop - 0.01 x weight error"
                              : "; quality = -weight error (no accuracy)"));

  // ---- one exact solve per budget
  const std::string stem = stem_of(opt.out);
  std::ostringstream csv;
  csv << "budget,weight_bytes,avg_bits,act_bytes,bops,quality,solver,solve_s,policy\n";
  SearchResult last;
  for (size_t i = 0; i < front.size(); ++i) {
    const auto ts = std::chrono::steady_clock::now();
    Allocation a = allocate(problem, budgets[i], io.solver);
    Derivation d;
    d.argmax = d.choice = a.choice;
    d.argmax_cost = a.cost;
    d.fills = fill_budget(problem, budgets[i], d.choice);
    d.cost = total_cost(problem, d.choice);
    const double solve_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();

    ModelPtr fresh = factory(opt.model, ck.config);
    Policy policy = blank_policy(*fresh);
    for (size_t g = 0; g < problem.groups.size(); ++g) {
      LayerPolicy* lp = policy.find(problem.groups[g].name);
      if (!lp) throw std::logic_error("ilp: the policy has no layer '" + problem.groups[g].name + "'");
      lp->weight = cands[g][static_cast<size_t>(d.choice[g])].first;
      lp->act = cands[g][static_cast<size_t>(d.choice[g])].second;
    }
    update_totals(policy);
    const Cost pc{static_cast<double>(policy.totals.weight_bytes), static_cast<double>(policy.totals.act_bytes),
                  policy.totals.bops};
    if (!within(pc, budgets[i]))
      throw std::logic_error("ilp: the policy exceeds the budget by its own accounting; please report this");
    const std::string out = front[i].tag.empty() ? opt.out : stem + "." + front[i].tag + ".json";
    json prov = {{"method", "ilp"},
                 {"version", AUTOQNN_VERSION},
                 {"command", opt.command_line},
                 {"seed", opt.seed},
                 {"checkpoint", opt.checkpoint},
                 {"dataset", opt.data.dataset},
                 {"space", {{"path", opt.space_path}, {"name", space.name}, {"definition", space.raw}}},
                 {"strategy", io.to_json()},
                 {"sensitivity", table_source},
                 {"budget", budgets[i].to_json(N)},
                 {"derivation", d.to_json(problem)},
                 {"solver", a.solver},
                 {"quality", choice_quality(problem, d.choice)},
                 {"analysis_s", analysis_s},
                 {"solve_s", solve_s}};
    if (is_folder_dataset(opt.data.dataset)) prov["classes"] = folder_class_names(opt.data.dataset);
    save_searched_policy(out, policy, prov);
    csv << (front[i].tag.empty() ? budgets[i].describe(N) : front[i].tag) << "," << d.cost.weight_bytes << ","
        << format_number("%.4f", avg_bits(d.cost.weight_bytes, N)) << "," << d.cost.act_bytes << "," << format_number("%.6g", d.cost.bops)
        << "," << format_number("%.6g", choice_quality(problem, d.choice)) << "," << a.solver << "," << format_number("%.3f", solve_s)
        << "," << out << "\n";
    last.policy = std::move(policy);
    last.derivation = d;
  }
  if (front.size() > 1) {
    atomic_write_text(stem + ".front.csv", csv.str());
    log_info("ilp: front of " + std::to_string(front.size()) + " policies: " + stem + ".front.csv" +
             format_number(" (%.1f s in all)", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
  }
  return last;
}

}  // namespace

SearchMethod ilp_method() {
  SearchMethod m;
  m.name = "ilp";
  m.summary = "exact allocation from a sensitivity table, no training (--budgets for a front)";
  m.budget_lists = true;
  m.flags = {
      {"sensitivity", "ilp: the `autoqnn analyze` table of the same model and space (default: measured on the val split)",
       "", false},
      {"budgets", "ilp: a front: one policy per weight budget in bits/weight, e.g. 1,1.25,1.5,2,3", "", false},
      {"budgets-kib", "ilp: a front: one policy per weight budget in KiB, e.g. 8,12,16", "", false},
      {"ilp-solver", "ilp: auto (DP for one size budget, GLPK otherwise) | dp | glpk", "auto", false},
      {"ilp-proxy",
       "ilp: auto (fisher; accuracy with --sensitivity) | accuracy (measure every candidate's accuracy drop on the "
       "val split, or read --sensitivity) | hessian "
       "(Hessian trace x weight error, HAWQ-v2, Hutchinson: no evaluation; weight candidates only) | fisher (the "
       "same with the traces from the Fisher: equal for ReLU/BatchNorm networks, about 10x cheaper, and acts "
       "ranked too by the trace in each layer's input x the act error)",
       "auto", false},
      {"trace-batches", "ilp --ilp-proxy hessian|fisher: train batches for the traces (0: 2 hessian, 4 fisher)", "0",
       false},
      {"trace-samples", "ilp --ilp-proxy hessian|fisher: draws per batch (0: 16 hessian, 8 fisher)", "0", false},
  };
  m.options_from_flags = [](const FlagValues& f) {
    auto o = std::make_shared<IlpOptions>();
    o->sensitivity = f.text("sensitivity");
    if (f.has("budgets")) o->budgets_bits = parse_budget_list(f.text("budgets"), "--budgets");
    if (f.has("budgets-kib")) o->budgets_kib = parse_budget_list(f.text("budgets-kib"), "--budgets-kib");
    o->solver = parse_alloc_solver(f.text("ilp-solver"));
    o->proxy = f.text("ilp-proxy");
    if (o->proxy == "auto") o->proxy = f.has("sensitivity") ? "accuracy" : "fisher";
    o->trace_batches = f.integer("trace-batches");
    o->trace_samples = f.integer("trace-samples");
    if (o->trace_batches < 0 || o->trace_samples < 0)
      throw std::invalid_argument("--trace-batches and --trace-samples must be >= 0 (0: the estimator's default)");
    if (o->proxy == "accuracy" && (o->trace_batches > 0 || o->trace_samples > 0))
      throw std::invalid_argument("--trace-batches / --trace-samples need --ilp-proxy hessian or fisher");
    if (o->proxy != "accuracy" && o->proxy != "hessian" && o->proxy != "fisher")
      throw std::invalid_argument("--ilp-proxy must be auto, accuracy, hessian or fisher, got '" + o->proxy + "'");
    if (o->proxy != "accuracy" && !o->sensitivity.empty())
      throw std::invalid_argument("--ilp-proxy " + o->proxy + " computes its own table; do not give --sensitivity");
    return o;
  };
  m.options_from_json = [](const json& j) { return std::make_shared<IlpOptions>(IlpOptions::from_json(j)); };
  m.run = run_ilp;
  return m;
}

}  // namespace autoqnn::search
