`timescale 1ns / 1ps
`default_nettype none
// bmhw_addmax_pe: the add-max processing element of a 1.5-branch BM neuron (docs/datapath.md, step 1).
// Each enabled cycle it adds one log-domain input LN[q_k] and one log-weight W[o, k] and keeps the
// running maximum: M = max_k (LN[q_k] + W[o, k]). No multiplier: one adder and one comparator.
// `first` starts a new maximum. M_W is at least the proven width of T and M and of both inputs, so
// the sum never wraps.
module bmhw_addmax_pe #(
    parameter integer LN_W = 14,
    parameter integer WT_W = 16,
    parameter integer M_W = 16
) (
    input  wire                  clk,
    input  wire                  en,
    input  wire                  first,
    input  wire [LN_W-1:0]       ln,
    input  wire [WT_W-1:0]       w,
    output reg  signed [M_W-1:0] m
);
    wire [M_W-1:0] ln_x;
    wire [M_W-1:0] w_x;
    bmhw_extend #(.IN_W(LN_W), .OUT_W(M_W), .SIGNED(1)) u_ln (.in(ln), .out(ln_x));
    bmhw_extend #(.IN_W(WT_W), .OUT_W(M_W), .SIGNED(1)) u_w (.in(w), .out(w_x));
    wire signed [M_W-1:0] t = $signed(ln_x) + $signed(w_x);

    always @(posedge clk) begin
        if (en && (first || t > m)) m <= t;
    end
endmodule
`default_nettype wire
