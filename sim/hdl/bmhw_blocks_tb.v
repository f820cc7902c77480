`timescale 1ns / 1ps
`default_nettype none
// bmhw_blocks_tb: the unit-bench harness of the library blocks of one BM layer (sim/test_blocks.py).
// It only instantiates each block once, with the layer's parameters (bmhw.backends.verilog.bm_layer_plan),
// and brings every input and output out as a port of its own, so that the cocotb bench drives and
// reads each block on its own:
//   ln_*    bmhw_rom holding the layer's ln LUT (LN_FILE, 2^Q_W entries), registered read;
//   exp_*   bmhw_rom holding the layer's exp LUT (EXP_FILE, 2^F entries), registered read;
//   es_*    bmhw_exp_shift (M in, E out one cycle later);
//   pe_*    one bmhw_addmax_pe;
//   pa_*    a bmhw_pe_array of ARRAY_PE PEs;
//   corr_*  bmhw_correction (combinational);
//   rq_*    bmhw_requantize (combinational; a pass-through of zero when RELU = 0, logits need none).
module bmhw_blocks_tb #(
    parameter integer Q_W = 8,
    parameter integer LN_W = 14,
    parameter integer WT_W = 16,
    parameter integer M_W = 16,
    parameter integer F = 10,
    parameter integer EXP_W = 17,
    parameter integer IMIN = 0,
    parameter integer LMAX = 0,
    parameter integer RS = 1,
    parameter integer E_W = 17,
    parameter integer S_W = 16,
    parameter integer SC_W = 32,
    parameter integer H = 16,
    parameter [63:0] CSUM = 64'd1,
    parameter integer C_W = 17,
    parameter integer Y_W = 20,
    parameter integer RELU = 1,
    parameter integer OUT_SHIFT = 8,
    parameter integer YR_W = 13,
    parameter integer OUT_D = 8,
    parameter integer ARRAY_PE = 4,
    parameter LN_FILE = "",
    parameter EXP_FILE = ""
) (
    input  wire                      clk,
    input  wire [Q_W-1:0]            ln_addr,
    output wire [LN_W-1:0]           ln_data,
    input  wire [F-1:0]              exp_addr,
    output wire [EXP_W-1:0]          exp_data,
    input  wire [M_W-1:0]            es_m,
    output wire [E_W-1:0]            es_e,
    input  wire                      pe_en,
    input  wire                      pe_first,
    input  wire [LN_W-1:0]           pe_ln,
    input  wire [WT_W-1:0]           pe_w,
    output wire [M_W-1:0]            pe_m,
    input  wire                      pa_en,
    input  wire                      pa_first,
    input  wire [LN_W-1:0]           pa_ln,
    input  wire [ARRAY_PE*WT_W-1:0]  pa_w,
    output wire [ARRAY_PE*M_W-1:0]   pa_m,
    input  wire [S_W-1:0]            corr_s,
    output wire [C_W-1:0]            corr_c,
    input  wire [Y_W-1:0]            rq_y,
    output wire [OUT_D-1:0]          rq_q
);
    bmhw_rom #(.WIDTH(LN_W), .DEPTH(1 << Q_W), .ADDR_W(Q_W), .INIT_FILE(LN_FILE)) u_ln_rom (
        .clk(clk), .addr(ln_addr), .data(ln_data)
    );
    bmhw_rom #(.WIDTH(EXP_W), .DEPTH(1 << F), .ADDR_W(F), .INIT_FILE(EXP_FILE)) u_exp_rom (
        .clk(clk), .addr(exp_addr), .data(exp_data)
    );
    bmhw_exp_shift #(.M_W(M_W), .F(F), .EXP_W(EXP_W), .IMIN(IMIN), .LMAX(LMAX), .RS(RS), .E_W(E_W),
                     .EXP_FILE(EXP_FILE)) u_exp_shift (.clk(clk), .m(es_m), .e(es_e));
    bmhw_addmax_pe #(.LN_W(LN_W), .WT_W(WT_W), .M_W(M_W)) u_pe (
        .clk(clk), .en(pe_en), .first(pe_first), .ln(pe_ln), .w(pe_w), .m(pe_m)
    );
    bmhw_pe_array #(.PE(ARRAY_PE), .LN_W(LN_W), .WT_W(WT_W), .M_W(M_W)) u_pe_array (
        .clk(clk), .en(pa_en), .first(pa_first), .ln(pa_ln), .w(pa_w), .m(pa_m)
    );
    bmhw_correction #(.S_W(S_W), .SC_W(SC_W), .CSUM(CSUM), .H(H), .C_W(C_W)) u_correction (.s(corr_s), .c(corr_c));
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
