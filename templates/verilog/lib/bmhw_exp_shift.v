`timescale 1ns / 1ps
`default_nettype none
// bmhw_exp_shift: E = round_shift(EXP[r], P - G - I) with I = floor(M / 2^F), r = M mod 2^F
// (docs/datapath.md, step 2): 2^(M / 2^F) in units of 2^-G. The table gives the fraction; the shift
// gives the integer part. The variable shift is done as one left shift by L = I - IMIN in [0, LMAX]
// followed by a constant rounding shift by RS = P - G - IMIN, which is exact:
// round_shift(EXP << L, RS) = round_shift(EXP, RS - L). Pipelined: E leaves LATENCY = 4 cycles after M
// enters (table read, table output register, shift, rounding).
module bmhw_exp_shift #(
    parameter integer M_W = 16,
    parameter integer F = 10,
    parameter integer EXP_W = 17,
    parameter integer IMIN = 0,
    parameter integer LMAX = 0,
    parameter integer RS = 1,
    parameter integer E_W = 17,
    parameter EXP_FILE = ""
) (
    input  wire           clk,
    input  wire [M_W-1:0] m,
    output reg  [E_W-1:0] e
);
    localparam integer I_W = M_W - F;
    // Below L0 = RS - EXP_W every entry shifts to less than half a unit: E = 0 there, so the shifter
    // spans L0 .. LMAX only (exactly the same E).
    localparam integer L0 = RS > EXP_W ? (RS - EXP_W > LMAX ? LMAX : RS - EXP_W) : 0;
    localparam integer SPAN = LMAX - L0;
    localparam integer S_W = SPAN > 0 ? $clog2(SPAN + 1) : 1;
    localparam integer Z_W = EXP_W + SPAN;
    localparam [I_W:0] IMIN_V = IMIN[I_W:0];
    localparam [I_W:0] L0_V = L0[I_W:0];

    wire [EXP_W-1:0] exp_q;
    bmhw_rom #(.WIDTH(EXP_W), .DEPTH(1 << F), .ADDR_W(F), .INIT_FILE(EXP_FILE)) u_exp_lut (
        .clk(clk), .addr(m[F-1:0]), .data(exp_q)
    );

    // L = I - IMIN lies in [0, LMAX] (the range of I is proven), so its upper bits are zero.
    /* verilator lint_off UNUSEDSIGNAL */
    wire [I_W:0] l_full = {m[M_W-1], m[M_W-1:F]} - IMIN_V - L0_V;
    /* verilator lint_on UNUSEDSIGNAL */
    reg [S_W-1:0] l_q, l_r;
    reg zero_q, zero_r;
    reg [EXP_W-1:0] exp_r;
    always @(posedge clk) begin
        l_q <= l_full[S_W-1:0];
        zero_q <= l_full[I_W];  // L < L0
        // Registered table output: a block RAM's data leaves slowly; then the shift, then the rounding.
        exp_r <= exp_q;
        l_r <= l_q;
        zero_r <= zero_q;
    end

    wire [Z_W-1:0] exp_x;
    bmhw_extend #(.IN_W(EXP_W), .OUT_W(Z_W), .SIGNED(0)) u_exp (.in(exp_r), .out(exp_x));
    reg [Z_W-1:0] z;
    always @(posedge clk) z <= zero_r ? {Z_W{1'b0}} : exp_x << l_r;
    wire [E_W-1:0] e_value;
    bmhw_round_shift #(.IN_W(Z_W), .OUT_W(E_W), .N(RS - L0), .SIGNED(0)) u_round (.in(z), .out(e_value));
    always @(posedge clk) e <= e_value;
endmodule
`default_nettype wire
