#include "autoqnn/model_io.h"

#include "autoqnn/adabits.h"
#include "autoqnn/runtime.h"
#include "autoqnn/torchscript_model.h"

namespace autoqnn {

LoadedModel load_model(const std::string& checkpoint, const std::string& model_name, const ModelConfig& cfg,
                       const std::string& policy_path, int bits) {
  LoadedModel out;
  out.meta = read_checkpoint_meta(checkpoint);
  if (out.meta.config.in_channels == 0) out.meta.config = cfg;  // a TorchScript file: the data's input
  const auto& m = out.meta;
  // An imported model is named by its file path, which may be spelt differently from run to run; it may also
  // start from a zoo model's checkpoint with the same layer names and shapes (the weights' load checks them).
  const bool imported = is_imported_model_name(model_name);
  if (!model_name.empty() && !imported && m.model != model_name)
    throw std::runtime_error("checkpoint '" + checkpoint + "' holds model '" + m.model + "', not '" + model_name +
                             "' (pass --model " + m.model + ")");
  if (m.config.in_channels != cfg.in_channels || m.config.image_size != cfg.image_size ||
      m.config.num_classes != cfg.num_classes)
    throw std::runtime_error("checkpoint '" + checkpoint + "' was trained on " + std::to_string(m.config.in_channels) +
                             "x" + std::to_string(m.config.image_size) + " inputs (" +
                             (m.dataset.empty() ? "?" : m.dataset) + "), the dataset gives " +
                             std::to_string(cfg.in_channels) + "x" + std::to_string(cfg.image_size) +
                             " (pass the matching --dataset)");
  const std::string script = read_checkpoint_torchscript(checkpoint);
  if (!script.empty())  // an imported model's checkpoint carries its module: no need for the original file
    out.model = TorchScriptModel::from_bytes(script, m.model, m.config);
  else
    out.model = make_model(imported ? model_name : m.model, m.config);

  if (is_adabits(m)) {
    auto plan = adabits_plan_of(m, checkpoint);
    install_adabits(*out.model, plan);
    load_checkpoint_weights(checkpoint, *out.model);
    out.switch_bits = plan.bits;
    if (!policy_path.empty()) {
      if (bits != 0) throw std::runtime_error("give either a bitwidth or a policy for AdaBits checkpoint '" + checkpoint + "', not both");
      out.policy = load_policy(policy_path);
      select_policy(*out.model, plan, out.policy);
    } else if (bits != 0) {
      if (!plan.has_bits(bits))
        throw std::runtime_error("AdaBits checkpoint '" + checkpoint + "' has no " + std::to_string(bits) +
                                 "-bit mode (bits " + plan.bits_string() + ")");
      out.policy = adabits_policy(*out.model, plan, bits);
      select_bits(*out.model, bits);
      out.active_bits = bits;
    } else {
      throw std::runtime_error("checkpoint '" + checkpoint + "' is an AdaBits model (bits " + plan.bits_string() +
                               "): pass --bits B or a policy that uses its specs");
    }
    out.has_policy = true;
    return out;
  }
  if (bits != 0)
    throw std::runtime_error("--bits " + std::to_string(bits) + ": checkpoint '" + checkpoint +
                             "' is not an AdaBits model (kind '" + m.kind + "')");

  const bool ckpt_has_policy = !m.policy.is_null();
  if (!policy_path.empty()) {
    out.policy = load_policy(policy_path);
    out.has_policy = true;
  } else if (ckpt_has_policy) {
    out.policy = Policy::from_json(m.policy, checkpoint + " (recorded policy)");
    out.has_policy = true;
  }
  if (out.has_policy) check_policy(out.policy, *out.model);

  if (ckpt_has_policy) {
    // Quantized checkpoint: its module tree includes the quantizers of the recorded policy.
    Policy recorded = Policy::from_json(m.policy, checkpoint + " (recorded policy)");
    apply_policy(*out.model, recorded);
    load_checkpoint_weights(checkpoint, *out.model);
    auto same_specs = [](const Policy& a, const Policy& b) {
      if (a.layers.size() != b.layers.size()) return false;
      for (size_t i = 0; i < a.layers.size(); ++i)
        if (!same_quantizers(a.layers[i], b.layers[i])) return false;
      return true;
    };
    if (!policy_path.empty() && !same_specs(recorded, out.policy)) {
      log_warn("policy '" + policy_path + "' differs from the one recorded in '" + checkpoint +
               "': installing the given policy (learned quantizer parameters are re-initialised)");
      apply_policy(*out.model, out.policy);
    }
  } else {
    load_checkpoint_weights(checkpoint, *out.model);
    if (out.has_policy) apply_policy(*out.model, out.policy);
  }
  return out;
}

}  // namespace autoqnn
