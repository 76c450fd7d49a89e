// The one file that calls c10d (its API moved between LibTorch 1.13 and 2.x: ProcessGroup vs Backend; the
// concrete classes ProcessGroupGloo / ProcessGroupNCCL keep the calls used here in both).
#include "autoqnn/distributed.h"

#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "autoqnn/runtime.h"
#include "quantizers/quantizer.h"

// Gloo: Debian's LibTorch is built with it; its headers come from libgloo-dev.
// AUTOQNN_NO_GLOO / AUTOQNN_NO_NCCL: set by scripts/gpu-check.sh when a probe compile of the backend's
// header fails against the LibTorch at hand (a wheel's headers may not match what is installed beside it).
#if __has_include(<gloo/context.h>) && !defined(AUTOQNN_NO_GLOO)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#define AUTOQNN_HAVE_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
// NCCL: only in CUDA builds of LibTorch that ship nccl.h (not verifiable on the CPU machines).
#if __has_include(<nccl.h>) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>) && \
    defined(AUTOQNN_WITH_CUDA_KERNELS) && !defined(AUTOQNN_NO_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#define AUTOQNN_HAVE_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
// Work and ReduceOp by themselves: a build with neither backend (no Gloo headers, no NCCL) still compiles.
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace autoqnn::dist {

using nlohmann::json;

namespace {

struct Comm {
  virtual ~Comm() = default;
  virtual c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& t,
                                                   c10d::ReduceOp op = c10d::ReduceOp::SUM) = 0;
  virtual c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& t, int root) = 0;
  virtual c10::intrusive_ptr<c10d::Work> barrier() = 0;
};

template <class PG>
struct CommOf : Comm {
  explicit CommOf(c10::intrusive_ptr<PG> p) : pg(std::move(p)) {}
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& t, c10d::ReduceOp op) override {
    c10d::AllreduceOptions o;
    o.reduceOp = op;
    return pg->allreduce(t, o);
  }
  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& t, int root) override {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    return pg->broadcast(t, o);
  }
  c10::intrusive_ptr<c10d::Work> barrier() override { return pg->barrier(); }
  c10::intrusive_ptr<PG> pg;
};

struct Context {
  int rank = 0, world = 1;
  double timeout_s = 120;
  std::string backend, where;  // where: "127.0.0.1:29500"
  c10::intrusive_ptr<c10d::Store> store;
  std::unique_ptr<Comm> comm;
  int64_t settings_calls = 0;
  bool sync_stats = true;  // --dist-bn sync
  torch::Device device{torch::kCPU};  // this rank's device: where NCCL's tensors must live
};

Context& ctx() {
  static Context c;
  return c;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

int parse_int(const std::string& s, const std::string& what) {
  try {
    size_t pos = 0;
    int v = std::stoi(s, &pos);
    if (pos == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument("distributed: " + what + " '" + s + "' is not an integer");
}

std::string secs(double s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

std::string error_text(const std::exception& e) {
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

[[noreturn]] void fail(const std::string& op, const std::exception& e) {
  const auto& c = ctx();
  throw std::runtime_error("distributed: " + op + " failed on rank " + std::to_string(c.rank) + " of " +
                           std::to_string(c.world) + " (" + c.backend + ", master " + c.where +
                           "): another rank exited, failed or did not answer within " + timeout_text() + ": " +
                           error_text(e));
}

void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works, const std::string& op) {
  try {
    for (auto& w : works) w->wait();
  } catch (const std::exception& e) {
    fail(op, e);
  }
}

// The activation quantizers' batch statistics in training (quantizer.h set_batch_stat_reducer).
torch::Tensor reduce_batch_stat(const torch::Tensor& t, quant::StatReduce how);

}  // namespace

std::string timeout_text() {
  std::ostringstream os;
  os << ctx().timeout_s << " s (--dist-timeout)";
  return os.str();
}

DistOptions DistOptions::resolved() const {
  DistOptions o = *this;
  if (o.world_size <= 0) o.world_size = parse_int(env_or("WORLD_SIZE", "1"), "WORLD_SIZE");
  if (o.rank < 0) o.rank = parse_int(env_or("RANK", "0"), "RANK");
  if (o.local_rank < 0) o.local_rank = parse_int(env_or("LOCAL_RANK", std::to_string(o.rank)), "LOCAL_RANK");
  if (o.master_addr.empty()) o.master_addr = env_or("MASTER_ADDR", "127.0.0.1");
  if (o.master_port <= 0) o.master_port = parse_int(env_or("MASTER_PORT", "29500"), "MASTER_PORT");
  if (o.world_size < 1)
    throw std::invalid_argument("distributed: world size (--world-size / WORLD_SIZE) must be >= 1, got " +
                                std::to_string(o.world_size));
  if (o.rank < 0 || o.rank >= o.world_size)
    throw std::invalid_argument("distributed: rank (--rank / RANK) " + std::to_string(o.rank) +
                                " is not in [0, " + std::to_string(o.world_size) + ")");
  if (o.master_port < 1 || o.master_port > 65535)
    throw std::invalid_argument("distributed: master port (--master-port / MASTER_PORT) " +
                                std::to_string(o.master_port) + " is not in [1, 65535]");
  if (!(o.timeout_s > 0)) throw std::invalid_argument("distributed: --dist-timeout must be > 0 seconds");
  if (o.backend != "auto" && o.backend != "gloo" && o.backend != "nccl")
    throw std::invalid_argument("distributed: backend '" + o.backend + "' is not one of auto, gloo, nccl");
  if (o.batch_stats != "sync" && o.batch_stats != "local")
    throw std::invalid_argument("distributed: --dist-bn '" + o.batch_stats + "' is not one of sync, local");
  return o;
}

void init(const DistOptions& in, torch::Device device) {
  DistOptions o = in.resolved();
  shutdown();
  auto& c = ctx();
  c.timeout_s = o.timeout_s;
  c.device = device.is_cuda() && !device.has_index() ? torch::Device(torch::kCUDA, 0) : device;
  // Single process: no store, no group, no overhead -- unless a backend was named (--dist-backend gloo|nccl):
  // then the group is made anyway, so one process checks that the backend works (NCCL on a one-GPU machine,
  // where two ranks on one device are refused by NCCL).
  if (o.world_size == 1 && o.backend == "auto") return;

  std::string backend = o.backend;
  if (backend == "auto") backend = device.is_cuda() ? "nccl" : "gloo";
  c.rank = o.rank;
  c.world = o.world_size;
  c.backend = backend;
  c.where = o.master_addr + ":" + std::to_string(o.master_port);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  if (!built_with(backend)) {  // before the store: a missing backend is no connection problem
    c = Context{};
    throw std::invalid_argument("--dist-backend " + backend + ": this build has no " +
                                (backend == "nccl" ? std::string("NCCL (a CUDA LibTorch with NCCL is needed; use --dist-backend gloo)")
                                                   : std::string("Gloo (install libgloo-dev and rebuild)")));
  }
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.master_port);
    so.isServer = o.rank == 0;
    so.numWorkers = o.world_size;
    so.waitWorkers = true;
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
    c.store = c10::make_intrusive<c10d::PrefixStore>("autoqnn", tcp);
  } catch (const std::exception& e) {
    const std::string msg = error_text(e);
    c = Context{};
    throw std::runtime_error("distributed: rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) +
                             " could not meet the others at the store " + o.master_addr + ":" +
                             std::to_string(o.master_port) + " within " + secs(o.timeout_s) +
                             " s (--dist-timeout; is every rank started, and the port free?): " + msg);
  }
  try {
    if (backend == "gloo") {
#ifdef AUTOQNN_HAVE_GLOO
      auto go = c10d::ProcessGroupGloo::Options::create(timeout);
      // The Gloo device binds to the address the others reach this rank by: loopback on one machine,
      // else this host's name (or $GLOO_SOCKET_IFNAME's interface).
      const std::string ifname = env_or("GLOO_SOCKET_IFNAME", "");
      if (!ifname.empty())
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (o.master_addr == "127.0.0.1" || o.master_addr == "localhost")
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      go->threads = 2;
      c.comm = std::make_unique<CommOf<c10d::ProcessGroupGloo>>(
          c10::make_intrusive<c10d::ProcessGroupGloo>(c.store, o.rank, o.world_size, go));
#else
      throw std::runtime_error("this build has no Gloo (install libgloo-dev and rebuild)");
#endif
    } else {
#ifdef AUTOQNN_HAVE_NCCL
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = timeout;
      c.comm = std::make_unique<CommOf<c10d::ProcessGroupNCCL>>(
          c10::make_intrusive<c10d::ProcessGroupNCCL>(c.store, o.rank, o.world_size, no));
#else
      throw std::runtime_error("this build has no NCCL (a CUDA LibTorch with NCCL is needed; use --dist-backend gloo)");
#endif
    }
  } catch (const std::exception& e) {
    const std::string msg = error_text(e);
    c = Context{};
    throw std::runtime_error("distributed: rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) +
                             " could not meet the others in the " + backend + " process group (master " +
                             o.master_addr + ":" + std::to_string(o.master_port) + ") within " +
                             secs(o.timeout_s) + " s (--dist-timeout; is every rank started?): " + msg);
  }
  c.sync_stats = o.batch_stats == "sync";
  quant::set_batch_stat_reducer(reduce_batch_stat);  // activation ranges: always global (calibration too)
  log_info("distributed: rank " + std::to_string(c.rank) + " of " + std::to_string(c.world) + " (" + backend +
           ", master " + c.where + ", timeout " + secs(o.timeout_s) + " s, BatchNorm " + o.batch_stats + ")");
}

void shutdown() {
  quant::set_batch_stat_reducer(nullptr);
  auto& c = ctx();
  c.comm.reset();
  c.store.reset();
  c = Context{};
}

bool active() { return ctx().comm != nullptr; }
int rank() { return ctx().rank; }
int world_size() { return ctx().world; }
bool is_main() { return ctx().rank == 0; }
std::string backend_name() { return active() ? ctx().backend : std::string(); }
double timeout_seconds() { return ctx().timeout_s; }

bool built_with(const std::string& backend) {
#ifdef AUTOQNN_HAVE_GLOO
  if (backend == "gloo") return true;
#endif
#ifdef AUTOQNN_HAVE_NCCL
  if (backend == "nccl") return true;
#endif
  return false;
}

namespace {
// NCCL reduces CUDA tensors only ("Tensors must be CUDA and dense", seen on the H200): the CPU tensors the
// collectives also carry (statistics, counters, hashes, settings) travel through the rank's GPU and are
// copied back after the wait. Gloo takes both.
struct Staging {
  std::vector<std::pair<torch::Tensor, at::Tensor>> back;  // (caller's tensor, the one sent)
  at::Tensor send(const torch::Tensor& t) {
    if (ctx().backend != "nccl" || t.is_cuda() || !ctx().device.is_cuda()) return t;
    at::Tensor s = t.to(ctx().device).contiguous();
    back.emplace_back(t, s);
    return s;
  }
  void finish() {
    for (auto& [orig, s] : back) orig.copy_(s.to(orig.device()));
  }
};
}  // namespace

void all_reduce(std::vector<torch::Tensor>& tensors, Reduce op) {
  if (!active()) return;
  const c10d::ReduceOp rop = op == Reduce::Max ? c10d::ReduceOp::MAX
                             : op == Reduce::Min ? c10d::ReduceOp::MIN
                                                 : c10d::ReduceOp::SUM;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  Staging staging;
  try {
    for (auto& t : tensors) {
      if (!t.is_contiguous()) throw std::invalid_argument("all_reduce needs contiguous tensors");
      std::vector<at::Tensor> one{staging.send(t)};
      works.push_back(ctx().comm->allreduce(one, rop));
    }
  } catch (const std::exception& e) {
    fail("all-reduce", e);
  }
  wait_all(works, "all-reduce");
  staging.finish();
}

void all_reduce_sum(std::vector<torch::Tensor>& tensors) { all_reduce(tensors, Reduce::Sum); }

namespace {
torch::Tensor reduce_batch_stat(const torch::Tensor& t, quant::StatReduce how) {
  std::vector<torch::Tensor> v{t.to(torch::kFloat32).contiguous().clone()};
  if (how == quant::StatReduce::Max) all_reduce(v, Reduce::Max);
  else if (how == quant::StatReduce::Min) all_reduce(v, Reduce::Min);
  else {
    all_reduce(v, Reduce::Sum);
    v[0].div_(world_size());
  }
  return v[0].to(t.dtype());
}
}  // namespace

void all_reduce_sum(torch::Tensor& t) {
  std::vector<torch::Tensor> v{t};
  all_reduce_sum(v);
}

void broadcast(std::vector<torch::Tensor>& tensors, int root) {
  if (!active()) return;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  Staging staging;
  try {
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{staging.send(t)};
      works.push_back(ctx().comm->broadcast(one, root));
    }
  } catch (const std::exception& e) {
    fail("broadcast", e);
  }
  wait_all(works, "broadcast");
  staging.finish();
}

void barrier() {
  if (!active()) return;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    works.push_back(ctx().comm->barrier());
  } catch (const std::exception& e) {
    fail("barrier", e);
  }
  wait_all(works, "barrier");
}

namespace {
struct AllReduceSumFunction : public torch::autograd::Function<AllReduceSumFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& x) {
    auto y = x.contiguous().clone();
    all_reduce_sum(y);
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list g) {
    auto gi = g[0].contiguous().clone();
    all_reduce_sum(gi);
    return {gi};
  }
};
}  // namespace

torch::Tensor all_reduce_sum_autograd(const torch::Tensor& x) {
  if (!active()) return x;
  return AllReduceSumFunction::apply(x);
}

namespace {
void broadcast_tensors_of(const std::vector<torch::Tensor>& ts) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> flat;
  for (const auto& t : ts)
    if (t.defined()) flat.push_back(t.detach());
  for (auto& t : flat)
    if (!t.is_contiguous()) throw std::logic_error("broadcast_module: a non-contiguous parameter or buffer");
  broadcast(flat, 0);
}
}  // namespace

void broadcast_module(torch::nn::Module& m) {
  if (!active()) return;
  broadcast_tensors_of(m.parameters(true));
  broadcast_tensors_of(m.buffers(true));
}

void broadcast_buffers(torch::nn::Module& m) {
  if (!active()) return;
  broadcast_tensors_of(m.buffers(true));
}

bool sync_batch_stats() { return active() && ctx().sync_stats; }

void average_buffers(torch::nn::Module& m) {
  if (!active() || ctx().sync_stats) return;
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> floats;
  for (auto& b : m.buffers(true))
    if (b.is_floating_point()) floats.push_back(b);
  if (floats.empty()) return;
  all_reduce_sum(floats);
  for (auto& b : floats) b.div_(static_cast<double>(world_size()));
}

void check_same_settings(const std::string& what, const json& settings) {
  if (!active()) return;
  auto& c = ctx();
  const std::string prefix = "settings/" + std::to_string(c.settings_calls++) + "/" + what + "/";
  const std::string mine = settings.dump();
  std::vector<json> all(static_cast<size_t>(c.world));
  try {
    c.store->set(prefix + std::to_string(c.rank), std::vector<uint8_t>(mine.begin(), mine.end()));
    for (int r = 0; r < c.world; ++r) {
      auto v = c.store->get(prefix + std::to_string(r));
      all[static_cast<size_t>(r)] = json::parse(std::string(v.begin(), v.end()));
    }
  } catch (const std::exception& e) {
    fail("exchanging the " + what + " settings", e);
  }
  for (int r = 1; r < c.world; ++r) {
    const json& a = all[0];
    const json& b = all[static_cast<size_t>(r)];
    if (a == b) continue;
    std::string diff;
    for (auto it = a.begin(); it != a.end(); ++it)
      if (!b.contains(it.key()) || b[it.key()] != it.value()) {
        std::string bv = b.contains(it.key()) ? b[it.key()].dump() : "(absent)";
        std::string av = it.value().dump();
        if (av.size() > 120) av = av.substr(0, 117) + "...";
        if (bv.size() > 120) bv = bv.substr(0, 117) + "...";
        diff += (diff.empty() ? "" : "; ") + it.key() + ": rank 0 has " + av + ", rank " + std::to_string(r) + " has " + bv;
      }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key())) diff += (diff.empty() ? "" : "; ") + it.key() + ": only rank " + std::to_string(r) + " has it";
    throw std::invalid_argument("distributed: the ranks were started with different " + what + " settings (" + diff +
                                "); start every rank with the same command");
  }
}

void check_same_everywhere(const std::string& what, const std::string& text) {
  if (!active()) return;
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ull;
  // two 32-bit halves: exact in float64
  auto hi = torch::tensor({static_cast<double>(h >> 32), static_cast<double>(h & 0xffffffffull)}, torch::kFloat64);
  auto lo = hi.clone();
  std::vector<torch::Tensor> mx{hi}, mn{lo};
  all_reduce(mx, Reduce::Max);
  all_reduce(mn, Reduce::Min);
  if (!torch::equal(mx[0], mn[0]))
    throw std::runtime_error("distributed: the ranks computed different " + what + " (rank " + std::to_string(rank()) +
                             " of " + std::to_string(world_size()) +
                             "); the replicas diverged (a bug: please report it with the command)");
}

void check_same_buffers(torch::nn::Module& m, const std::string& when) {
  if (!active()) return;
  std::string bytes;
  for (const auto& kv : m.named_buffers(true)) {
    auto t = kv.value().detach().to(torch::kCPU).contiguous();
    bytes += kv.key();
    bytes.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel() * t.element_size()));
  }
  check_same_everywhere("buffers (BatchNorm / activation-quantizer statistics) " + when, bytes);
}

std::pair<int64_t, int64_t> shard_range(int64_t n, int r, int w) {
  const int64_t base = n / w, extra = n % w;
  const int64_t begin = r * base + std::min<int64_t>(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

// ---------------------------------------------------------------- gradient averaging
namespace {
using WorkPtr = c10::intrusive_ptr<c10d::Work>;
std::shared_ptr<void> erase(WorkPtr w) { return std::make_shared<WorkPtr>(std::move(w)); }
WorkPtr& unerase(const std::shared_ptr<void>& p) { return *std::static_pointer_cast<WorkPtr>(p); }
}  // namespace

GradientAverager::GradientAverager(std::vector<torch::Tensor> params, int64_t bucket_bytes, bool overlap)
    : params_(std::move(params)), overlap_(overlap) {
  // Buckets split by dtype / device and at bucket_bytes; in parameter order, or in reverse (the order in
  // which backward produces the gradients) when overlapping.
  std::vector<size_t> order(params_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = overlap_ ? order.size() - 1 - i : i;
  int64_t bytes = 0;
  for (size_t i : order) {
    const auto& p = params_[i];
    const int64_t b = p.numel() * static_cast<int64_t>(p.element_size());
    bool fresh = buckets_.empty() || bytes + b > bucket_bytes;
    if (!fresh) {
      const auto& q = params_[buckets_.back().front()];
      fresh = q.scalar_type() != p.scalar_type() || q.device() != p.device();
    }
    if (fresh) {
      buckets_.emplace_back();
      bytes = 0;
    }
    buckets_.back().push_back(i);
    bytes += b;
  }
  bucket_of_.assign(params_.size(), 0);
  offset_of_.assign(params_.size(), 0);
  slot_of_.assign(params_.size(), 0);
  bucket_numel_.assign(buckets_.size(), 0);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    int64_t off = 0;
    for (size_t k = 0; k < buckets_[b].size(); ++k) {
      const size_t i = buckets_[b][k];
      bucket_of_[i] = b, offset_of_[i] = static_cast<size_t>(off), slot_of_[i] = k;
      off += params_[i].numel();
    }
    bucket_numel_[b] = off;
  }
  if (overlap_ && active()) {
    for (size_t i = 0; i < params_.size(); ++i) {
      if (params_[i].requires_grad())
        hooks_.push_back(params_[i].register_hook([this, i](const torch::Tensor& g) { on_grad(i, g); }));
      else
        hooks_.push_back(~0u);
    }
  }
}

GradientAverager::~GradientAverager() {
  for (size_t i = 0; i < hooks_.size(); ++i)
    if (hooks_[i] != ~0u) params_[i].remove_hook(hooks_[i]);
}

void GradientAverager::arm(double weight) {
  if (!overlap_ || !active()) return;
  torch::NoGradGuard ng;
  weight_ = weight;
  flats_.clear();
  works_.assign(buckets_.size(), nullptr);
  started_.assign(buckets_.size(), false);
  ready_.assign(buckets_.size(), 0);
  started_in_backward_ = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& p0 = params_[buckets_[b].front()];
    // [gradients..., one "has a gradient" flag per parameter]
    flats_.push_back(torch::zeros({bucket_numel_[b] + static_cast<int64_t>(buckets_[b].size())},
                                  p0.options().requires_grad(false)));
  }
  armed_ = true;
}

void GradientAverager::on_grad(size_t i, const torch::Tensor& g) {
  if (!armed_ || !g.defined()) return;
  torch::NoGradGuard ng;
  const size_t b = bucket_of_[i];
  const auto& p = params_[i];
  flats_[b].narrow(0, static_cast<int64_t>(offset_of_[i]), p.numel()).copy_(g.reshape({-1}));
  flats_[b][bucket_numel_[b] + static_cast<int64_t>(slot_of_[i])] = 1;
  if (++ready_[b] == buckets_[b].size()) {
    start(b);
    ++started_in_backward_;
  }
}

void GradientAverager::start(size_t b) {
  flats_[b].narrow(0, 0, bucket_numel_[b]).mul_(weight_);
  try {
    std::vector<at::Tensor> one{flats_[b]};
    works_[b] = erase(ctx().comm->allreduce(one));
  } catch (const std::exception& e) {
    fail("gradient all-reduce", e);
  }
  started_[b] = true;
}

void GradientAverager::finish() {
  // Buckets with a parameter that got no gradient here: started now, in bucket order (the same on every
  // rank); then one wait and the averaged gradients into .grad.
  for (size_t b = 0; b < buckets_.size(); ++b) {
    if (started_[b]) continue;
    for (size_t i : buckets_[b]) {  // a parameter without a hook (no requires_grad when armed) but a gradient
      const auto& g = params_[i].grad();
      if (armed_ && hooks_[i] == ~0u && g.defined()) {
        flats_[b].narrow(0, static_cast<int64_t>(offset_of_[i]), params_[i].numel()).copy_(g.reshape({-1}));
        flats_[b][bucket_numel_[b] + static_cast<int64_t>(slot_of_[i])] = 1;
      }
    }
    start(b);
  }
  std::vector<WorkPtr> works;
  for (auto& w : works_) works.push_back(unerase(w));
  wait_all(works, "gradient all-reduce");
  for (size_t b = 0; b < buckets_.size(); ++b) {
    auto flags = flats_[b].narrow(0, bucket_numel_[b], static_cast<int64_t>(buckets_[b].size())).to(torch::kCPU, torch::kDouble);
    auto fa = flags.accessor<double, 1>();
    for (size_t i : buckets_[b]) {
      auto& p = params_[i];
      if (fa[static_cast<int64_t>(slot_of_[i])] > 0) {
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        p.mutable_grad().copy_(flats_[b].narrow(0, static_cast<int64_t>(offset_of_[i]), p.numel()).view_as(p));
      }
    }
  }
  armed_ = false;
  flats_.clear();
  works_.clear();
}

void GradientAverager::average(double weight) {
  if (!active()) return;
  torch::NoGradGuard ng;
  if (armed_) {  // overlapped: the hooks packed (and started) what backward produced
    finish();
    return;
  }
  // Not overlapped: pack every gradient after backward, start every bucket, wait, unpack.
  weight_ = weight;
  flats_.clear();
  works_.assign(buckets_.size(), nullptr);
  started_.assign(buckets_.size(), false);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& p0 = params_[buckets_[b].front()];
    auto flat = torch::zeros({bucket_numel_[b] + static_cast<int64_t>(buckets_[b].size())},
                             p0.options().requires_grad(false));
    for (size_t i : buckets_[b]) {
      const auto& g = params_[i].grad();
      if (!g.defined()) continue;
      flat.narrow(0, static_cast<int64_t>(offset_of_[i]), params_[i].numel()).copy_(g.reshape({-1}));
      flat[bucket_numel_[b] + static_cast<int64_t>(slot_of_[i])] = 1;
    }
    flats_.push_back(flat);
  }
  finish();
}

}  // namespace autoqnn::dist
