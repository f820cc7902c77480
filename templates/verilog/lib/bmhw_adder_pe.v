`timescale 1ns / 1ps
`default_nettype none
// bmhw_adder_pe: the AdderNet processing element (docs/datapath.md, "The adder layer"):
// acc = sum_k |x_k - w_k| with unsigned X_W-bit codes and signed WT_W-bit templates: a subtractor, an
// absolute value and an accumulator, no multiplier. `first` starts a new sum. D_W (signed) holds the
// range of x - w, ABS_W (unsigned) that of |x - w| and ACC_W (unsigned) that of the sum: the IR's proven
// widths, so the modular arithmetic below never loses a bit.
module bmhw_adder_pe #(
    parameter integer X_W = 8,
    parameter integer WT_W = 9,
    parameter integer D_W = 10,
    parameter integer ABS_W = 9,
    parameter integer ACC_W = 16
) (
    input  wire             clk,
    input  wire             en,
    input  wire             first,
    input  wire [X_W-1:0]   x,
    input  wire [WT_W-1:0]  w,
    output reg  [ACC_W-1:0] acc
);
    // Operands at the difference's width (zero-extended code, sign-extended template; a wider operand is
    // cut to D_W bits, which two's complement arithmetic allows since x - w fits D_W bits).
    localparam integer OP_W = D_W > X_W + 1 ? (D_W > WT_W ? D_W : WT_W) : (X_W + 1 > WT_W ? X_W + 1 : WT_W);
    wire [OP_W-1:0] x_x, w_x;
    bmhw_extend #(.IN_W(X_W), .OUT_W(OP_W), .SIGNED(0)) u_x (.in(x), .out(x_x));
    bmhw_extend #(.IN_W(WT_W), .OUT_W(OP_W), .SIGNED(1)) u_w (.in(w), .out(w_x));
    wire [OP_W-1:0] d_full = x_x - w_x;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [OP_W-1:0] d_unused = d_full;  // bits above D_W are sign copies (the range of x - w is proven)
    /* verilator lint_on UNUSEDSIGNAL */
    wire [D_W-1:0] d = d_full[D_W-1:0];
    // |d| as an unsigned D_W-bit value (exact even for d = -2^(D_W-1)); its upper bits are zero.
    wire [D_W-1:0] mag = d[D_W-1] ? (~d + 1'b1) : d;
    wire [ACC_W-1:0] mag_x;
    generate
        if (ABS_W < D_W) begin : g_cut
            /* verilator lint_off UNUSEDSIGNAL */
            wire [D_W-1:0] mag_unused = mag;  // |x - w| < 2^ABS_W is proven: the upper bits are zero
            /* verilator lint_on UNUSEDSIGNAL */
            bmhw_extend #(.IN_W(ABS_W), .OUT_W(ACC_W), .SIGNED(0)) u_m (.in(mag[ABS_W-1:0]), .out(mag_x));
        end else begin : g_whole
            bmhw_extend #(.IN_W(D_W), .OUT_W(ACC_W), .SIGNED(0)) u_m (.in(mag), .out(mag_x));
        end
    endgenerate

    always @(posedge clk) begin
        if (en) acc <= first ? mag_x : acc + mag_x;
    end
endmodule
`default_nettype wire
