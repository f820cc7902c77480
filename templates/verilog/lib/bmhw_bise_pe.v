`timescale 1ns / 1ps
`default_nettype none
// bmhw_bise_pe: the binarised BiSE processing element (docs/datapath.md, "The BiSE layer"): one input bit
// per cycle, its literal l = x XOR NEG[o, k] (an inverter) masked by SE[o, k], counted: acc = C =
// sum_k SE[o, k] * l_k, a popcount (no multiplier, no adder tree). The layer compares C with the output's
// threshold (1: dilation, an OR; |S_o|: erosion, an AND) or outputs it as the class score. `first` starts
// a new count. ACC_W (unsigned) holds the range of C, [0, max_o |S_o|].
module bmhw_bise_pe #(
    parameter integer ACC_W = 4
) (
    input  wire             clk,
    input  wire             en,
    input  wire             first,
    input  wire             x,
    input  wire             se,
    input  wire             neg,
    output reg  [ACC_W-1:0] acc
);
    wire lit = (x ^ neg) & se;
    wire [ACC_W-1:0] lit_x;
    bmhw_extend #(.IN_W(1), .OUT_W(ACC_W), .SIGNED(0)) u_lit (.in(lit), .out(lit_x));

    always @(posedge clk) begin
        if (en) acc <= first ? lit_x : acc + lit_x;
    end
endmodule
`default_nettype wire
