// autoqnn: dispatches to the verbs registered by the cmd_*.cpp files.
#include <iostream>

#include "cli.h"

using autoqnn::cli::verbs;

static void usage(std::ostream& os) {
  os << "autoqnn " << AUTOQNN_VERSION << " - automatic mixed-precision quantization of neural networks\n\n"
     << "usage: autoqnn <verb> [options]   (autoqnn <verb> --help for the verb's options)\n\nverbs:\n";
  auto v = verbs();
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& verb : v) {
    os << "  " << verb.name << std::string(verb.name.size() < 12 ? 12 - verb.name.size() : 1, ' ')
       << verb.summary << "\n";
  }
}

// A LibTorch error wrapped into another exception's message carries its C++ backtrace: cut it off.
static std::string without_backtrace(std::string msg) {
  auto pos = msg.find("Exception raised from ");
  if (pos != std::string::npos) msg.resize(pos);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    usage(std::cout);
    return 0;
  }
  if (name == "--version") {
    std::cout << "autoqnn " << AUTOQNN_VERSION << "\n";
    return 0;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& v : verbs()) {
    if (v.name != name) continue;
    try {
      return v.run(args);
    } catch (const autoqnn::cli::UsageError& e) {
      std::cerr << "autoqnn " << name << ": error: " << e.what() << "\n";
      return 2;
    } catch (const c10::Error& e) {
      std::cerr << "autoqnn " << name << ": error: " << without_backtrace(e.what_without_backtrace()) << "\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "autoqnn " << name << ": error: " << without_backtrace(e.what()) << "\n";
      return 1;
    } catch (...) {
      std::cerr << "autoqnn " << name << ": error: unknown exception\n";
      return 1;
    }
  }
  std::cerr << "autoqnn: unknown verb '" << name << "'\n\n";
  usage(std::cerr);
  return 2;
}
