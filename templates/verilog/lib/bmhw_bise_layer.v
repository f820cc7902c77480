`timescale 1ns / 1ps
`default_nettype none
// bmhw_bise_layer: one binarised BiSE layer (docs/datapath.md, "The BiSE layer"): C[o] = the number of
// true literals l_k = x_k XOR NEG[o, k] inside the structuring element SE[o]; hidden layers output
// C >= TH[o] (TH = 1: dilation, an OR; TH = |S_o|: erosion, an AND), the last layer (SCORES) C itself.
// With BINARIZE the layer reads the image codes (Q_W bits) and binarises them on the fly, x = q >= THRESH
// (the network's `binarize` op, folded into the first layer); otherwise it reads 1-bit codes. Zero padding
// reads x = 0 (its literal is NEG).
//
// The same architecture as bmhw_mac_layer (identical control, buffers and parallelism): the schedule and
// window addresses of bmhw_layer_scan, a K-entry window buffer of input bits for the later folds, PE
// popcount PEs fed from registered inputs, a hold register and a serial output stage (bmhw_fold_drain).
//   stage 1  x_k arrives (binarised); the SE / NEG ROM is read at (fold, k);
//   stage 2  x_k (first fold, also written into the window buffer) or the window buffer's copy;
//   stage 2b x_k and the PE table bits of the step registered, then the BiSE PEs;
//   stage 3  after the last k of a fold the PE counts go to the hold register;
//   output   one held count per cycle: threshold ROM, comparison (or the score), write.
// Cycles from `start` to `done`: POSITIONS * FOLDS * K + (outputs in the last fold) + 8 (docs/verilog.md).
module bmhw_bise_layer #(
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
    parameter integer Q_W = 1,
    parameter integer BINARIZE = 0,
    parameter integer THRESH = 128,
    parameter integer ACC_W = 4,
    parameter integer SCORES = 0,
    parameter integer OUT_D = 1,
    parameter W_FILE = "",
    parameter T_FILE = ""
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

    // ---------------------------------------------------------------- stage 1: x_k (binarised), table bits
    wire xb;
    generate
        if (BINARIZE != 0) begin : g_bin
            /* verilator lint_off WIDTHTRUNC */
            localparam [Q_W:0] TH_X = THRESH;  // THRESH <= 2^Q_W
            /* verilator lint_on WIDTHTRUNC */
            assign xb = !pad1 && ({1'b0, in_rdata} >= TH_X);
        end else begin : g_bit
            /* verilator lint_off UNUSEDSIGNAL */
            wire [Q_W-1:0] in_unused = in_rdata;  // 1-bit codes: only bit 0 is used
            /* verilator lint_on UNUSEDSIGNAL */
            assign xb = !pad1 && in_rdata[0];
        end
    endgenerate
    wire [PE*2-1:0] w_q;
    bmhw_rom #(.WIDTH(PE * 2), .DEPTH(WROM_DEPTH), .ADDR_W(WA_W), .INIT_FILE(W_FILE)) u_tables (
        .clk(clk), .addr(wa1), .data(w_q)
    );

    // ---------------------------------------------------------------- stage 2: window buffer
    reg v2, fold0_2, first2, last2, flast2;
    reg [K_W-1:0] k2;
    reg [OUT_AW-1:0] obase2;
    reg [OB_W-1:0] fo2;
    reg x2;
    always @(posedge clk) begin
        v2 <= !rst && v1;
        fold0_2 <= fold0_1;
        first2 <= first1;
        last2 <= last1;
        flast2 <= flast1;
        k2 <= k1;
        obase2 <= obase1;
        fo2 <= fo1;
        x2 <= xb;
    end
    wire win_q;
    bmhw_ram #(.WIDTH(1), .DEPTH(K), .ADDR_W(K_W), .WRITE_FIRST(1)) u_window (
        .clk(clk), .we(v2 && fold0_2), .waddr(k2), .wdata(x2), .raddr(k1), .rdata(win_q)
    );
    wire x_step = fold0_2 ? x2 : win_q;

    // ---------------------------------------------------------------- stage 2b: registered PE inputs
    reg v2b, first2b, last2b, flast2b;
    reg [OUT_AW-1:0] obase2b;
    reg [OB_W-1:0] fo2b;
    reg x_r;
    reg [PE*2-1:0] w_r;
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
    bmhw_bise_array #(.PE(PE), .ACC_W(ACC_W)) u_pes (
        .clk(clk), .en(v2b), .first(first2b), .x(x_r), .w(w_r), .acc(acc_all)
    );

    // ---------------------------------------------------------------- stage 3: hold the counts of a fold
    reg v3, flast3;
    reg [OUT_AW-1:0] obase3;
    reg [OB_W-1:0] fo3;
    always @(posedge clk) begin
        v3 <= !rst && v2b && last2b;
        flast3 <= flast2b;
        obase3 <= obase2b;
        fo3 <= fo2b;
    end

    // ---------------------------------------------------------------- output stage a: one held count per cycle
    wire post_active;
    wire [ACC_W-1:0] post_acc;
    wire [OB_W-1:0] post_o;
    wire [OUT_AW-1:0] post_addr;
    bmhw_fold_drain #(.PE(PE), .D_W(ACC_W), .O(O), .POSITIONS(POSITIONS), .OUT_AW(OUT_AW)) u_drain (
        .clk(clk), .rst(rst), .load(v3), .last_fold(flast3), .base_addr(obase3), .base_o(fo3), .values(acc_all),
        .active(post_active), .value(post_acc), .o(post_o), .addr(post_addr)
    );

    // ---------------------------------------------------------------- output stage b: the threshold arrives
    reg vb;
    reg [OUT_AW-1:0] addr_b;
    reg [ACC_W-1:0] acc_b;
    always @(posedge clk) begin
        vb <= !rst && post_active;
        addr_b <= post_addr;
        acc_b <= post_acc;
    end

    // ---------------------------------------------------------------- output stage c: compare (or the score), write
    reg [OUT_D-1:0] y_c;
    generate
        if (SCORES != 0) begin : g_scores
            /* verilator lint_off UNUSEDSIGNAL */
            wire [OB_W-1:0] o_unused = post_o;  // the scores need no threshold
            /* verilator lint_on UNUSEDSIGNAL */
            wire [OUT_D-1:0] score;
            bmhw_extend #(.IN_W(ACC_W), .OUT_W(OUT_D), .SIGNED(0)) u_score (.in(acc_b), .out(score));
            always @(posedge clk) y_c <= score;
        end else begin : g_threshold
            wire [ACC_W-1:0] th_q;
            bmhw_rom #(.WIDTH(ACC_W), .DEPTH(BROM_DEPTH), .ADDR_W(OB_W), .INIT_FILE(T_FILE)) u_threshold (
                .clk(clk), .addr(post_o), .data(th_q)
            );
            wire above = acc_b >= th_q;
            wire [OUT_D-1:0] above_x;
            bmhw_extend #(.IN_W(1), .OUT_W(OUT_D), .SIGNED(0)) u_above (.in(above), .out(above_x));
            always @(posedge clk) y_c <= above_x;
        end
    endgenerate
    always @(posedge clk) begin
        out_we <= !rst && vb;
        out_waddr <= addr_b;
    end
    assign out_wdata = y_c;

    // ---------------------------------------------------------------- done: one pulse once all is written
    wire busy = running || v1 || v2 || v2b || v3 || post_active || vb || out_we;
    reg busy_q;
    always @(posedge clk) begin
        busy_q <= !rst && busy;
        done <= !rst && busy_q && !busy;
    end
endmodule
`default_nettype wire
