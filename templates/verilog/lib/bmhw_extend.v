`timescale 1ns / 1ps
`default_nettype none
// bmhw_extend: widens a value to OUT_W >= IN_W bits, sign-extending (SIGNED = 1) or zero-extending.
module bmhw_extend #(
    parameter integer IN_W = 8,
    parameter integer OUT_W = 8,
    parameter integer SIGNED = 1
) (
    input  wire [IN_W-1:0]  in,
    output wire [OUT_W-1:0] out
);
    generate
        if (OUT_W > IN_W) begin : g_extend
            wire fill = SIGNED != 0 ? in[IN_W-1] : 1'b0;
            assign out = {{(OUT_W - IN_W){fill}}, in};
        end else begin : g_same
            assign out = in;
        end
    endgenerate
endmodule
`default_nettype wire
