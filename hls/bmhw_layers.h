// bmhw_layers.h: hand-written Vitis HLS kernels of the bmhw integer datapath (docs/datapath.md).
//
// Every generated project includes this header unchanged. Each kernel is templated on a per-layer
// config struct (generated into parameters.h) that carries the shapes, the constants and one ap_int
// type per signal of the datapath, sized from the widths proven in the .bmq IR. Activations are flat
// arrays in PyTorch's (C, H, W) order.
#ifndef BMHW_LAYERS_H_
#define BMHW_LAYERS_H_

#include "ap_int.h"

namespace bmhw {

// round_shift(a, n) of docs/datapath.md: n > 0 divides by 2^n rounding halves up, n <= 0 multiplies
// by 2^-n. Right shifts beyond 62 act as 62 (values stay below 2^61), as in the golden model.
inline long long round_shift(long long a, int n) {
    if (n > 0) {
        if (n > 62) n = 62;
        return (a + (1LL << (n - 1))) >> n;
    }
    return a * (1LL << (-n));
}

// The add-max PE and what follows it for one output: T_k = LN[q_k] + W[o, k], M = max_k T_k, then the
// exp table and the shift (steps 1-2), and Y = s (E - C) + B[o] (step 4; a mirrored output, neg, has s = -1).
// ln_x holds LN[q_k] of the patch.
template <class CFG>
typename CFG::y_t bm_neuron(const typename CFG::ln_t ln_x[CFG::K], const typename CFG::w_rom_t w[CFG::K],
                            const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE], typename CFG::c_t c,
                            typename CFG::b_t b, bool neg) {
    typename CFG::m_t m = ln_x[0] + typename CFG::w_t(w[0]);
addmax:
    for (int k = 1; k < CFG::K; k++) {
#pragma HLS PIPELINE II = 1
        typename CFG::t_t t = ln_x[k] + typename CFG::w_t(w[k]);
        if (t > m) m = t;
    }
    long long m64 = m.to_int64();
    typename CFG::i_t i = m64 >> CFG::F;                   // floor_div(M, 2^F)
    typename CFG::r_t r = m64 & ((1LL << CFG::F) - 1);     // M - I * 2^F, in [0, 2^F - 1]
    typename CFG::e_t e = round_shift((long long)exp_lut[r], CFG::P - CFG::G - i.to_int());
    typename CFG::acc_t d = typename CFG::acc_t(e) - typename CFG::acc_t(c);
    if (neg) d = -d;
    typename CFG::acc_t y = d + typename CFG::acc_t(b);
    return typename CFG::y_t(y);
}

// Step 5: requantize a hidden layer's Y to a code (ReLU and saturation), or pass the logits through.
template <class CFG>
typename CFG::out_t bm_output(typename CFG::y_t y) {
    if (!CFG::RELU) return typename CFG::out_t(y);
    long long q = round_shift(y.to_int64(), CFG::OUT_SHIFT);
    if (q < 0) q = 0;
    if (q > CFG::OUT_MAX) q = CFG::OUT_MAX;
    return typename CFG::out_t(q);
}

// The input patch of output position (oh, ow) of a convolution, as the K values x_k the PEs read: the K axis
// ordered channel, kernel row, kernel column; zero padding reads as 0 (code 0, or the bit 0). Every
// convolution kernel (BM, adder, BiSE) gathers its patches here.
template <class CFG, class T>
void gather_patch(const T in[CFG::IN_C * CFG::IN_H * CFG::IN_W], T x[CFG::K], int oh, int ow) {
gather:
    for (int k = 0; k < CFG::K; k++) {
#pragma HLS PIPELINE II = 1
        int ch = k / (CFG::KH * CFG::KW), kh = (k / CFG::KW) % CFG::KH, kw = k % CFG::KW;
        int ih = oh * CFG::SH + kh - CFG::PH, iw = ow * CFG::SW + kw - CFG::PW;
        bool inside = ih >= 0 && ih < CFG::IN_H && iw >= 0 && iw < CFG::IN_W;
        x[k] = inside ? in[(ch * CFG::IN_H + ih) * CFG::IN_W + iw] : T(0);
    }
}

// One patch (already gathered as codes x_k): LN lookups, the input sum S, the correction C (step 3,
// one constant product shared by all outputs) and every output channel o of that patch.
template <class CFG>
void bm_patch(const typename CFG::q_in_t x[CFG::K], const typename CFG::ln_rom_t ln_lut[CFG::LN_SIZE],
              const typename CFG::w_rom_t w[CFG::O][CFG::K], const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE],
              const typename CFG::b_rom_t bias[CFG::O], const bool neg[CFG::O], typename CFG::out_t out[], int position,
              int stride) {
    typename CFG::ln_t ln_x[CFG::K];
    typename CFG::s_t s = 0;
lookup:
    for (int k = 0; k < CFG::K; k++) {
#pragma HLS PIPELINE II = 1
        ln_x[k] = ln_lut[x[k]];  // ROM entries are stored as plain C integers
        s += x[k];
    }
    typename CFG::s_csum_t product = typename CFG::s_csum_t(s) * typename CFG::s_csum_t(CFG::CSUM);
    typename CFG::c_t c = round_shift(product.to_int64(), CFG::H);
    // Output channels in ceil(O / PE) folds of PE add-max PEs working at once (FINN's PE folding): the
    // inner loop is unrolled into PE copies of bm_neuron, each reading its own bank of the weight ROM
    // (partitioned cyclically by PE on its first dimension in the top function).
folds:
    for (int fold = 0; fold < (CFG::O + CFG::PE - 1) / CFG::PE; fold++) {
    pes:
        for (int p = 0; p < CFG::PE; p++) {
#pragma HLS UNROLL
            int o = fold * CFG::PE + p;
            if (o < CFG::O) {
                out[o * stride + position] =
                    bm_output<CFG>(bm_neuron<CFG>(ln_x, w[o], exp_lut, c, typename CFG::b_t(bias[o]), neg[o]));
            }
        }
    }
}

// 1.5-branch BM convolution: patches in raster order, the K axis ordered channel, kernel row, kernel
// column, zero padding read as code 0.
template <class CFG>
void bm_conv2d(const typename CFG::q_in_t in[CFG::IN_C * CFG::IN_H * CFG::IN_W],
               typename CFG::out_t out[CFG::O * CFG::OUT_H * CFG::OUT_W],
               const typename CFG::ln_rom_t ln_lut[CFG::LN_SIZE], const typename CFG::w_rom_t w[CFG::O][CFG::K],
               const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE], const typename CFG::b_rom_t bias[CFG::O],
               const bool neg[CFG::O]) {
    typename CFG::q_in_t x[CFG::K];
rows:
    for (int oh = 0; oh < CFG::OUT_H; oh++) {
    cols:
        for (int ow = 0; ow < CFG::OUT_W; ow++) {
            gather_patch<CFG>(in, x, oh, ow);
            bm_patch<CFG>(x, ln_lut, w, exp_lut, bias, neg, out, oh * CFG::OUT_W + ow, CFG::OUT_H * CFG::OUT_W);
        }
    }
}

// 1.5-branch BM fully connected layer: the whole input is the one patch.
template <class CFG>
void bm_linear(const typename CFG::q_in_t in[CFG::K], typename CFG::out_t out[CFG::O],
               const typename CFG::ln_rom_t ln_lut[CFG::LN_SIZE], const typename CFG::w_rom_t w[CFG::O][CFG::K],
               const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE], const typename CFG::b_rom_t bias[CFG::O],
               const bool neg[CFG::O]) {
    bm_patch<CFG>(in, ln_lut, w, exp_lut, bias, neg, out, 0, 1);
}

// The adder PE and what follows it for one output (docs/datapath.md, "The adder layer"):
// ACC = sum_k |q_k - W[o, k]| (subtract, absolute value, accumulate; step 1), then the one product of the
// output and the offset, Y = B[o] - MUL[o] * ACC (step 2). Every signal has its proven ap_int width.
template <class CFG>
typename CFG::y_t adder_neuron(const typename CFG::q_in_t x[CFG::K], const typename CFG::w_rom_t w[CFG::K],
                               typename CFG::mul_t mul, typename CFG::b_t b) {
    typename CFG::acc_t acc = 0;
l1:
    for (int k = 0; k < CFG::K; k++) {
#pragma HLS PIPELINE II = 1
        typename CFG::d_t d = typename CFG::d_t(x[k]) - typename CFG::d_t(typename CFG::w_t(w[k]));
        typename CFG::abs_t a = d < 0 ? typename CFG::abs_t(-d) : typename CFG::abs_t(d);
        acc += a;
    }
    typename CFG::prod_t prod = mul * acc;
    return typename CFG::y_t(b - prod);
}

// Step 3 of the adder layer is bm_output's: a hidden layer's Y -> clamp(round_shift(Y, R), 0, OUT_MAX)
// (CFG::OUT_SHIFT = R), the logits pass through.

// One patch (already gathered as codes x_k): every output channel o, in ceil(O / PE) folds of PE adder PEs
// working at once (the template ROM partitioned cyclically by PE on its first dimension, as for BM).
template <class CFG>
void adder_patch(const typename CFG::q_in_t x[CFG::K], const typename CFG::w_rom_t w[CFG::O][CFG::K],
                 const typename CFG::mul_rom_t mul[CFG::O], const typename CFG::b_rom_t bias[CFG::O],
                 typename CFG::out_t out[], int position, int stride) {
folds:
    for (int fold = 0; fold < (CFG::O + CFG::PE - 1) / CFG::PE; fold++) {
    pes:
        for (int p = 0; p < CFG::PE; p++) {
#pragma HLS UNROLL
            int o = fold * CFG::PE + p;
            if (o < CFG::O) {
                out[o * stride + position] = bm_output<CFG>(adder_neuron<CFG>(
                    x, w[o], typename CFG::mul_t(mul[o]), typename CFG::b_t(bias[o])));
            }
        }
    }
}

// AdderNet convolution: patches in raster order, the K axis ordered channel, kernel row, kernel column,
// zero padding read as code 0 (|0 - W| counts, as in the float layer's zero-padded unfold).
template <class CFG>
void adder_conv2d(const typename CFG::q_in_t in[CFG::IN_C * CFG::IN_H * CFG::IN_W],
                  typename CFG::out_t out[CFG::O * CFG::OUT_H * CFG::OUT_W],
                  const typename CFG::w_rom_t w[CFG::O][CFG::K],
                  const typename CFG::mul_rom_t mul[CFG::O], const typename CFG::b_rom_t bias[CFG::O]) {
    typename CFG::q_in_t x[CFG::K];
rows:
    for (int oh = 0; oh < CFG::OUT_H; oh++) {
    cols:
        for (int ow = 0; ow < CFG::OUT_W; ow++) {
            gather_patch<CFG>(in, x, oh, ow);
            adder_patch<CFG>(x, w, mul, bias, out, oh * CFG::OUT_W + ow, CFG::OUT_H * CFG::OUT_W);
        }
    }
}

// AdderNet fully connected layer: the whole input is the one patch.
template <class CFG>
void adder_linear(const typename CFG::q_in_t in[CFG::K], typename CFG::out_t out[CFG::O],
                  const typename CFG::w_rom_t w[CFG::O][CFG::K], const typename CFG::mul_rom_t mul[CFG::O],
                  const typename CFG::b_rom_t bias[CFG::O]) {
    adder_patch<CFG>(in, w, mul, bias, out, 0, 1);
}

// Input binarisation (docs/datapath.md, "The BiSE layer"): x = 1 iff the code q >= THRESHOLD, else 0.
template <class CFG>
void binarize(const typename CFG::data_t in[CFG::SIZE], typename CFG::out_t out[CFG::SIZE]) {
threshold:
    for (int n = 0; n < CFG::SIZE; n++) {
#pragma HLS PIPELINE II = 1
        out[n] = in[n] >= CFG::THRESHOLD ? 1 : 0;
    }
}

// The BiSE PE for one output o (docs/datapath.md, "The BiSE layer"): over the patch, the literal
// l_k = x_k XOR NEG[o, k] for each k with SE[o, k] = 1 (inverters only). A hidden layer reduces the literals
// with an OR (dilation, op = 0: C >= 1) or an AND (erosion, op = 1: C >= |S_o|) and outputs that bit; the last
// layer (SCORES) counts them, C = popcount(l AND SE[o]), the class score. No multiplier, no adder tree in
// the hidden layers: one literal per cycle into a 1-bit OR / AND, or into the C counter.
template <class CFG>
typename CFG::out_t bise_neuron(const typename CFG::x_t x[CFG::K], const bool se[CFG::K], const bool neg[CFG::K],
                                bool erosion) {
    typename CFG::c_t c = 0;
    bool any = false, all = true;
literals:
    for (int k = 0; k < CFG::K; k++) {
#pragma HLS PIPELINE II = 1
        bool l = bool(x[k]) != neg[k];  // x_k XOR NEG[o, k]
        if (se[k]) {
            if (CFG::SCORES) c += typename CFG::c_t(l ? 1 : 0);
            any = any || l;
            all = all && l;
        }
    }
    if (CFG::SCORES) return typename CFG::out_t(c);
    return typename CFG::out_t((erosion ? all : any) ? 1 : 0);
}

// One patch (already gathered as bits x_k): every output o, in ceil(O / PE) folds of PE BiSE PEs working
// at once (the se and neg ROMs partitioned cyclically by PE on their first dimension in the top function).
template <class CFG>
void bise_patch(const typename CFG::x_t x[CFG::K], const bool se[CFG::O][CFG::K], const bool op[CFG::O],
                const bool neg[CFG::O][CFG::K], typename CFG::out_t out[], int position, int stride) {
folds:
    for (int fold = 0; fold < (CFG::O + CFG::PE - 1) / CFG::PE; fold++) {
    pes:
        for (int p = 0; p < CFG::PE; p++) {
#pragma HLS UNROLL
            int o = fold * CFG::PE + p;
            if (o < CFG::O) out[o * stride + position] = bise_neuron<CFG>(x, se[o], neg[o], op[o]);
        }
    }
}

// BiSE convolution: patches in raster order, the K axis ordered channel, kernel row, kernel column, zero
// padding read as the bit 0 (its literal is 0, or 1 where the input enters complemented).
template <class CFG>
void bise_conv2d(const typename CFG::x_t in[CFG::IN_C * CFG::IN_H * CFG::IN_W],
                 typename CFG::out_t out[CFG::O * CFG::OUT_H * CFG::OUT_W], const bool se[CFG::O][CFG::K],
                 const bool op[CFG::O], const bool neg[CFG::O][CFG::K]) {
    typename CFG::x_t x[CFG::K];
rows:
    for (int oh = 0; oh < CFG::OUT_H; oh++) {
    cols:
        for (int ow = 0; ow < CFG::OUT_W; ow++) {
            gather_patch<CFG>(in, x, oh, ow);
            bise_patch<CFG>(x, se, op, neg, out, oh * CFG::OUT_W + ow, CFG::OUT_H * CFG::OUT_W);
        }
    }
}

// BiSE fully connected layer: the whole input is the one patch.
template <class CFG>
void bise_linear(const typename CFG::x_t in[CFG::K], typename CFG::out_t out[CFG::O], const bool se[CFG::O][CFG::K],
                 const bool op[CFG::O], const bool neg[CFG::O][CFG::K]) {
    bise_patch<CFG>(in, se, op, neg, out, 0, 1);
}

// k x k max pooling with stride k, no padding (the codes keep their scale).
template <class CFG>
void maxpool2d(const typename CFG::data_t in[CFG::C * CFG::IN_H * CFG::IN_W],
               typename CFG::data_t out[CFG::C * CFG::OUT_H * CFG::OUT_W]) {
channels:
    for (int c = 0; c < CFG::C; c++) {
        for (int oh = 0; oh < CFG::OUT_H; oh++) {
            for (int ow = 0; ow < CFG::OUT_W; ow++) {
#pragma HLS PIPELINE II = 1
                typename CFG::data_t m = in[(c * CFG::IN_H + oh * CFG::KERNEL) * CFG::IN_W + ow * CFG::KERNEL];
                for (int i = 0; i < CFG::KERNEL; i++) {
                    for (int j = 0; j < CFG::KERNEL; j++) {
                        typename CFG::data_t v = in[(c * CFG::IN_H + oh * CFG::KERNEL + i) * CFG::IN_W +
                                                    ow * CFG::KERNEL + j];
                        if (v > m) m = v;
                    }
                }
                out[(c * CFG::OUT_H + oh) * CFG::OUT_W + ow] = m;
            }
        }
    }
}

// Flatten: (C, H, W) is already the flat order; a copy keeps one buffer per layer.
template <class CFG>
void flatten(const typename CFG::data_t in[CFG::SIZE], typename CFG::data_t out[CFG::SIZE]) {
copy:
    for (int n = 0; n < CFG::SIZE; n++) {
#pragma HLS PIPELINE II = 1
        out[n] = in[n];
    }
}

}  // namespace bmhw

#endif  // BMHW_LAYERS_H_
