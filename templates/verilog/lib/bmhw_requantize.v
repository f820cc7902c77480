`timescale 1ns / 1ps
`default_nettype none
// bmhw_requantize: step 5 of docs/datapath.md for a hidden layer:
// q = clamp(round_shift(Y, OUT_SHIFT), 0, 2^A - 1). ReLU is the clamp at 0; the top saturates.
module bmhw_requantize #(
    parameter integer Y_W = 20,
    parameter integer OUT_SHIFT = 8,
    parameter integer YR_W = 13,
    parameter integer A = 8
) (
    input  wire [Y_W-1:0] y,
    output wire [A-1:0]   q
);
    wire [YR_W-1:0] yr;
    bmhw_round_shift #(.IN_W(Y_W), .OUT_W(YR_W), .N(OUT_SHIFT), .SIGNED(1)) u_round (.in(y), .out(yr));

    wire negative = yr[YR_W-1];
    generate
        if (YR_W - 1 > A) begin : g_saturate
            wire over = |yr[YR_W-2:A];
            assign q = negative ? {A{1'b0}} : (over ? {A{1'b1}} : yr[A-1:0]);
        end else begin : g_fits
            assign q = negative ? {A{1'b0}} : yr[A-1:0];
        end
    endgenerate
endmodule
`default_nettype wire
