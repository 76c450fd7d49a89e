// A user's own model built from AutoQNN's quantizable layers: define it, train it a few steps on the
// synthetic dataset with a plain SGD loop, list its quantizable layers, and put a quantizer in a slot.
//
//   ./build/examples/custom_model
#include <iostream>

#include "autoqnn/data.h"
#include "autoqnn/quant_layers.h"
#include "quantizers/registry.h"

using namespace autoqnn;

// Any torch::nn::Module works: use QuantConv2d / QuantLinear where torch::nn::Conv2d / Linear would go.
struct TinyNet : torch::nn::Module {
  TinyNet() {
    conv1 = register_module("conv1", QuantConv2d(QuantConv2dOptions(1, 8, 3).padding(1)));
    conv2 = register_module("conv2", QuantConv2d(QuantConv2dOptions(8, 16, 3).padding(1)));
    fc = register_module("fc", QuantLinear(QuantLinearOptions(16 * 7 * 7, 10)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);  // 28 -> 14
    h = torch::max_pool2d(torch::relu(conv2->forward(h)), 2);       // 14 -> 7
    return fc->forward(h.flatten(1));
  }
  QuantConv2d conv1{nullptr}, conv2{nullptr};
  QuantLinear fc{nullptr};
};

double accuracy(TinyNet& net, const TensorDataset& ds) {
  torch::NoGradGuard ng;
  return net.forward(ds.images).argmax(1).eq(ds.labels).to(torch::kFloat64).mean().item<double>();
}

int main() {
  torch::manual_seed(0);
  DataOptions data;
  data.dataset = "synthetic";  // learnable class templates + noise, 1x28x28, 10 classes
  auto splits = load_splits(data);

  TinyNet net;
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  BatchIterator batches(splits.train, 64, /*shuffle=*/true, /*seed=*/1);
  torch::Tensor x, y;
  for (int step = 0; step < 100; ++step) {
    if (!batches.next(x, y)) {  // end of epoch: reshuffle and go on
      batches.start_epoch(batches.epoch() + 1);
      batches.next(x, y);
    }
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net.forward(x), y);
    loss.backward();
    opt.step();
    if (step % 25 == 0) std::cout << "step " << step << "  loss " << loss.item<double>() << "\n";
  }
  std::cout << "float test accuracy: " << accuracy(net, splits.test) << "\n\n";

  std::cout << "quantizable layers:\n";
  for (const auto& l : quant_layers(net)) {
    std::cout << "  " << l.name << "  " << l.layer->kind() << "  [";
    for (auto d : l.layer->weight_shape()) std::cout << " " << d;
    std::cout << " ]\n";
  }

  // Quantize conv2's weights to 4-bit fixed point; the layer then uses the fake-quantized weight.
  try {
    net.conv2->set_weight_quantizer(quant::make_quantizer("fixed:4", quant::Role::Weight));
    std::cout << "\nconv2 weight quantizer: " << net.conv2->weight_quantizer()->describe() << "\n";
    std::cout << "test accuracy with conv2 at fixed:4: " << accuracy(net, splits.test) << "\n";
  } catch (const std::exception& e) {
    std::cout << "\ncould not set fixed:4 (" << e.what() << ")\n";
  }
  return 0;
}
