`timescale 1ns / 1ps
`default_nettype none
// bmhw_addmax_group_pe: the add-max PE of a BM layer whose weights are split by sign (docs/datapath.md,
// "Several maxima per neuron"): each enabled cycle it adds LN[q_k] and W[o, k] and updates the running
// maximum of the weight's sign only (`neg`: the weight_sign bit, 1 for sigma = -1). `gfirst` starts the
// next group's maxima. Each maximum has a valid bit: a pair without a weight of its sign is empty and
// adds nothing. After a group's last step `slots` holds its pairs as {valid, sign, M} (the positive pair
// in the low bits). MERGE = 1 (every group is one input) keeps one maximum and its sign: a group of one
// input has exactly one non-empty pair, so one slot per group suffices.
// A layer without the sign split uses the plain bmhw_addmax_pe, whose groups are never empty.
module bmhw_addmax_group_pe #(
    parameter integer LN_W = 14,
    parameter integer WT_W = 16,
    parameter integer M_W = 16,
    parameter integer MERGE = 0,
    // Derived (not to be overridden): slots per group and their width.
    parameter integer SPE = MERGE != 0 ? 1 : 2,
    parameter integer SLOT_W = M_W + 2
) (
    input  wire                    clk,
    input  wire                    en,
    input  wire                    gfirst,
    input  wire [LN_W-1:0]         ln,
    input  wire [WT_W-1:0]         w,
    input  wire                    neg,
    output wire [SPE*SLOT_W-1:0]   slots
);
    wire [M_W-1:0] ln_x;
    wire [M_W-1:0] w_x;
    bmhw_extend #(.IN_W(LN_W), .OUT_W(M_W), .SIGNED(1)) u_ln (.in(ln), .out(ln_x));
    bmhw_extend #(.IN_W(WT_W), .OUT_W(M_W), .SIGNED(1)) u_w (.in(w), .out(w_x));
    wire signed [M_W-1:0] t = $signed(ln_x) + $signed(w_x);

    generate
        if (MERGE != 0) begin : g_merge
            // Every step starts (and ends) a group: keep its term and its sign.
            reg signed [M_W-1:0] m;
            reg s;
            always @(posedge clk) begin
                if (en && gfirst) begin
                    m <= t;
                    s <= neg;
                end
            end
            assign slots = {1'b1, s, m};
        end else begin : g_pairs
            reg signed [M_W-1:0] mp, mn;
            reg vp, vn;
            always @(posedge clk) begin
                if (en) begin
                    if (!neg && (gfirst || !vp || t > mp)) mp <= t;
                    if (neg && (gfirst || !vn || t > mn)) mn <= t;
                    vp <= (vp && !gfirst) || !neg;
                    vn <= (vn && !gfirst) || neg;
                end
            end
            assign slots = {vn, 1'b1, mn, vp, 1'b0, mp};
        end
    endgenerate
endmodule
`default_nettype wire
