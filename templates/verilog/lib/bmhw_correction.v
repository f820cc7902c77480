`timescale 1ns / 1ps
`default_nettype none
// bmhw_correction: C = round_shift(S * CSUM, H) (docs/datapath.md, step 3), the Δw·Σx term of a patch.
// CSUM is a constant, so the product is a sum of shifted copies of S, one per set bit of CSUM (a single
// shift when CSUM is a power of two, as in every hidden layer): no multiplier. SC_W is the proven
// width of S * CSUM, so the partial sums never wrap.
module bmhw_correction #(
    parameter integer S_W = 16,
    parameter integer SC_W = 32,
    parameter [63:0] CSUM = 64'd1,
    parameter integer H = 16,
    parameter integer C_W = 17
) (
    input  wire [S_W-1:0] s,
    output wire [C_W-1:0] c
);
    wire [SC_W-1:0] s_x;
    bmhw_extend #(.IN_W(S_W), .OUT_W(SC_W), .SIGNED(0)) u_s (.in(s), .out(s_x));

    // A sum over the set bits of the constant: the synthesis tool sees only adders.
    function [SC_W-1:0] times_csum(input [SC_W-1:0] value);
        integer b;
        begin
            times_csum = {SC_W{1'b0}};
            for (b = 0; b < SC_W; b = b + 1) begin
                if (CSUM[b]) times_csum = times_csum + (value << b);
            end
        end
    endfunction

    bmhw_round_shift #(.IN_W(SC_W), .OUT_W(C_W), .N(H), .SIGNED(0)) u_round (.in(times_csum(s_x)), .out(c));
endmodule
`default_nettype wire
