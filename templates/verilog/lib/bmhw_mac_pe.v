`timescale 1ns / 1ps
`default_nettype none
// bmhw_mac_pe: the classical multiply-accumulate processing element, for cost comparisons with the
// add-max PE (bmhw gates): acc = sum_k x_k * w_k with unsigned X_W-bit codes and signed WT_W-bit weights.
// `first` starts a new sum. ACC_W must hold the whole sum (the caller sizes it).
module bmhw_mac_pe #(
    parameter integer X_W = 8,
    parameter integer WT_W = 8,
    parameter integer ACC_W = 24
) (
    input  wire                    clk,
    input  wire                    en,
    input  wire                    first,
    input  wire [X_W-1:0]          x,
    input  wire [WT_W-1:0]         w,
    output reg  signed [ACC_W-1:0] acc
);
    wire signed [X_W:0] x_s = {1'b0, x};
    wire signed [X_W+WT_W:0] product = x_s * $signed(w);
    wire [ACC_W-1:0] product_x;
    bmhw_extend #(.IN_W(X_W + WT_W + 1), .OUT_W(ACC_W), .SIGNED(1)) u_p (.in(product), .out(product_x));

    always @(posedge clk) begin
        if (en) acc <= first ? $signed(product_x) : acc + $signed(product_x);
    end
endmodule
`default_nettype wire
