`timescale 1ns / 1ps
`default_nettype none
// bmhw_delay: a W-bit value delayed by N >= 1 clock cycles (a shift register), to keep tags in step with
// a pipelined unit.
module bmhw_delay #(
    parameter integer W = 1,
    parameter integer N = 1
) (
    input  wire         clk,
    input  wire [W-1:0] in,
    output wire [W-1:0] out
);
    reg [W-1:0] stage [0:N-1];
    integer i;
    always @(posedge clk) begin
        stage[0] <= in;
        for (i = 1; i < N; i = i + 1) stage[i] <= stage[i - 1];
    end
    assign out = stage[N-1];
endmodule
`default_nettype wire
