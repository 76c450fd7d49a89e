// The data-parallel option group (cli.h DistributedFlags).
#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <set>
#include <thread>

#include "autoqnn/runtime.h"
#include "cli.h"

namespace autoqnn::cli {

po::options_description_easy_init DistributedFlags::add(po::options_description& desc) {
  return desc.add_options()
    ("rank", po::value(&opt.rank)->default_value(-1), "data parallel: this process's rank (default $RANK, else 0)")
    ("world-size", po::value(&opt.world_size)->default_value(0),
     "data parallel: number of processes (default $WORLD_SIZE, else 1 = no group)")
    ("master-addr", po::value(&opt.master_addr), "data parallel: rank 0's address (default $MASTER_ADDR, else 127.0.0.1)")
    ("master-port", po::value(&opt.master_port)->default_value(0),
     "data parallel: rank 0's store port (default $MASTER_PORT, else 29500)")
    ("dist-timeout", po::value(&opt.timeout_s)->default_value(opt.timeout_s),
     "data parallel: seconds to wait for the other ranks (connect, each collective) before failing")
    ("dist-backend", po::value(&opt.backend)->default_value(opt.backend), "data parallel: auto | gloo | nccl")
    ("dist-bn", po::value(&opt.batch_stats)->default_value(opt.batch_stats),
     "data parallel: BatchNorm statistics in training: sync (over the global batch: equal to one process) | "
     "local (each rank's slice, like PyTorch DDP; running statistics averaged every epoch; faster)");
}

void DistributedFlags::init(const CommonOptions& c, torch::Device device) const {
  dist::DistOptions o;
  try {
    o = opt.resolved();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (o.world_size > 1 && c.threads == 0) {
    // Several ranks on one machine: split the cores between the local ranks instead of oversubscribing.
    const char* lws = std::getenv("LOCAL_WORLD_SIZE");
    int local = lws ? std::max(1, std::atoi(lws)) : o.world_size;
    int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    init_threads(std::max(1, cores / local));
  }
  if (device.is_cuda() && o.world_size > 1 && o.local_rank >= 0 && device.index() < 0)
    log_warn("data parallel on CUDA: pass --device cuda:$LOCAL_RANK so that each local rank has its own GPU");
  dist::init(o, device);
}

namespace {
// An option's value as text (the types the verbs' flags use); "" for a type not listed.
std::string value_text(const boost::any& v) {
  if (const auto* x = boost::any_cast<std::string>(&v)) return *x;
  if (const auto* x = boost::any_cast<int>(&v)) return std::to_string(*x);
  if (const auto* x = boost::any_cast<int64_t>(&v)) return std::to_string(*x);
  if (const auto* x = boost::any_cast<uint64_t>(&v)) return std::to_string(*x);
  if (const auto* x = boost::any_cast<double>(&v)) return nlohmann::json(*x).dump();
  if (const auto* x = boost::any_cast<float>(&v)) return nlohmann::json(*x).dump();
  if (const auto* x = boost::any_cast<bool>(&v)) return *x ? "true" : "false";
  if (const auto* x = boost::any_cast<std::vector<std::string>>(&v)) return nlohmann::json(*x).dump();
  if (const auto* x = boost::any_cast<std::vector<int>>(&v)) return nlohmann::json(*x).dump();
  return "";
}
}  // namespace

void check_same_command(const std::string& verb, const po::variables_map& vm) {
  if (!dist::active()) return;
  static const std::set<std::string> per_rank = {"rank", "world-size", "master-addr", "master-port", "dist-timeout",
                                                 "dist-backend", "device", "threads", "out", "policy-out",
                                                 "checkpoint-out", "log", "help"};
  nlohmann::json settings = nlohmann::json::object();
  for (const auto& [name, v] : vm) {
    if (per_rank.count(name) || v.empty()) continue;
    const std::string t = value_text(v.value());
    if (!t.empty()) settings["--" + name] = t;
  }
  dist::check_same_settings(verb + " command-line", settings);
}

}  // namespace autoqnn::cli
