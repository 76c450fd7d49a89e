#include "search/qss_qpl.h"

#include <stdexcept>

#include "autoqnn/option_fields.h"
#include "autoqnn/runtime.h"

namespace autoqnn::search {

using nlohmann::json;

namespace {
// The QPL keys a qss+qpl run takes from its QSS stage, not from its options.
constexpr const char* kStageKeys[] = {"weight", "layers", "act", "source"};

const OptionFields<QssQplOptions>& qss_qpl_fields() {
  using F = OptionFields<QssQplOptions>;
  static const F f = F("qss+qpl")
      .field("qss", [](const QssQplOptions& o) { return o.qss.to_json(); },
             [](QssQplOptions& o, const json& v) { o.qss = QssOptions::from_json(v); })
      .field("qpl",
             [](const QssQplOptions& o) {
               json q = o.qpl.to_json();
               for (const char* k : kStageKeys) q.erase(k);
               return q;
             },
             [](QssQplOptions& o, const json& v) {
               for (const char* k : {"layers", "weight"})
                 if (v.is_object() && v.contains(k))
                   throw std::invalid_argument(
                       "qss+qpl: the schemes come from the QSS stage; do not give qpl 'layers' / 'weight'");
               o.qpl = QplOptions::from_json(v);
             });
  return f;
}
}  // namespace

QssQplOptions QssQplOptions::from_json(const json& j) { return qss_qpl_fields().from_json(j); }

json QssQplOptions::to_json() const { return qss_qpl_fields().to_json(*this); }

std::string qss_stage_path(const std::string& path, const std::string& ext) {
  std::string base = path;
  if (base.size() > ext.size() && base.compare(base.size() - ext.size(), ext.size(), ext) == 0)
    base.resize(base.size() - ext.size());
  return base + ".qss" + ext;
}

SearchResult run_qss_qpl(const SearchOptions& opt, const ArchAdamOptions& bit_opt) {
  if (opt.out.empty()) throw std::invalid_argument("--out (the policy JSON to write) is required");
  const QssQplOptions st = options_as<QssQplOptions>(opt.strategy.get(), "qss+qpl");
  const std::string state = opt.state.empty() ? default_state_path(opt.out) : opt.state;

  // ---- stage 1: QSS chooses the schemes
  SearchOptions s1 = opt;
  s1.method = "qss";
  s1.strategy = std::make_shared<QssOptions>(st.qss);
  s1.out = qss_stage_path(opt.out, ".json");
  s1.state = qss_stage_path(state, ".state.pt");
  s1.log = opt.log.empty() ? "" : qss_stage_path(opt.log, ".csv");
  log_info("qss+qpl: stage 1/2, QSS -> " + s1.out);
  SearchResult r1 = run_search(s1);
  if (r1.stopped) return r1;

  // ---- stage 2: QPL learns the bits of those schemes
  SearchOptions s2 = opt;
  s2.method = "qpl";
  s2.arch = bit_opt;
  auto q = std::make_shared<QplOptions>(st.qpl);
  q->bit_lr.reset();  // stage 2 runs with bit_opt
  q->layers = qpl_layers_from_policy(r1.policy);
  q->source = "qss stage: " + s1.out;
  s2.strategy = q;
  {
    std::string base = opt.out;
    if (base.size() > 5 && base.substr(base.size() - 5) == ".json") base.resize(base.size() - 5);
    s2.out = base + ".qpl.json";  // the QPL stage's own policy; opt.out gets the combined provenance
  }
  s2.state = state;
  if (opt.stop_after_epoch > 0) s2.stop_after_epoch = std::max(0, opt.stop_after_epoch - (opt.warmup + opt.epochs));
  log_info("qss+qpl: stage 2/2, QPL on the QSS schemes -> " + opt.out);
  SearchResult r2 = run_search(s2);
  if (r2.stopped) return r2;

  json qss_prov = r1.policy.search;
  qss_prov["policy"] = s1.out;
  qss_prov["layers"] = qpl_layers_from_policy(r1.policy);
  qss_prov["weight_bytes"] = r1.policy.totals.weight_bytes;
  json qpl_prov = r2.policy.search;
  qpl_prov["policy"] = s2.out;
  json prov = r2.policy.search;
  prov["method"] = "qss+qpl";
  prov["stages"] = {{"qss", qss_prov}, {"qpl", qpl_prov}};
  save_searched_policy(opt.out, r2.policy, prov);
  return r2;
}

SearchMethod qss_qpl_method() {
  SearchMethod m;
  m.name = "qss+qpl";
  m.summary = "QSS picks the schemes, then QPL learns their bits";
  m.needs_supernet = true;
  m.flags = qss_flags();
  for (auto& f : qpl_bit_flags()) m.flags.push_back(f);
  m.options_from_flags = [](const FlagValues& f) {
    auto o = std::make_shared<QssQplOptions>();
    o->qss = qss_options_from_flags(f);
    qpl_bits_from_flags(f, o->qpl);
    o->qpl.validate();
    return o;
  };
  m.options_from_json = [](const json& j) { return std::make_shared<QssQplOptions>(QssQplOptions::from_json(j)); };
  m.run = [](const SearchOptions& opt) {
    const QssQplOptions st = options_as<QssQplOptions>(opt.strategy.get(), "qss+qpl");
    ArchAdamOptions bits = opt.arch;
    if (st.qpl.bit_lr) bits.lr = *st.qpl.bit_lr;
    return run_qss_qpl(opt, bits);
  };
  return m;
}

}  // namespace autoqnn::search
