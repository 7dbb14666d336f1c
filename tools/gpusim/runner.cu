// The simulated-GPU job's one program: runs deepconv's CUDA launchers
// (csrc/ops/*.cu, compiled by nvcc 11.8 and linked in beside this file) on
// the calls that tools/gpusim/checks.py writes, one call per line of a plan
// file, and hands the device buffers back as files for checks.py to compare.
//
//   runner PLAN DIR
//
// A plan line is `name op arg...`; an argument is
//   b:J      device buffer J, uploaded from DIR/name.J.bin and written back
//            to DIR/name.J.out after the call (every buffer is in/out)
//   n:       a null pointer          i:INT    an integer     f:REAL  a real
//   s:TEXT   a dtype name            t:I,J,.. an integer tuple
// The ops and their arguments follow deepconv._emu's API (docs/internals.md),
// less the conv workspaces, which the runner sizes with the launchers' own
// conv2d_*_workspace_bytes (so the GPU plan's split-K, not the emulator's).
// Per call the runner prints `ran NAME VARIANT` (conv: the variant the GPU
// launcher chose, e.g. implicit_gemm_3x3+split_k; else -) or
// `error NAME MESSAGE` when the launcher threw or CUDA reported an error.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "ops/conv.h"
#include "ops/dropout.h"
#include "ops/lrn.h"
#include "ops/pool.h"
#include "ops/relu.h"
#include "ops/sgd.h"
#include "ops/softmax.h"
#include "ops/topk.h"

namespace {

void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

struct Arg {
  char kind = 'n';
  std::int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<std::int64_t> t;
  void* ptr = nullptr;  // b: the device buffer
};

struct Call {
  std::string name, op;
  std::vector<Arg> args;
  std::size_t at = 0;
  std::string variant = "-";

  const Arg& next(char kind) {
    if (at >= args.size()) throw std::invalid_argument(op + ": too few arguments");
    const Arg& a = args[at++];
    if (a.kind != kind && !(kind == 'b' && a.kind == 'n')) {
      throw std::invalid_argument(op + ": argument " + std::to_string(at) + " should be " + kind);
    }
    return a;
  }
  template <typename T>
  T* buf() { return static_cast<T*>(next('b').ptr); }
  std::int64_t integer() { return next('i').i; }
  double real() { return next('f').f; }
  std::string text() { return next('s').s; }
  std::vector<std::int64_t> tuple() { return next('t').t; }
};

// Calls fn(T{}) with T the dtype named by `dtype`.
template <typename Fn>
void with_dtype(const std::string& dtype, Fn&& fn) {
  if (dtype == "float32") return fn(float{});
  if (dtype == "float64") return fn(double{});
  throw std::invalid_argument("dtype " + dtype);
}
template <typename Fn>
void with_label(const std::string& dtype, Fn&& fn) {
  if (dtype == "int32") return fn(std::int32_t{});
  if (dtype == "int64") return fn(std::int64_t{});
  throw std::invalid_argument("label dtype " + dtype);
}

dc::ConvParams conv_params(const std::vector<std::int64_t>& v) {
  if (v.size() != 14) throw std::invalid_argument("conv params: 14 integers");
  dc::ConvParams p;
  p.N = int(v[0]); p.C = int(v[1]); p.H = int(v[2]); p.W = int(v[3]); p.K = int(v[4]);
  p.R = int(v[5]); p.S = int(v[6]); p.P = int(v[7]); p.Q = int(v[8]);
  p.pad_h = int(v[9]); p.pad_w = int(v[10]); p.stride_h = int(v[11]); p.stride_w = int(v[12]);
  p.groups = int(v[13]);
  return p;
}

// A device workspace of `bytes` (none when 0), freed at scope exit.
struct Workspace {
  void* ptr = nullptr;
  std::size_t bytes;
  explicit Workspace(std::size_t b) : bytes(b) {
    if (bytes) cuda_check(cudaMalloc(&ptr, bytes), "cudaMalloc workspace");
  }
  ~Workspace() { if (ptr) cudaFree(ptr); }
};

dc::ops::PoolParams pool_params(Call& c) {
  const auto shape = c.tuple(), out = c.tuple(), kernel = c.tuple(), stride = c.tuple(),
             pad = c.tuple();
  dc::ops::PoolParams pp;
  pp.N = shape.at(0); pp.C = shape.at(1); pp.H = shape.at(2); pp.W = shape.at(3);
  pp.P = out.at(0); pp.Q = out.at(1);
  pp.R = int(kernel.at(0)); pp.S = int(kernel.at(1));
  pp.stride_h = int(stride.at(0)); pp.stride_w = int(stride.at(1));
  pp.pad_h = int(pad.at(0)); pp.pad_w = int(pad.at(1));
  return pp;
}

dc::ops::LrnParams lrn_params(Call& c) {
  const auto shape = c.tuple();
  dc::ops::LrnParams lp;
  lp.N = shape.at(0); lp.C = shape.at(1); lp.H = shape.at(2); lp.W = shape.at(3);
  lp.size = int(c.integer());
  lp.alpha = c.real();
  lp.beta = c.real();
  lp.k = c.real();
  return lp;
}

// The simulator's own check (tools/gpusim/patches/0004-64-bit-integer-literals.patch):
// out = (in & 0xFFFFFFFF) * 3449720151 + in, which nvcc writes with the 64-bit
// literals 4294967295 and 3449720151 (the simulator once sign-extended them).
__global__ void literal_64bit_kernel(const unsigned long long* in, unsigned long long* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = (in[i] & 0xFFFFFFFFull) * 3449720151ull + in[i];
}

// One handler per op, reading the arguments in deepconv._emu's order.
const std::map<std::string, std::function<void(Call&)>>& handlers() {
  static const std::map<std::string, std::function<void(Call&)>> table = {
      {"conv2d_fprop", [](Call& c) {
         const dc::ConvParams p = conv_params(c.tuple());
         const Arg &x = c.next('b'), &w = c.next('b'), &b = c.next('b'), &y = c.next('b');
         const bool relu = c.integer() != 0;
         const std::string dtype = c.text();
         const dc::ops::ConvAlgorithm algo = dc::ops::conv_algorithm_from_name(c.text());
         with_dtype(dtype, [&](auto zero) {
           using T = decltype(zero);
           Workspace ws(dc::ops::conv2d_fprop_workspace_bytes<T>(p, algo));
           c.variant = dc::ops::conv2d_fprop_variant<T>(p, algo);
           dc::ops::conv2d_fprop<T>(p, static_cast<const T*>(x.ptr), static_cast<const T*>(w.ptr),
                                    static_cast<const T*>(b.ptr), static_cast<T*>(y.ptr), relu,
                                    ws.ptr, ws.bytes, nullptr, algo);
         });
       }},
      {"conv2d_dgrad", [](Call& c) {
         const dc::ConvParams p = conv_params(c.tuple());
         const Arg &dy = c.next('b'), &w = c.next('b'), &dx = c.next('b');
         const std::string dtype = c.text();
         const dc::ops::ConvAlgorithm algo = dc::ops::conv_algorithm_from_name(c.text());
         with_dtype(dtype, [&](auto zero) {
           using T = decltype(zero);
           Workspace ws(dc::ops::conv2d_dgrad_workspace_bytes<T>(p, algo));
           c.variant = dc::ops::conv2d_dgrad_variant<T>(p, algo);
           dc::ops::conv2d_dgrad<T>(p, static_cast<const T*>(dy.ptr), static_cast<const T*>(w.ptr),
                                    static_cast<T*>(dx.ptr), ws.ptr, ws.bytes, nullptr, algo);
         });
       }},
      {"conv2d_wgrad", [](Call& c) {
         const dc::ConvParams p = conv_params(c.tuple());
         const Arg &x = c.next('b'), &dy = c.next('b'), &dw = c.next('b'), &db = c.next('b');
         const std::string dtype = c.text();
         const dc::ops::ConvAlgorithm algo = dc::ops::conv_algorithm_from_name(c.text());
         with_dtype(dtype, [&](auto zero) {
           using T = decltype(zero);
           Workspace ws(dc::ops::conv2d_wgrad_workspace_bytes<T>(p, algo));
           c.variant = dc::ops::conv2d_wgrad_variant<T>(p, algo);
           dc::ops::conv2d_wgrad<T>(p, static_cast<const T*>(x.ptr), static_cast<const T*>(dy.ptr),
                                    static_cast<T*>(dw.ptr), static_cast<T*>(db.ptr), ws.ptr,
                                    ws.bytes, nullptr, algo);
         });
       }},
      {"max_pool2d_fprop", [](Call& c) {
         const Arg &x = c.next('b'), &y = c.next('b');
         const auto pp = pool_params(c);
         with_dtype(c.text(), [&](auto zero) {
           using T = decltype(zero);
           dc::ops::max_pool2d_fprop<T>(static_cast<const T*>(x.ptr), static_cast<T*>(y.ptr), pp,
                                        nullptr);
         });
       }},
      {"max_pool2d_bprop", [](Call& c) {
         const Arg &x = c.next('b'), &y = c.next('b'), &dy = c.next('b'), &dx = c.next('b');
         const auto pp = pool_params(c);
         with_dtype(c.text(), [&](auto zero) {
           using T = decltype(zero);
           dc::ops::max_pool2d_bprop<T>(static_cast<const T*>(x.ptr), static_cast<const T*>(y.ptr),
                                        static_cast<const T*>(dy.ptr), static_cast<T*>(dx.ptr), pp,
                                        nullptr);
         });
       }},
      {"lrn_fprop", [](Call& c) {
         const Arg &x = c.next('b'), &y = c.next('b');
         const auto lp = lrn_params(c);
         with_dtype(c.text(), [&](auto zero) {
           using T = decltype(zero);
           dc::ops::lrn_fprop<T>(static_cast<const T*>(x.ptr), static_cast<T*>(y.ptr), lp, nullptr);
         });
       }},
      {"lrn_bprop", [](Call& c) {
         const Arg &x = c.next('b'), &y = c.next('b'), &dy = c.next('b'), &dx = c.next('b');
         const auto lp = lrn_params(c);
         with_dtype(c.text(), [&](auto zero) {
           using T = decltype(zero);
           dc::ops::lrn_bprop<T>(static_cast<const T*>(x.ptr), static_cast<const T*>(y.ptr),
                                 static_cast<const T*>(dy.ptr), static_cast<T*>(dx.ptr), lp, nullptr);
         });
       }},
      {"relu_fprop", [](Call& c) {
         const Arg &x = c.next('b'), &y = c.next('b');
         const std::int64_t n = c.integer();
         with_dtype(c.text(), [&](auto zero) {
           using T = decltype(zero);
           dc::ops::relu_fprop<T>(static_cast<const T*>(x.ptr), static_cast<T*>(y.ptr), n, nullptr);
         });
       }},
      {"relu_bprop", [](Call& c) {
         const Arg &y = c.next('b'), &dy = c.next('b'), &dx = c.next('b');
         const std::int64_t n = c.integer();
         with_dtype(c.text(), [&](auto zero) {
           using T = decltype(zero);
           dc::ops::relu_bprop<T>(static_cast<const T*>(y.ptr), static_cast<const T*>(dy.ptr),
                                  static_cast<T*>(dx.ptr), n, nullptr);
         });
       }},
      {"softmax_fprop", [](Call& c) {
         const Arg &logits = c.next('b'), &probs = c.next('b');
         const std::int64_t n = c.integer(), k = c.integer();
         with_dtype(c.text(), [&](auto zero) {
           using T = decltype(zero);
           dc::ops::softmax_fprop<T>(static_cast<const T*>(logits.ptr), static_cast<T*>(probs.ptr), n,
                                     k, nullptr);
         });
       }},
      {"softmax_xent_fprop", [](Call& c) {
         const Arg &logits = c.next('b'), &labels = c.next('b'), &probs = c.next('b'),
                   &losses = c.next('b'), &loss = c.next('b');
         const std::int64_t n = c.integer(), k = c.integer();
         const std::string dtype = c.text(), label_dtype = c.text();
         with_dtype(dtype, [&](auto zero) {
           using T = decltype(zero);
           with_label(label_dtype, [&](auto label) {
             using L = decltype(label);
             dc::ops::softmax_xent_fprop<T, L>(
                 static_cast<const T*>(logits.ptr), static_cast<const L*>(labels.ptr),
                 static_cast<T*>(probs.ptr), static_cast<T*>(losses.ptr), static_cast<T*>(loss.ptr),
                 n, k, nullptr);
           });
         });
       }},
      {"softmax_xent_bprop", [](Call& c) {
         const Arg &probs = c.next('b'), &labels = c.next('b'), &dlogits = c.next('b');
         const std::int64_t n = c.integer(), k = c.integer();
         const double scale = c.real();
         const std::string dtype = c.text(), label_dtype = c.text();
         with_dtype(dtype, [&](auto zero) {
           using T = decltype(zero);
           with_label(label_dtype, [&](auto label) {
             using L = decltype(label);
             dc::ops::softmax_xent_bprop<T, L>(static_cast<const T*>(probs.ptr),
                                               static_cast<const L*>(labels.ptr),
                                               static_cast<T*>(dlogits.ptr), n, k, T(scale), nullptr);
           });
         });
       }},
      {"topk", [](Call& c) {
         const Arg &scores = c.next('b'), &values = c.next('b'), &indices = c.next('b');
         const std::int64_t n = c.integer(), classes = c.integer(), k = c.integer();
         with_dtype(c.text(), [&](auto zero) {
           using T = decltype(zero);
           dc::ops::topk<T>(static_cast<const T*>(scores.ptr), static_cast<T*>(values.ptr),
                            static_cast<std::int64_t*>(indices.ptr), n, classes, int(k), nullptr);
         });
       }},
      {"topk_miss", [](Call& c) {
         const Arg &scores = c.next('b'), &labels = c.next('b'), &miss = c.next('b');
         const std::int64_t n = c.integer(), classes = c.integer(), k = c.integer();
         const std::string dtype = c.text(), label_dtype = c.text();
         with_dtype(dtype, [&](auto zero) {
           using T = decltype(zero);
           with_label(label_dtype, [&](auto label) {
             using L = decltype(label);
             dc::ops::topk_miss<T, L>(static_cast<const T*>(scores.ptr),
                                      static_cast<const L*>(labels.ptr),
                                      static_cast<std::int32_t*>(miss.ptr), n, classes, k, nullptr);
           });
         });
       }},
      {"dropout_apply", [](Call& c) {
         const Arg &x = c.next('b'), &y = c.next('b');
         const std::int64_t n = c.integer(), seed = c.integer(), step = c.integer();
         const double p = c.real();
         const bool masked = c.integer() != 0;
         const double keep_scale = c.real();
         const std::string dtype = c.text();
         const int threads = int(c.integer());
         with_dtype(dtype, [&](auto zero) {
           using T = decltype(zero);
           const dc::ops::DropoutParams<T> params{std::uint64_t(seed), std::uint64_t(step),
                                                  dc::ops::dropout_threshold(p), T(keep_scale),
                                                  masked};
           dc::ops::dropout_apply<T>(static_cast<const T*>(x.ptr), static_cast<T*>(y.ptr), n, params,
                                     threads, nullptr);
         });
       }},
      {"philox4x32_10", [](Call& c) {
         const Arg &counters = c.next('b'), &keys = c.next('b'), &out = c.next('b');
         dc::ops::philox4x32_10(static_cast<const std::uint32_t*>(counters.ptr),
                                static_cast<const std::uint32_t*>(keys.ptr),
                                static_cast<std::uint32_t*>(out.ptr), c.integer(), nullptr);
       }},
      {"literal_64bit", [](Call& c) {
         const Arg &in = c.next('b'), &out = c.next('b');
         const int n = int(c.integer());
         literal_64bit_kernel<<<(n + 127) / 128, 128>>>(
             static_cast<const unsigned long long*>(in.ptr), static_cast<unsigned long long*>(out.ptr), n);
       }},
      // sgd_update COUNT (w v g n lr momentum weight_decay) x COUNT dtype
      {"sgd_update", [](Call& c) {
         const std::int64_t count = c.integer();
         struct Entry { void *w, *v, *g; std::int64_t n; double lr, mu, wd; };
         std::vector<Entry> entries;
         for (std::int64_t i = 0; i < count; ++i) {
           Entry e;
           e.w = c.next('b').ptr; e.v = c.next('b').ptr; e.g = c.next('b').ptr;
           e.n = c.integer(); e.lr = c.real(); e.mu = c.real(); e.wd = c.real();
           entries.push_back(e);
         }
         with_dtype(c.text(), [&](auto zero) {
           using T = decltype(zero);
           std::vector<dc::ops::SgdTensor<T>> tensors;
           for (const Entry& e : entries) {
             tensors.push_back({static_cast<T*>(e.w), static_cast<T*>(e.v),
                                static_cast<const T*>(e.g), e.n, T(e.lr), T(e.mu), T(e.wd)});
           }
           dc::ops::sgd_update<T>(tensors.data(), int(tensors.size()), nullptr);
         });
       }},
  };
  return table;
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::vector<char>& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), std::streamsize(data.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// Parses one plan line, uploads its buffers, runs it, writes the buffers back.
void run_line(const std::string& line, const std::string& dir) {
  std::istringstream in(line);
  Call c;
  in >> c.name >> c.op;
  std::vector<std::pair<int, void*>> buffers;  // (J, device pointer)
  std::vector<std::size_t> sizes;
  std::string tok;
  try {
    while (in >> tok) {
      Arg a;
      a.kind = tok.at(0);
      const std::string v = tok.substr(2);
      switch (a.kind) {
        case 'i': a.i = std::stoll(v); break;
        case 'f': a.f = std::stod(v); break;
        case 's': a.s = v; break;
        case 'n': break;
        case 't': {
          std::istringstream parts(v);
          std::string part;
          while (std::getline(parts, part, ',')) a.t.push_back(std::stoll(part));
          break;
        }
        case 'b': {
          const int j = std::stoi(v);
          const std::vector<char> host = read_file(dir + "/" + c.name + "." + v + ".bin");
          cuda_check(cudaMalloc(&a.ptr, host.empty() ? 1 : host.size()), "cudaMalloc");
          cuda_check(cudaMemcpy(a.ptr, host.data(), host.size(), cudaMemcpyHostToDevice), "upload");
          buffers.emplace_back(j, a.ptr);
          sizes.push_back(host.size());
          break;
        }
        default: throw std::invalid_argument("bad argument " + tok);
      }
      c.args.push_back(a);
    }
    const auto it = handlers().find(c.op);
    if (it == handlers().end()) throw std::invalid_argument("unknown op " + c.op);
    it->second(c);
    if (c.at != c.args.size()) throw std::invalid_argument(c.op + ": too many arguments");
    cuda_check(cudaDeviceSynchronize(), "synchronize");
    cuda_check(cudaGetLastError(), "kernel");
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      std::vector<char> host(sizes[i]);
      cuda_check(cudaMemcpy(host.data(), buffers[i].second, sizes[i], cudaMemcpyDeviceToHost),
                 "download");
      write_file(dir + "/" + c.name + "." + std::to_string(buffers[i].first) + ".out", host);
    }
    std::printf("ran %s %s\n", c.name.c_str(), c.variant.c_str());
  } catch (const std::exception& e) {
    std::printf("error %s %s\n", c.name.c_str(), e.what());
  }
  for (auto& b : buffers) cudaFree(b.second);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s PLAN DIR\n", argv[0]);
    return 2;
  }
  std::ifstream plan(argv[1]);
  if (!plan) {
    std::fprintf(stderr, "cannot read %s\n", argv[1]);
    return 2;
  }
  std::string line;
  while (std::getline(plan, line)) {
    if (!line.empty() && line[0] != '#') run_line(line, argv[2]);
  }
  return 0;
}
