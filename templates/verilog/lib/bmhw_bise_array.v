`timescale 1ns / 1ps
`default_nettype none
// bmhw_bise_array: PE BiSE PEs working on the same input bit at once, one output channel each (the BiSE
// layer's counterpart of bmhw_mac_array). `w` carries the PE table bits of the current step side by side,
// PE 0 in the low bits, two bits per PE: bit 0 NEG[o, k], bit 1 SE[o, k]; `acc` returns the PE counts.
module bmhw_bise_array #(
    parameter integer PE = 1,
    parameter integer ACC_W = 4
) (
    input  wire                clk,
    input  wire                en,
    input  wire                first,
    input  wire                x,
    input  wire [PE*2-1:0]     w,
    output wire [PE*ACC_W-1:0] acc
);
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [ACC_W-1:0] acc_p;
            bmhw_bise_pe #(.ACC_W(ACC_W)) u_pe (
                .clk(clk), .en(en), .first(first), .x(x), .se(w[p*2+1]), .neg(w[p*2]), .acc(acc_p)
            );
            assign acc[p*ACC_W +: ACC_W] = acc_p;
        end
    endgenerate
endmodule
`default_nettype wire
