#include "autoqnn/act_stats.h"

#include <cmath>
#include <limits>

#include "autoqnn/distributed.h"

namespace autoqnn::ptq {

double ChannelStats::std() const { return std::sqrt(std::max(mean_sq - mean * mean, 0.0)); }

namespace {

struct Acc {
  torch::Tensor sum, sum_abs, sum_sq, sum_dev, mn, mx;  // float64 [C]
  int64_t per_channel = 0;                              // elements per channel seen
  double all_dev = 0;                                   // sum |x - global mean|
  torch::Tensor input;                                  // kept rows of the first input
};

// Stands in an act slot: records the input, then runs the original quantizer (if any).
class Recorder : public quant::FakeQuantizer {
 public:
  Recorder(FakeQuantPtr inner, Acc* acc) : inner_(std::move(inner)), acc_(acc) {}
  int pass = 1;
  int64_t keep = 0;
  torch::Tensor ch_mean;   // pass 2: per-channel means [C]
  double all_mean = 0;     // pass 2: global mean
  torch::Tensor forward(const torch::Tensor& x) override {
    TORCH_CHECK(x.dim() >= 2, "act stats: layer input of dim ", x.dim());
    auto rows = x.detach().transpose(0, 1).reshape({x.size(1), -1}).to(torch::kCPU, torch::kFloat64);
    if (!torch::isfinite(rows).all().item<bool>()) throw std::domain_error("a layer input holds NaN/inf");
    if (pass == 1) {
      if (keep > 0 && !acc_->input.defined()) acc_->input = x.detach().slice(0, 0, std::min(keep, x.size(0))).clone();
      auto s = rows.sum(1), sa = rows.abs().sum(1), sq = (rows * rows).sum(1);
      auto mn = std::get<0>(rows.min(1)), mx = std::get<0>(rows.max(1));
      if (!acc_->sum.defined()) {
        acc_->sum = s, acc_->sum_abs = sa, acc_->sum_sq = sq, acc_->mn = mn, acc_->mx = mx;
      } else {
        acc_->sum += s, acc_->sum_abs += sa, acc_->sum_sq += sq;
        acc_->mn = torch::min(acc_->mn, mn), acc_->mx = torch::max(acc_->mx, mx);
      }
      acc_->per_channel += rows.size(1);
    } else {
      auto d = (rows - ch_mean.unsqueeze(1)).abs().sum(1);
      acc_->sum_dev = acc_->sum_dev.defined() ? acc_->sum_dev + d : d;
      acc_->all_dev += (rows - all_mean).abs().sum().item<double>();
    }
    return inner_ ? inner_->forward(x) : x;
  }
  std::string describe() const override { return "act-stats recorder"; }

 private:
  FakeQuantPtr inner_;
  Acc* acc_;
};

// Pass 1 over the ranks' shards: sums and counts summed, minima / maxima reduced; the kept rows are rank
// 0's, the first rows of the global batch (as many as rank 0's slice holds, at most `keep`).
void reduce_pass1(std::vector<Acc>& accs, int64_t keep, int64_t batch_size) {
  std::vector<torch::Tensor> sums, mins, maxs, kept;
  for (auto& a : accs) {
    TORCH_CHECK(a.sum.defined(), "act stats: a layer saw no input on rank ", dist::rank());
    sums.insert(sums.end(), {a.sum, a.sum_abs, a.sum_sq, torch::tensor({static_cast<double>(a.per_channel)},
                                                                       torch::kFloat64)});
    mins.push_back(a.mn);
    maxs.push_back(a.mx);
  }
  dist::all_reduce(sums, dist::Reduce::Sum);
  dist::all_reduce(mins, dist::Reduce::Min);
  dist::all_reduce(maxs, dist::Reduce::Max);
  for (size_t i = 0; i < accs.size(); ++i)
    accs[i].per_channel = static_cast<int64_t>(std::llround(sums[4 * i + 3].item<double>()));
  if (keep > 0) {
    auto [lo, hi] = dist::shard_range(batch_size, 0, dist::world_size());
    const int64_t rows = std::min(keep, hi - lo);
    for (auto& a : accs) {
      auto shape = a.input.sizes().vec();
      shape[0] = rows;
      a.input = dist::is_main() ? a.input.slice(0, 0, rows).contiguous() : torch::empty(shape, a.input.options());
      kept.push_back(a.input);
    }
    dist::broadcast(kept, 0);
  }
}

}  // namespace

std::map<std::string, LayerActStats> collect_act_stats(Model& model, const TensorDataset& data,
                                                       const StatsOptions& opt) {
  if (opt.batches < 1) throw std::invalid_argument("activation statistics need at least 1 calibration batch");
  if (data.size() == 0) throw std::invalid_argument("activation statistics: the calibration data set is empty");
  auto layers = quant_layers(model);
  std::vector<Acc> accs(layers.size());
  std::vector<std::shared_ptr<Recorder>> rec;
  std::vector<FakeQuantPtr> orig;
  const bool was_training = model.is_training();
  struct Restore {
    std::vector<NamedQuantLayer>& layers;
    std::vector<FakeQuantPtr>& orig;
    Model& model;
    bool was;
    ~Restore() {
      for (size_t i = 0; i < orig.size(); ++i) layers[i].layer->set_act_quantizer(orig[i]);
      model.train(was);
    }
  } restore{layers, orig, model, was_training};
  for (size_t i = 0; i < layers.size(); ++i) {
    orig.push_back(layers[i].layer->act_quantizer());
    rec.push_back(std::make_shared<Recorder>(orig.back(), &accs[i]));
    rec.back()->keep = opt.keep_inputs;
    layers[i].layer->set_act_quantizer(rec.back());
  }
  model.eval();
  torch::NoGradGuard ng;
  // Data-parallel runs: each rank takes its slice of every (global) batch; the sums, counts, minima and
  // maxima are reduced over the ranks below, so every rank ends with the one-process statistics.
  auto run_pass = [&] {
    BatchIterator it(data, opt.batch_size, /*shuffle=*/true, opt.seed);
    if (dist::active()) it.set_shard(dist::rank(), dist::world_size());
    it.start_epoch(0);
    torch::Tensor x, y;
    int64_t b = 0;
    while (b < opt.batches && it.next(x, y)) {
      model.forward(x.to(opt.device));
      ++b;
    }
  };
  run_pass();
  if (dist::active()) reduce_pass1(accs, opt.keep_inputs, std::min<int64_t>(opt.batch_size, data.size()));
  std::map<std::string, LayerActStats> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    Acc& a = accs[i];
    if (!a.sum.defined()) throw std::runtime_error("layer '" + layers[i].name + "' saw no input during calibration");
    const double n = static_cast<double>(a.per_channel);
    rec[i]->pass = 2;
    rec[i]->ch_mean = a.sum / n;
    rec[i]->all_mean = a.sum.sum().item<double>() / (n * a.sum.size(0));
  }
  run_pass();
  if (dist::active()) {
    std::vector<torch::Tensor> sums;
    for (auto& a : accs) {
      sums.push_back(a.sum_dev);
      sums.push_back(torch::tensor({a.all_dev}, torch::kFloat64));
    }
    dist::all_reduce(sums, dist::Reduce::Sum);
    for (size_t i = 0; i < accs.size(); ++i) accs[i].all_dev = sums[2 * i + 1].item<double>();
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    Acc& a = accs[i];
    const int64_t C = a.sum.size(0);
    const double n = static_cast<double>(a.per_channel);
    LayerActStats st;
    auto s = a.sum.accessor<double, 1>(), sa = a.sum_abs.accessor<double, 1>(), sq = a.sum_sq.accessor<double, 1>(),
         sd = a.sum_dev.accessor<double, 1>(), mn = a.mn.accessor<double, 1>(), mx = a.mx.accessor<double, 1>();
    double S = 0, SA = 0, SQ = 0;
    st.all.min = std::numeric_limits<double>::infinity();
    st.all.max = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < C; ++c) {
      ChannelStats cs;
      cs.n = a.per_channel;
      cs.mean = s[c] / n, cs.mean_abs = sa[c] / n, cs.mean_sq = sq[c] / n, cs.mad = sd[c] / n;
      cs.min = mn[c], cs.max = mx[c];
      st.channels.push_back(cs);
      S += s[c], SA += sa[c], SQ += sq[c];
      st.all.min = std::min(st.all.min, cs.min);
      st.all.max = std::max(st.all.max, cs.max);
    }
    const double N = n * C;
    st.all.n = a.per_channel * C;
    st.input = a.input;
    st.all.mean = S / N, st.all.mean_abs = SA / N, st.all.mean_sq = SQ / N, st.all.mad = a.all_dev / N;
    out[layers[i].name] = std::move(st);
  }
  return out;
}

std::map<std::string, bool> inputs_one_sided(Model& model, const TensorDataset& data, uint64_t seed, int64_t batches) {
  StatsOptions so;
  so.batches = batches;
  so.seed = seed;
  std::map<std::string, bool> out;
  for (const auto& [layer, st] : collect_act_stats(model, data, so)) out[layer] = st.one_sided();
  return out;
}

}  // namespace autoqnn::ptq
