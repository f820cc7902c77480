`timescale 1ns / 1ps
`default_nettype none
// bmhw_round_shift: round_shift(a, N) of docs/datapath.md for a constant N: N > 0 divides by 2^N
// rounding halves up (add 2^(N-1), then an arithmetic shift), N = 0 passes a through, N < 0 shifts
// left. OUT_W is at least the natural width of the result: IN_W + 1 - N for N > 0, IN_W - N otherwise.
// 0 < N <= IN_W is required for N > 0 (the export checks it).
module bmhw_round_shift #(
    parameter integer IN_W = 8,
    parameter integer OUT_W = 8,
    parameter integer N = 0,
    parameter integer SIGNED = 1
) (
    input  wire [IN_W-1:0]  in,
    output wire [OUT_W-1:0] out
);
    generate
        if (N > 0) begin : g_right
            localparam integer SUM_W = IN_W + 1;
            localparam [SUM_W-1:0] HALF = {{(SUM_W - 1){1'b0}}, 1'b1} << (N - 1);
            wire [SUM_W-1:0] in_x;
            bmhw_extend #(.IN_W(IN_W), .OUT_W(SUM_W), .SIGNED(SIGNED)) u_in (.in(in), .out(in_x));
            // The bits below position N only feed the carry of the rounding addition.
            /* verilator lint_off UNUSEDSIGNAL */
            wire [SUM_W-1:0] sum = in_x + HALF;
            /* verilator lint_on UNUSEDSIGNAL */
            bmhw_extend #(.IN_W(SUM_W - N), .OUT_W(OUT_W), .SIGNED(SIGNED)) u_out (.in(sum[SUM_W-1:N]), .out(out));
        end else if (N == 0) begin : g_pass
            bmhw_extend #(.IN_W(IN_W), .OUT_W(OUT_W), .SIGNED(SIGNED)) u_out (.in(in), .out(out));
        end else begin : g_left
            wire [OUT_W+N-1:0] in_x;
            bmhw_extend #(.IN_W(IN_W), .OUT_W(OUT_W + N), .SIGNED(SIGNED)) u_in (.in(in), .out(in_x));
            assign out = {in_x, {(-N){1'b0}}};
        end
    endgenerate
endmodule
`default_nettype wire
