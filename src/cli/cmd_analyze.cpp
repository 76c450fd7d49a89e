// autoqnn analyze: per-layer, per-candidate quantization error and accuracy drop with only that layer
// quantized (a sensitivity table, CSV + readable; docs/ptq.md). `search --init-from-sensitivity` reads it.
#include <iostream>

#include "autoqnn/data_files.h"
#include "autoqnn/model_io.h"
#include "autoqnn/runtime.h"
#include "autoqnn/sensitivity.h"
#include "cli.h"
#include "search/search_space.h"

namespace autoqnn::cli {
namespace {

int run_analyze(const std::vector<std::string>& args) {
  CommonOptions c;
  CheckpointOptions ck;
  OutputOptions out;
  std::string space_path = "configs/search_space/default.json";
  ptq::SensitivityOptions so;
  CalibBatchOptions calib(so.calib_batches);
  bool no_accuracy = false;
  std::string split = "val";
  DistributedFlags distributed;
  po::options_description desc("analyze options");
  add_common_options(desc, c);
  distributed.add(desc);
  ck.add(desc, "FP32 checkpoint")
    ("space", po::value(&space_path)->default_value(space_path),
     "search space JSON: the candidates per layer (or a name in configs/search_space/, e.g. lowbit)");
  out.add(desc, "sensitivity CSV to write (atomically; default: the CSV to stdout, the readable table to stderr)",
          Need::Optional);
  calib.add(desc, "training mini-batches calibrating the layer's activation quantizer")
    ("no-accuracy", po::bool_switch(&no_accuracy), "weight errors only (no evaluation per candidate)")
    ("eval-split", po::value(&split)->default_value(split),
     "where the accuracy drop is measured: val (held out of the training set; use it to steer a search) | test");
  po::variables_map vm;
  if (!parse("analyze", "--model NAME --checkpoint FP.pt [--space SPACE] [--out S.csv]", desc, args, vm)) return 0;
  calib.check();
  if (split != "val" && split != "test") throw UsageError("--eval-split must be val or test, got '" + split + "'");
  auto device = setup_runtime(c);
  distributed.init(c, device);  // data parallel: statistics and evaluations sharded and reduced, rank 0 writes
  check_same_command("analyze", vm);
  auto space = search::SearchSpace::load(find_search_space(space_path));
  std::string expect = vm["model"].defaulted() ? "" : c.model;
  auto loaded = load_model(ck.path, expect, c.model_config());
  if (loaded.has_policy)
    throw std::runtime_error("checkpoint '" + ck.path + "' is already quantized; analyze takes an FP32 checkpoint");
  Model& model = *loaded.model;
  std::vector<std::string> names;
  for (const auto& l : quant_layers(model)) names.push_back(l.name);
  auto splits = load_splits(c.data_options());
  search::measure_input_signs(space, model, splits.train, c.seed);
  auto sets = space.resolve(names);
  std::vector<std::vector<std::pair<quant::QuantSpec, quant::QuantSpec>>> cands;
  for (const auto& s : sets) {
    cands.emplace_back();
    for (int64_t k = 0; k < s.size(); ++k) cands.back().emplace_back(s.weight[s.weight_index(k)], s.act[s.act_index(k)]);
  }
  so.calib_batches = calib.batches;
  so.batch_size = c.batch_size;
  so.seed = c.seed;
  so.device = device;
  so.accuracy = !no_accuracy;
  double fp = 0;
  // Calibration from the search-train part so that a val measurement stays held out.
  const bool val = split == "val";
  auto rows = ptq::analyze_sensitivity(model, cands, val ? splits.train : splits.full_train,
                                       val ? splits.val : splits.test, so, &fp);
  log_info("analyze: accuracy drops measured on the " + split + " split (" +
           std::to_string((val ? splits.val : splits.test).size()) + " images)");
  if (!dist::is_main()) return 0;  // every rank holds the same rows; rank 0 prints / writes them
  if (out.path.empty()) {  // a pipe: `autoqnn analyze ... > s.csv` is the table `search --sensitivity` reads
    std::cerr << ptq::sensitivity_table(rows, fp);
    std::cout << ptq::sensitivity_csv(rows) << std::flush;
    return 0;
  }
  atomic_write_text(out.path, ptq::sensitivity_csv(rows));
  std::cout << ptq::sensitivity_table(rows, fp) << "wrote " << out.path << " (" << rows.size() << " rows)" << std::endl;
  return 0;
}

}  // namespace

AUTOQNN_VERB("analyze", "per-layer quantization sensitivity table (error and accuracy drop per candidate)", run_analyze);

}  // namespace autoqnn::cli
