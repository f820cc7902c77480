`timescale 1ns / 1ps
`default_nettype none
// bmhw_mac_layer: one classical integer layer of the MAC twin (docs/datapath.md, "The classical MAC
// layer"): Y[o] = sum_k x_k * W[o, k] + B[o], then requantization (hidden layers) or the logits.
//
// The same architecture as bmhw_bm_layer, so that BM and MAC are compared on identical control, buffers
// and parallelism: the schedule and window addresses of bmhw_layer_scan, a K-entry window buffer that
// keeps the patch for the later folds (input codes here, log-domain values there), PE processing elements
// fed from registered inputs, a hold register and a serial output stage (bmhw_fold_drain). Only the PE
// (multiply-accumulate instead of add-max) and the output arithmetic (a bias addition instead of the exp
// table, the shift and the correction) differ.
//   stage 1  x_k arrives; the weight ROM is read at (fold, k);
//   stage 2  x_k (first fold, also written into the window buffer) or the window buffer's copy;
//   stage 2b x_k and the PE weights of the step registered, then the MAC PEs;
//   stage 3  after the last k of a fold the PE sums go to the hold register;
//   output   one held sum per cycle: bias ROM, Y = ACC + B, requantization, write.
// Cycles from `start` to `done`: POSITIONS * FOLDS * K + (outputs in the last fold) + 8 (docs/verilog.md).
module bmhw_mac_layer #(
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
    parameter integer WT_W = 8,
    parameter integer ACC_W = 24,
    parameter integer B_W = 16,
    parameter integer Y_W = 24,
    parameter integer RELU = 1,
    parameter integer OUT_SHIFT = 8,
    parameter integer YR_W = 17,
    parameter integer OUT_D = 8,
    parameter W_FILE = "",
    parameter B_FILE = ""
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              start,
    output reg               done,
    output wire [IN_AW-1:0]  in_raddr,
    input  wire [Q_W-1:0]    in_rdata,
    output reg               out_we,
    output reg  [OUT_AW-1:0] out_waddr,
    output wire [OUT_D-1:0]  out_wdata
);
    localparam integer FOLDS = (O + PE - 1) / PE;
    localparam integer POSITIONS = OUT_H * OUT_W;
    localparam integer WROM_DEPTH = FOLDS * K;
    localparam integer BROM_DEPTH = FOLDS * PE;
    // Widths of the step index, the weight ROM address and the output channel (as in bmhw_layer_scan).
    localparam integer K_W = K > 1 ? $clog2(K) : 1;
    localparam integer WA_W = WROM_DEPTH > 1 ? $clog2(WROM_DEPTH) : 1;
    localparam integer OB_W = BROM_DEPTH > 1 ? $clog2(BROM_DEPTH) : 1;

    // ---------------------------------------------------------------- stages 0 and 1: schedule, window address
    wire running, v1, pad1, fold0_1, first1, last1, flast1;
    wire [K_W-1:0] k1;
    wire [WA_W-1:0] wa1;
    wire [OUT_AW-1:0] obase1;
    wire [OB_W-1:0] fo1;
    bmhw_layer_scan #(.IN_H(IN_H), .IN_W(IN_W), .OUT_H(OUT_H), .OUT_W(OUT_W), .KH(KH), .KW(KW), .SH(SH), .SW(SW),
                      .PH(PH), .PW(PW), .K(K), .O(O), .PE(PE), .IN_AW(IN_AW), .OUT_AW(OUT_AW)) u_scan (
        .clk(clk), .rst(rst), .start(start), .running(running), .in_raddr(in_raddr), .v1(v1), .pad1(pad1),
        .fold0_1(fold0_1), .first1(first1), .last1(last1), .flast1(flast1), .k1(k1), .wa1(wa1), .obase1(obase1),
        .fo1(fo1)
    );

    // ---------------------------------------------------------------- stage 1: x_k, weights
    wire [Q_W-1:0] x = pad1 ? {Q_W{1'b0}} : in_rdata;
    wire [PE*WT_W-1:0] w_q;
    bmhw_rom #(.WIDTH(PE * WT_W), .DEPTH(WROM_DEPTH), .ADDR_W(WA_W), .INIT_FILE(W_FILE)) u_weights (
        .clk(clk), .addr(wa1), .data(w_q)
    );

    // ---------------------------------------------------------------- stage 2: window buffer
    reg v2, fold0_2, first2, last2, flast2;
    reg [K_W-1:0] k2;
    reg [OUT_AW-1:0] obase2;
    reg [OB_W-1:0] fo2;
    reg [Q_W-1:0] x2;
    always @(posedge clk) begin
        v2 <= !rst && v1;
        fold0_2 <= fold0_1;
        first2 <= first1;
        last2 <= last1;
        flast2 <= flast1;
        k2 <= k1;
        obase2 <= obase1;
        fo2 <= fo1;
        x2 <= x;
    end
    wire [Q_W-1:0] win_q;
    bmhw_ram #(.WIDTH(Q_W), .DEPTH(K), .ADDR_W(K_W), .WRITE_FIRST(1)) u_window (
        .clk(clk), .we(v2 && fold0_2), .waddr(k2), .wdata(x2), .raddr(k1), .rdata(win_q)
    );
    wire [Q_W-1:0] x_step = fold0_2 ? x2 : win_q;

    // ---------------------------------------------------------------- stage 2b: registered PE inputs
    reg v2b, first2b, last2b, flast2b;
    reg [OUT_AW-1:0] obase2b;
    reg [OB_W-1:0] fo2b;
    reg [Q_W-1:0] x_r;
    reg [PE*WT_W-1:0] w_r;
    always @(posedge clk) begin
        v2b <= !rst && v2;
        first2b <= first2;
        last2b <= last2;
        flast2b <= flast2;
        obase2b <= obase2;
        fo2b <= fo2;
        x_r <= x_step;
        w_r <= w_q;
    end
    wire [PE*ACC_W-1:0] acc_all;
    bmhw_mac_array #(.PE(PE), .X_W(Q_W), .WT_W(WT_W), .ACC_W(ACC_W)) u_pes (
        .clk(clk), .en(v2b), .first(first2b), .x(x_r), .w(w_r), .acc(acc_all)
    );

    // ---------------------------------------------------------------- stage 3: hold the sums of a fold
    reg v3, flast3;
    reg [OUT_AW-1:0] obase3;
    reg [OB_W-1:0] fo3;
    always @(posedge clk) begin
        v3 <= !rst && v2b && last2b;
        flast3 <= flast2b;
        obase3 <= obase2b;
        fo3 <= fo2b;
    end

    // ---------------------------------------------------------------- output stage a: one held sum per cycle
    wire post_active;
    wire [ACC_W-1:0] post_acc;
    wire [OB_W-1:0] post_o;
    wire [OUT_AW-1:0] post_addr;
    bmhw_fold_drain #(.PE(PE), .D_W(ACC_W), .O(O), .POSITIONS(POSITIONS), .OUT_AW(OUT_AW)) u_drain (
        .clk(clk), .rst(rst), .load(v3), .last_fold(flast3), .base_addr(obase3), .base_o(fo3), .values(acc_all),
        .active(post_active), .value(post_acc), .o(post_o), .addr(post_addr)
    );
    wire [B_W-1:0] b_q;
    bmhw_rom #(.WIDTH(B_W), .DEPTH(BROM_DEPTH), .ADDR_W(OB_W), .INIT_FILE(B_FILE)) u_bias (
        .clk(clk), .addr(post_o), .data(b_q)
    );

    // ---------------------------------------------------------------- output stage b: the bias arrives
    reg vb;
    reg [OUT_AW-1:0] addr_b;
    reg [ACC_W-1:0] acc_b;
    always @(posedge clk) begin
        vb <= !rst && post_active;
        addr_b <= post_addr;
        acc_b <= post_acc;
    end
    wire [Y_W-1:0] acc_y, b_y;
    bmhw_extend #(.IN_W(ACC_W), .OUT_W(Y_W), .SIGNED(1)) u_accy (.in(acc_b), .out(acc_y));
    bmhw_extend #(.IN_W(B_W), .OUT_W(Y_W), .SIGNED(1)) u_by (.in(b_q), .out(b_y));

    // ---------------------------------------------------------------- output stage c: requantize, write
    reg [Y_W-1:0] y_c;
    always @(posedge clk) begin
        out_we <= !rst && vb;
        out_waddr <= addr_b;
        y_c <= acc_y + b_y;
    end
    generate
        if (RELU != 0) begin : g_relu
            bmhw_requantize #(.Y_W(Y_W), .OUT_SHIFT(OUT_SHIFT), .YR_W(YR_W), .A(OUT_D)) u_requant (
                .y(y_c), .q(out_wdata)
            );
        end else begin : g_logits
            assign out_wdata = y_c;
        end
    endgenerate

    // ---------------------------------------------------------------- done: one pulse once all is written
    wire busy = running || v1 || v2 || v2b || v3 || post_active || vb || out_we;
    reg busy_q;
    always @(posedge clk) begin
        busy_q <= !rst && busy;
        done <= !rst && busy_q && !busy;
    end
endmodule
`default_nettype wire
