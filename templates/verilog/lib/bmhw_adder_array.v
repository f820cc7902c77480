`timescale 1ns / 1ps
`default_nettype none
// bmhw_adder_array: PE AdderNet PEs working on the same input code at once, one output channel each (the
// adder layer's counterpart of bmhw_pe_array and bmhw_mac_array). `w` carries the PE templates of the
// current step side by side, PE 0 in the low bits; `acc` returns the PE sums the same way.
module bmhw_adder_array #(
    parameter integer PE = 1,
    parameter integer X_W = 8,
    parameter integer WT_W = 9,
    parameter integer D_W = 10,
    parameter integer ABS_W = 9,
    parameter integer ACC_W = 16
) (
    input  wire                clk,
    input  wire                en,
    input  wire                first,
    input  wire [X_W-1:0]      x,
    input  wire [PE*WT_W-1:0]  w,
    output wire [PE*ACC_W-1:0] acc
);
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [ACC_W-1:0] acc_p;
            bmhw_adder_pe #(.X_W(X_W), .WT_W(WT_W), .D_W(D_W), .ABS_W(ABS_W), .ACC_W(ACC_W)) u_pe (
                .clk(clk), .en(en), .first(first), .x(x), .w(w[p*WT_W +: WT_W]), .acc(acc_p)
            );
            assign acc[p*ACC_W +: ACC_W] = acc_p;
        end
    endgenerate
endmodule
`default_nettype wire
