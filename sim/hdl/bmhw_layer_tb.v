`timescale 1ns / 1ps
`default_nettype none
// bmhw_layer_tb: the unit-bench harness of one bmhw_bm_layer (sim/test_blocks.py). The bench writes an
// image's input codes straight into the input RAM's `mem`, pulses `start` for one cycle and waits for
// `done`; the layer reads the input RAM and writes the output RAM, whose `mem` the bench then reads.
// The harness keeps the cycle of the last `start` and of the last `done` (a count of the cycles since
// the reset, so done_time - start_time is the layer's start-to-done latency), the number of `done` pulses and the
// number of output writes since the last `start`.
// The layer's parameters are forwarded unchanged (bmhw.backends.verilog.bm_layer_plan); IN_DEPTH and
// OUT_DEPTH are the sizes of its input and output tensors.
module bmhw_layer_tb #(
    parameter integer IN_DEPTH = 1,
    parameter integer OUT_DEPTH = 1,
    parameter integer IN_H = 1,
    parameter integer IN_W = 1,
    parameter integer OUT_H = 1,
    parameter integer OUT_W = 1,
    parameter integer KH = 1,
    parameter integer KW = 1,
    parameter integer SH = 1,
    parameter integer SW = 1,
    parameter integer PH = 0,
    parameter integer PW = 0,
    parameter integer K = 1,
    parameter integer O = 1,
    parameter integer PE = 1,
    parameter integer IN_AW = 1,
    parameter integer OUT_AW = 1,
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
    parameter integer B_W = 16,
    parameter integer Y_W = 20,
    parameter integer RELU = 1,
    parameter integer OUT_SHIFT = 8,
    parameter integer YR_W = 13,
    parameter integer OUT_D = 8,
    parameter LN_FILE = "",
    parameter W_FILE = "",
    parameter EXP_FILE = "",
    parameter B_FILE = ""
) (
    input  wire        clk,
    input  wire        rst,
    input  wire        start,
    output wire        done,
    output reg  [31:0] start_time,
    output reg  [31:0] done_time,
    output reg  [31:0] done_count,
    output reg  [31:0] writes
);
    wire [IN_AW-1:0] in_raddr;
    wire [Q_W-1:0] in_rdata;
    wire out_we;
    wire [OUT_AW-1:0] out_waddr;
    wire [OUT_D-1:0] out_wdata;

    // Written by the bench through `mem` only.
    bmhw_ram #(.WIDTH(Q_W), .DEPTH(IN_DEPTH), .ADDR_W(IN_AW), .WRITE_FIRST(0)) u_in (
        .clk(clk), .we(1'b0), .waddr({IN_AW{1'b0}}), .wdata({Q_W{1'b0}}), .raddr(in_raddr), .rdata(in_rdata)
    );

    bmhw_bm_layer #(
        .IN_H(IN_H), .IN_W(IN_W), .OUT_H(OUT_H), .OUT_W(OUT_W), .KH(KH), .KW(KW), .SH(SH), .SW(SW), .PH(PH),
        .PW(PW), .K(K), .O(O), .PE(PE), .IN_AW(IN_AW), .OUT_AW(OUT_AW), .Q_W(Q_W), .LN_W(LN_W), .WT_W(WT_W),
        .M_W(M_W), .F(F), .EXP_W(EXP_W), .IMIN(IMIN), .LMAX(LMAX), .RS(RS), .E_W(E_W), .S_W(S_W),
        .SC_W(SC_W), .H(H), .CSUM(CSUM), .C_W(C_W), .B_W(B_W), .Y_W(Y_W), .RELU(RELU), .OUT_SHIFT(OUT_SHIFT),
        .YR_W(YR_W), .OUT_D(OUT_D), .LN_FILE(LN_FILE), .W_FILE(W_FILE), .EXP_FILE(EXP_FILE), .B_FILE(B_FILE)
    ) u_layer (
        .clk(clk), .rst(rst), .start(start), .done(done), .in_raddr(in_raddr), .in_rdata(in_rdata),
        .out_we(out_we), .out_waddr(out_waddr), .out_wdata(out_wdata)
    );

    bmhw_ram #(.WIDTH(OUT_D), .DEPTH(OUT_DEPTH), .ADDR_W(OUT_AW), .WRITE_FIRST(0)) u_out (
        .clk(clk), .we(out_we), .waddr(out_waddr), .wdata(out_wdata), .raddr({OUT_AW{1'b0}}),
        /* verilator lint_off PINCONNECTEMPTY */
        .rdata()
        /* verilator lint_on PINCONNECTEMPTY */
    );

    reg [31:0] now;
    always @(posedge clk) begin
        if (rst) begin
            now <= 32'd0;
            done_count <= 32'd0;
            writes <= 32'd0;
        end else begin
            now <= now + 32'd1;
            if (start) begin
                start_time <= now;
                writes <= 32'd0;
            end else if (out_we) begin
                writes <= writes + 32'd1;
            end
            if (done) begin
                done_time <= now;
                done_count <= done_count + 32'd1;
            end
        end
    end
endmodule
`default_nettype wire
