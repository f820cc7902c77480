`timescale 1ns / 1ps
`default_nettype none
// bmhw_adder_blocks_tb: the unit-bench harness of the blocks of one AdderNet layer (sim/test_blocks.py),
// with the layer's parameters (bmhw.backends.verilog.adder_layer_plan); every input and output is a port:
//   pe_*    one bmhw_adder_pe (acc = sum |x - w|);
//   pa_*    a bmhw_adder_array of ARRAY_PE PEs;
//   rq_*    bmhw_requantize (combinational; a pass-through of zero when RELU = 0, logits need none).
module bmhw_adder_blocks_tb #(
    parameter integer Q_W = 8,
    parameter integer WT_W = 9,
    parameter integer D_W = 10,
    parameter integer ABS_W = 9,
    parameter integer ACC_W = 16,
    parameter integer Y_W = 32,
    parameter integer RELU = 1,
    parameter integer OUT_SHIFT = 8,
    parameter integer YR_W = 13,
    parameter integer OUT_D = 8,
    parameter integer ARRAY_PE = 4
) (
    input  wire                       clk,
    input  wire                       pe_en,
    input  wire                       pe_first,
    input  wire [Q_W-1:0]             pe_x,
    input  wire [WT_W-1:0]            pe_w,
    output wire [ACC_W-1:0]           pe_acc,
    input  wire                       pa_en,
    input  wire                       pa_first,
    input  wire [Q_W-1:0]             pa_x,
    input  wire [ARRAY_PE*WT_W-1:0]   pa_w,
    output wire [ARRAY_PE*ACC_W-1:0]  pa_acc,
    input  wire [Y_W-1:0]             rq_y,
    output wire [OUT_D-1:0]           rq_q
);
    bmhw_adder_pe #(.X_W(Q_W), .WT_W(WT_W), .D_W(D_W), .ABS_W(ABS_W), .ACC_W(ACC_W)) u_pe (
        .clk(clk), .en(pe_en), .first(pe_first), .x(pe_x), .w(pe_w), .acc(pe_acc)
    );
    bmhw_adder_array #(.PE(ARRAY_PE), .X_W(Q_W), .WT_W(WT_W), .D_W(D_W), .ABS_W(ABS_W), .ACC_W(ACC_W)) u_array (
        .clk(clk), .en(pa_en), .first(pa_first), .x(pa_x), .w(pa_w), .acc(pa_acc)
    );
    generate
        if (RELU != 0) begin : g_requantize
            bmhw_requantize #(.Y_W(Y_W), .OUT_SHIFT(OUT_SHIFT), .YR_W(YR_W), .A(OUT_D)) u_requantize (
                .y(rq_y), .q(rq_q)
            );
        end else begin : g_none
            /* verilator lint_off UNUSEDSIGNAL */
            wire unused = ^rq_y;
            /* verilator lint_on UNUSEDSIGNAL */
            assign rq_q = {OUT_D{1'b0}};
        end
    endgenerate
endmodule
`default_nettype wire
