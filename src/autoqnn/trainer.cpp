#include "autoqnn/trainer.h"

#include <cmath>

#include "autoqnn/distributed.h"
#include "autoqnn/runtime.h"
#include "autoqnn/switchable_bn.h"

namespace autoqnn {

EvalResult evaluate(torch::nn::Module& model, const std::function<torch::Tensor(const torch::Tensor&)>& fwd,
                    const TensorDataset& data, int64_t batch_size, torch::Device device) {
  EvalResult r;
  bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard ng;
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t i = 0; i < data.size(); i += batch_size) {
    int64_t j = std::min(data.size(), i + batch_size);
    auto x = data.images.slice(0, i, j).to(device);
    auto y = data.labels.slice(0, i, j).to(device);
    auto logits = fwd(x);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  r.n = data.size();
  if (r.n > 0) {
    r.top1 = static_cast<double>(correct) / r.n;
    r.loss = loss_sum / r.n;
  }
  model.train(was_training);
  return r;
}

EvalResult evaluate(Model& model, const TensorDataset& data, int64_t batch_size, torch::Device device) {
  return evaluate(model, [&](const torch::Tensor& x) { return model.forward(x); }, data, batch_size, device);
}

EvalResult evaluate_sharded(torch::nn::Module& model, const std::function<torch::Tensor(const torch::Tensor&)>& fwd,
                            const TensorDataset& data, int64_t batch_size, torch::Device device) {
  if (!dist::active()) return evaluate(model, fwd, data, batch_size, device);
  auto [lo, hi] = dist::shard_range(data.size(), dist::rank(), dist::world_size());
  EvalResult mine = hi > lo ? evaluate(model, fwd, data.slice(lo, hi), batch_size, device) : EvalResult{};
  auto sums = torch::tensor({mine.loss * static_cast<double>(mine.n), mine.top1 * static_cast<double>(mine.n),
                             static_cast<double>(mine.n)},
                            torch::kFloat64);
  dist::all_reduce_sum(sums);
  auto a = sums.accessor<double, 1>();
  EvalResult r;
  r.n = static_cast<int64_t>(std::llround(a[2]));
  if (r.n > 0) {
    r.loss = a[0] / a[2];
    r.top1 = std::round(a[1]) / a[2];  // a count: exact
  }
  return r;
}

EvalResult evaluate_sharded(Model& model, const TensorDataset& data, int64_t batch_size, torch::Device device) {
  return evaluate_sharded(model, [&](const torch::Tensor& x) { return model.forward(x); }, data, batch_size, device);
}

double schedule_lr(const TrainOptions& opt, int epoch, double frac) {
  double t = epoch + frac;  // epochs elapsed
  if (opt.warmup_epochs > 0 && t < opt.warmup_epochs) return opt.lr * (t + 1e-3) / opt.warmup_epochs;
  if (opt.schedule == "constant") return opt.lr;
  if (opt.schedule == "step") {
    double lr = opt.lr;
    for (int m : opt.milestones)
      if (epoch >= m) lr *= opt.gamma;
    return lr;
  }
  if (opt.schedule == "cosine") {
    double span = std::max(1, opt.epochs - opt.warmup_epochs);
    double p = std::clamp((t - opt.warmup_epochs) / span, 0.0, 1.0);
    return 0.5 * opt.lr * (1 + std::cos(M_PI * p));
  }
  throw std::invalid_argument("unknown lr schedule '" + opt.schedule + "' (valid: cosine, step, constant)");
}

namespace {
bool is_quantizer_param(const std::string& name) {
  return name.find("wq.") != std::string::npos || name.find("aq.") != std::string::npos;
}
}  // namespace

std::vector<EpochStats> train_model(
    Model& model, const TensorDataset& train, const TensorDataset* val, const TrainOptions& opt, int start_epoch,
    const std::function<void(int, const EpochStats&, torch::optim::Optimizer&)>& on_epoch_end,
    const std::function<void(torch::optim::Optimizer&)>& before_first_epoch) {
  schedule_lr(opt, 0, 0);  // validates the schedule name before any work
  if (train.size() == 0) throw std::invalid_argument("training set is empty");
  model.to(opt.device);

  // Weight decay on conv/linear weights only; quantizer parameters (learned clips) get their own lr.
  std::vector<torch::Tensor> decay, no_decay, quant;
  for (auto& p : model.named_parameters(true)) {
    if (!p.value().requires_grad()) continue;
    if (is_quantizer_param(p.key())) quant.push_back(p.value());
    else if (p.value().dim() > 1) decay.push_back(p.value());
    else no_decay.push_back(p.value());
  }
  auto base = torch::optim::SGDOptions(opt.lr).momentum(opt.momentum).nesterov(opt.nesterov && opt.momentum > 0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::vector<double> lr_scale;  // per group
  auto add_group = [&](const std::vector<torch::Tensor>& ps, double wd, double scale) {
    if (ps.empty()) return;
    groups.emplace_back(ps, std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(base).weight_decay(wd)));
    lr_scale.push_back(scale);
  };
  add_group(decay, opt.weight_decay, 1.0);
  add_group(no_decay, 0.0, 1.0);
  add_group(quant, 0.0, opt.quant_lr_scale);
  torch::optim::SGD sgd(groups, base);
  if (before_first_epoch) before_first_epoch(sgd);

  BatchIterator it(train, opt.batch_size, /*shuffle=*/true, opt.seed, opt.augment, /*drop_last=*/false);
  // Data parallel: identical replicas (rank 0's), global-batch BatchNorm, this rank's slice of each batch,
  // gradients averaged over the global batch.
  std::unique_ptr<dist::GradientAverager> averager;
  if (dist::active()) {
    dist::broadcast_module(model);
    set_sync_batchnorm(model, true);
    it.set_shard(dist::rank(), dist::world_size());
    std::vector<torch::Tensor> params;
    for (auto& g : sgd.param_groups())
      for (auto& p : g.params()) params.push_back(p);
    // Overlapped with backward (buckets of 256 KiB started from gradient hooks) unless the step runs its
    // own backward passes (AdaBits: one per bitwidth), where the hooks would fire several times.
    averager = std::make_unique<dist::GradientAverager>(params, 256 << 10, /*overlap=*/!opt.step_loss);
  }
  std::vector<EpochStats> history;
  for (int epoch = start_epoch; epoch < opt.epochs; ++epoch) {
    model.train();
    it.start_epoch(epoch);
    Progress prog(opt.label + " epoch " + std::to_string(epoch + 1) + "/" + std::to_string(opt.epochs),
                  it.num_batches(), opt.batch_size);
    torch::Tensor x, y;
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, step = 0;
    double lr = opt.lr;
    while (it.next(x, y)) {
      lr = schedule_lr(opt, epoch, static_cast<double>(step) / it.num_batches());
      for (size_t g = 0; g < sgd.param_groups().size(); ++g)
        static_cast<torch::optim::SGDOptions&>(sgd.param_groups()[g].options()).lr(lr * lr_scale[g]);
      x = x.to(opt.device);
      y = y.to(opt.device);
      sgd.zero_grad();
      torch::Tensor logits, loss;
      if (opt.step_loss) {
        loss = opt.step_loss(x, y, logits);
      } else {
        logits = model.forward(x);
        loss = torch::nn::functional::cross_entropy(logits, y);
      }
      const double share = static_cast<double>(y.size(0)) / static_cast<double>(it.global_batch_size());
      if (averager && !opt.step_loss) averager->arm(share);
      loss.backward();
      if (averager) averager->average(share);
      sgd.step();
      ++step;
      double l = loss.item<double>();
      if (!std::isfinite(l))
        throw std::runtime_error(opt.label + ": loss became " + std::to_string(l) + " at epoch " +
                                 std::to_string(epoch + 1) + " step " + std::to_string(step) +
                                 " (lower --lr?)");
      loss_sum += l * y.size(0);
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      seen += y.size(0);
      prog.update(step, {{"loss", loss_sum / seen}, {"acc", static_cast<double>(correct) / seen}, {"lr", lr}});
    }
    if (dist::active()) {  // the epoch's figures over every rank's samples; replicas' buffers re-aligned
      auto sums = torch::tensor({loss_sum, static_cast<double>(correct), static_cast<double>(seen)}, torch::kFloat64);
      dist::all_reduce_sum(sums);
      loss_sum = sums[0].item<double>();
      correct = std::llround(sums[1].item<double>());
      seen = std::llround(sums[2].item<double>());
      dist::average_buffers(model);  // --dist-bn local: the ranks' running statistics differ until here
      dist::check_same_buffers(model, "at the end of epoch " + std::to_string(epoch + 1));
      dist::broadcast_buffers(model);
    }
    EpochStats st{};
    st.epoch = epoch + 1;
    st.train_loss = loss_sum / std::max<int64_t>(1, seen);
    st.train_top1 = static_cast<double>(correct) / std::max<int64_t>(1, seen);
    st.lr = lr;
    st.seconds = prog.elapsed_seconds();
    st.images_per_s = seen / std::max(1e-9, st.seconds);
    std::vector<std::pair<std::string, double>> fin = {{"loss", st.train_loss}, {"acc", st.train_top1}};
    if (val && val->size() > 0) {
      st.val = evaluate_sharded(model, *val, std::max<int64_t>(opt.batch_size, 256), opt.device);
      fin.push_back({"val_loss", st.val.loss});
      fin.push_back({"val_acc", st.val.top1});
    }
    fin.push_back({"img/s", st.images_per_s});
    prog.finish(fin);
    history.push_back(st);
    if (on_epoch_end) on_epoch_end(epoch + 1, st, sgd);
  }
  return history;
}

}  // namespace autoqnn
