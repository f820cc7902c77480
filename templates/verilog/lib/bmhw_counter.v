`timescale 1ns / 1ps
`default_nettype none
// bmhw_counter: counts 0 .. N-1 on each enabled cycle and wraps; `first` flags 0 and `last` N-1.
// The loop nests of the layer controllers are chains of these (one's `last` enables the next).
module bmhw_counter #(
    parameter integer N = 2,
    parameter integer W = 1
) (
    input  wire clk,
    input  wire clr,
    input  wire en,
    output wire first,
    output wire last
);
    localparam integer N_M1 = N - 1;
    localparam [W-1:0] LAST_VALUE = N_M1[W-1:0];
    reg [W-1:0] value;

    assign first = value == {W{1'b0}};
    assign last = value == LAST_VALUE;

    always @(posedge clk) begin
        if (clr) value <= {W{1'b0}};
        else if (en) value <= last ? {W{1'b0}} : value + 1'b1;
    end
endmodule
`default_nettype wire
