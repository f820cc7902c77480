`timescale 1ns / 1ps
`default_nettype none
// bmhw_bise_blocks_tb: the unit-bench harness of the blocks of one binarised BiSE layer (sim/test_blocks.py),
// with the layer's parameters (bmhw.backends.verilog.bise_layer_plan); every input and output is a port:
//   pe_*    one bmhw_bise_pe (acc = C = the number of true literals (x XOR neg) AND se);
//   pa_*    a bmhw_bise_array of ARRAY_PE PEs (two table bits per PE: bit 0 neg, bit 1 se).
module bmhw_bise_blocks_tb #(
    parameter integer ACC_W = 4,
    parameter integer ARRAY_PE = 4
) (
    input  wire                       clk,
    input  wire                       pe_en,
    input  wire                       pe_first,
    input  wire                       pe_x,
    input  wire                       pe_se,
    input  wire                       pe_neg,
    output wire [ACC_W-1:0]           pe_acc,
    input  wire                       pa_en,
    input  wire                       pa_first,
    input  wire                       pa_x,
    input  wire [ARRAY_PE*2-1:0]      pa_w,
    output wire [ARRAY_PE*ACC_W-1:0]  pa_acc
);
    bmhw_bise_pe #(.ACC_W(ACC_W)) u_pe (
        .clk(clk), .en(pe_en), .first(pe_first), .x(pe_x), .se(pe_se), .neg(pe_neg), .acc(pe_acc)
    );
    bmhw_bise_array #(.PE(ARRAY_PE), .ACC_W(ACC_W)) u_array (
        .clk(clk), .en(pa_en), .first(pa_first), .x(pa_x), .w(pa_w), .acc(pa_acc)
    );
endmodule
`default_nettype wire
