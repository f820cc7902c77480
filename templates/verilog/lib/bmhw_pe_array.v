`timescale 1ns / 1ps
`default_nettype none
// bmhw_pe_array: PE add-max PEs working on the same input at once, one output channel each (FINN's
// PE folding). `w` carries the PE log-weights of the current step side by side, PE 0 in the low bits;
// `m` returns the PE maxima the same way.
module bmhw_pe_array #(
    parameter integer PE = 1,
    parameter integer LN_W = 14,
    parameter integer WT_W = 16,
    parameter integer M_W = 16
) (
    input  wire                clk,
    input  wire                en,
    input  wire                first,
    input  wire [LN_W-1:0]     ln,
    input  wire [PE*WT_W-1:0]  w,
    output wire [PE*M_W-1:0]   m
);
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire signed [M_W-1:0] m_p;
            bmhw_addmax_pe #(.LN_W(LN_W), .WT_W(WT_W), .M_W(M_W)) u_pe (
                .clk(clk), .en(en), .first(first), .ln(ln), .w(w[p*WT_W +: WT_W]), .m(m_p)
            );
            assign m[p*M_W +: M_W] = m_p;
        end
    endgenerate
endmodule
`default_nettype wire
