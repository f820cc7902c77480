// bmhw_grouped.h: hand-written Vitis HLS kernels of BM layers with several maxima per output (docs/datapath.md,
// "Several maxima per neuron"). A project includes it only where the network has such a layer, so the projects of
// one-max networks keep their files; it builds on bmhw_layers.h (round_shift, gather_patch, bm_output).
//
// The config struct of a grouped layer has, besides a BM layer's: d_t (the proven range of D, every partial sum
// included), GROUPS (N) and SPLIT (whether the weights are split by sign). Its tables add group_last (K bits, 1 on
// the last input of each group: the groups are the same for every output) and, with SPLIT, wneg (O x K bits, 1 for a
// weight of sign -1).
#ifndef BMHW_GROUPED_H_
#define BMHW_GROUPED_H_

#include "bmhw_layers.h"

namespace bmhw {

// Step 2 for one pair: E = round_shift(EXP[r], P - I - G) of the pair's maximum M, as bm_neuron computes it.
template <class CFG>
typename CFG::e_t bm_pair_exp(typename CFG::m_t m, const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE]) {
    long long m64 = m.to_int64();
    typename CFG::i_t i = m64 >> CFG::F;                // floor_div(M, 2^F)
    typename CFG::r_t r = m64 & ((1LL << CFG::F) - 1);  // M - I * 2^F
    return typename CFG::e_t(round_shift((long long)exp_lut[r], CFG::P - CFG::G - i.to_int()));
}

// The grouped add-max PE for one output: one pass over the patch at one k per cycle, a running maximum per sign
// of the current group; at the group's last input each non-empty pair's exp term enters D with its sign (an
// empty pair, no weight of that sign in the group, adds nothing), and both pairs start afresh. Then
// Y = s (D - C) + B (step 4, neg: s = -1). Any order of the pair terms is exact: every partial sum of D lies in
// d_t's proven range.
template <class CFG>
typename CFG::y_t bm_grouped_neuron(const typename CFG::ln_t ln_x[CFG::K], const typename CFG::w_rom_t w[CFG::K],
                                    const bool wneg[CFG::K], const bool group_last[CFG::K],
                                    const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE], typename CFG::c_t c,
                                    typename CFG::b_t b, bool neg) {
    typename CFG::m_t m_pos = 0, m_neg = 0;
    bool has_pos = false, has_neg = false;  // whether the pair holds an input of this group yet
    typename CFG::d_t d = 0;
pairs:
    for (int k = 0; k < CFG::K; k++) {
#pragma HLS PIPELINE II = 1
        typename CFG::t_t t = ln_x[k] + typename CFG::w_t(w[k]);
        if (CFG::SPLIT && wneg[k]) {  // without the split every weight is in its group's positive pair
            if (!has_neg || t > m_neg) m_neg = t;
            has_neg = true;
        } else {
            if (!has_pos || t > m_pos) m_pos = t;
            has_pos = true;
        }
        if (group_last[k]) {
            // d + e and d - e are computed at full precision; the result lies in d_t's range.
            if (has_pos) d = d + bm_pair_exp<CFG>(m_pos, exp_lut);
            if (has_neg) d = d - bm_pair_exp<CFG>(m_neg, exp_lut);
            has_pos = has_neg = false;
        }
    }
    typename CFG::acc_t y = typename CFG::acc_t(d) - typename CFG::acc_t(c);
    if (neg) y = -y;
    y = y + typename CFG::acc_t(b);
    return typename CFG::y_t(y);
}

// One patch (already gathered as codes x_k): the LN lookups, S and C exactly as bm_patch, then every output in
// ceil(O / PE) folds of PE grouped PEs (the w and wneg ROMs partitioned cyclically by PE in the top function).
template <class CFG>
void bm_grouped_patch(const typename CFG::q_in_t x[CFG::K], const typename CFG::ln_rom_t ln_lut[CFG::LN_SIZE],
                      const typename CFG::w_rom_t w[CFG::O][CFG::K], const bool wneg[CFG::O][CFG::K],
                      const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE], const typename CFG::b_rom_t bias[CFG::O],
                      const bool neg[CFG::O], const bool group_last[CFG::K], typename CFG::out_t out[], int position,
                      int stride) {
    typename CFG::ln_t ln_x[CFG::K];
    typename CFG::s_t s = 0;
lookup:
    for (int k = 0; k < CFG::K; k++) {
#pragma HLS PIPELINE II = 1
        ln_x[k] = ln_lut[x[k]];
        s += x[k];
    }
    typename CFG::s_csum_t product = typename CFG::s_csum_t(s) * typename CFG::s_csum_t(CFG::CSUM);
    typename CFG::c_t c = round_shift(product.to_int64(), CFG::H);
folds:
    for (int fold = 0; fold < (CFG::O + CFG::PE - 1) / CFG::PE; fold++) {
    pes:
        for (int p = 0; p < CFG::PE; p++) {
#pragma HLS UNROLL
            int o = fold * CFG::PE + p;
            if (o < CFG::O) {
                out[o * stride + position] = bm_output<CFG>(bm_grouped_neuron<CFG>(
                    ln_x, w[o], wneg[o], group_last, exp_lut, c, typename CFG::b_t(bias[o]), neg[o]));
            }
        }
    }
}

// Grouped BM convolution split by sign: patches in raster order, as bm_conv2d.
template <class CFG>
void bm_grouped_conv2d(const typename CFG::q_in_t in[CFG::IN_C * CFG::IN_H * CFG::IN_W],
                       typename CFG::out_t out[CFG::O * CFG::OUT_H * CFG::OUT_W],
                       const typename CFG::ln_rom_t ln_lut[CFG::LN_SIZE], const typename CFG::w_rom_t w[CFG::O][CFG::K],
                       const bool wneg[CFG::O][CFG::K], const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE],
                       const typename CFG::b_rom_t bias[CFG::O], const bool neg[CFG::O],
                       const bool group_last[CFG::K]) {
    typename CFG::q_in_t x[CFG::K];
rows:
    for (int oh = 0; oh < CFG::OUT_H; oh++) {
    cols:
        for (int ow = 0; ow < CFG::OUT_W; ow++) {
            gather_patch<CFG>(in, x, oh, ow);
            bm_grouped_patch<CFG>(x, ln_lut, w, wneg, exp_lut, bias, neg, group_last, out, oh * CFG::OUT_W + ow,
                                  CFG::OUT_H * CFG::OUT_W);
        }
    }
}

// Grouped BM fully connected layer split by sign: the whole input is the one patch.
template <class CFG>
void bm_grouped_linear(const typename CFG::q_in_t in[CFG::K], typename CFG::out_t out[CFG::O],
                       const typename CFG::ln_rom_t ln_lut[CFG::LN_SIZE], const typename CFG::w_rom_t w[CFG::O][CFG::K],
                       const bool wneg[CFG::O][CFG::K], const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE],
                       const typename CFG::b_rom_t bias[CFG::O], const bool neg[CFG::O],
                       const bool group_last[CFG::K]) {
    bm_grouped_patch<CFG>(in, ln_lut, w, wneg, exp_lut, bias, neg, group_last, out, 0, 1);
}

// Grouped layers without the sign split (SPLIT = false) have no wneg ROM: the kernel never reads the sign, so an
// all-zero stand-in (never read, removed in synthesis) keeps one implementation.
template <class CFG>
void bm_grouped_conv2d(const typename CFG::q_in_t in[CFG::IN_C * CFG::IN_H * CFG::IN_W],
                       typename CFG::out_t out[CFG::O * CFG::OUT_H * CFG::OUT_W],
                       const typename CFG::ln_rom_t ln_lut[CFG::LN_SIZE], const typename CFG::w_rom_t w[CFG::O][CFG::K],
                       const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE], const typename CFG::b_rom_t bias[CFG::O],
                       const bool neg[CFG::O], const bool group_last[CFG::K]) {
    static const bool positive[CFG::O][CFG::K] = {};
    bm_grouped_conv2d<CFG>(in, out, ln_lut, w, positive, exp_lut, bias, neg, group_last);
}

template <class CFG>
void bm_grouped_linear(const typename CFG::q_in_t in[CFG::K], typename CFG::out_t out[CFG::O],
                       const typename CFG::ln_rom_t ln_lut[CFG::LN_SIZE], const typename CFG::w_rom_t w[CFG::O][CFG::K],
                       const typename CFG::exp_rom_t exp_lut[CFG::EXP_SIZE], const typename CFG::b_rom_t bias[CFG::O],
                       const bool neg[CFG::O], const bool group_last[CFG::K]) {
    static const bool positive[CFG::O][CFG::K] = {};
    bm_grouped_linear<CFG>(in, out, ln_lut, w, positive, exp_lut, bias, neg, group_last);
}

}  // namespace bmhw

#endif  // BMHW_GROUPED_H_
