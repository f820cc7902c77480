`timescale 1ns / 1ps
`default_nettype none
// bmhw_adder_layer: one integer AdderNet layer (docs/datapath.md, "The adder layer (AdderNet)"):
// ACC[o] = sum_k |x_k - W[o, k]|, Y[o] = B[o] - MUL[o] * ACC[o], then requantization by R (hidden layers)
// or the logits.
//
// The same architecture as bmhw_mac_layer and bmhw_bm_layer (identical control, buffers and parallelism):
// the schedule and window addresses of bmhw_layer_scan, a K-entry window buffer of input codes for the
// later folds, PE processing elements fed from registered inputs, a hold register and a serial output
// stage (bmhw_fold_drain). Only the PE (subtract, absolute value, accumulate: no multiplier) and the output
// arithmetic (one multiplier shared by the PEs, MUL[o] * ACC, and one subtraction) differ.
//   stage 1  x_k arrives; the template ROM is read at (fold, k);
//   stage 2  x_k (first fold, also written into the window buffer) or the window buffer's copy;
//   stage 2b x_k and the PE templates of the step registered, then the adder PEs;
//   stage 3  after the last k of a fold the PE sums go to the hold register;
//   output   one held sum per cycle: scale and bias ROMs (a), their words arrive (b) and are registered (c),
//            the product MUL * ACC (d), Y = B - product (e), requantization, write.
// Cycles from `start` to `done`: POSITIONS * FOLDS * K + (outputs in the last fold) + 10 (docs/verilog.md).
module bmhw_adder_layer #(
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
    parameter integer WT_W = 9,
    parameter integer D_W = 10,
    parameter integer ABS_W = 9,
    parameter integer ACC_W = 16,
    parameter integer MUL_W = 16,
    parameter integer PROD_W = 32,
    parameter integer B_W = 16,
    parameter integer Y_W = 32,
    parameter integer RELU = 1,
    parameter integer OUT_SHIFT = 8,
    parameter integer YR_W = 17,
    parameter integer OUT_D = 8,
    parameter W_FILE = "",
    parameter M_FILE = "",
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

    // ---------------------------------------------------------------- stage 1: x_k, templates
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
    bmhw_adder_array #(.PE(PE), .X_W(Q_W), .WT_W(WT_W), .D_W(D_W), .ABS_W(ABS_W), .ACC_W(ACC_W)) u_pes (
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
    wire [MUL_W-1:0] m_q;
    wire [B_W-1:0] b_q;
    bmhw_rom #(.WIDTH(MUL_W), .DEPTH(BROM_DEPTH), .ADDR_W(OB_W), .INIT_FILE(M_FILE)) u_scale (
        .clk(clk), .addr(post_o), .data(m_q)
    );
    bmhw_rom #(.WIDTH(B_W), .DEPTH(BROM_DEPTH), .ADDR_W(OB_W), .INIT_FILE(B_FILE)) u_bias (
        .clk(clk), .addr(post_o), .data(b_q)
    );

    // ---------------------------------------------------------------- output stage b: the ROM words arrive
    reg vb;
    reg [OUT_AW-1:0] addr_b;
    reg [ACC_W-1:0] acc_b;
    always @(posedge clk) begin
        vb <= !rst && post_active;
        addr_b <= post_addr;
        acc_b <= post_acc;
    end

    // ---------------------------------------------------------------- output stage c: registered multiplier inputs
    // (a block RAM's output is slow to leave, so the multiplier starts from registers)
    reg vc;
    reg [OUT_AW-1:0] addr_c;
    reg [ACC_W-1:0] acc_c;
    reg [MUL_W-1:0] m_c;
    reg [B_W-1:0] b_c;
    always @(posedge clk) begin
        vc <= !rst && vb;
        addr_c <= addr_b;
        acc_c <= acc_b;
        m_c <= m_q;
        b_c <= b_q;
    end
    // The one multiplication per output: signed MUL_W x (ACC_W + 1) bits (ACC >= 0 gets a zero sign bit).
    localparam integer P_FULL = MUL_W + ACC_W + 1;
    wire signed [ACC_W:0] acc_s = {1'b0, acc_c};
    wire signed [P_FULL-1:0] product_full = $signed(m_c) * acc_s;
    wire [PROD_W-1:0] product;
    generate
        if (P_FULL > PROD_W) begin : g_cut
            /* verilator lint_off UNUSEDSIGNAL */
            wire [P_FULL-1:0] product_unused = product_full;  // the product's range is proven to fit PROD_W bits
            /* verilator lint_on UNUSEDSIGNAL */
            assign product = product_full[PROD_W-1:0];
        end else begin : g_whole
            assign product = product_full;
        end
    endgenerate

    // ---------------------------------------------------------------- output stage d: the product
    reg vd;
    reg [OUT_AW-1:0] addr_d;
    reg [PROD_W-1:0] prod_d;
    reg [B_W-1:0] b_d;
    always @(posedge clk) begin
        vd <= !rst && vc;
        addr_d <= addr_c;
        prod_d <= product;
        b_d <= b_c;
    end
    wire [Y_W-1:0] prod_y, b_y;
    bmhw_extend #(.IN_W(PROD_W), .OUT_W(Y_W), .SIGNED(1)) u_py (.in(prod_d), .out(prod_y));
    bmhw_extend #(.IN_W(B_W), .OUT_W(Y_W), .SIGNED(1)) u_by (.in(b_d), .out(b_y));

    // ---------------------------------------------------------------- output stage e: Y = B - product, requantize, write
    reg [Y_W-1:0] y_e;
    always @(posedge clk) begin
        out_we <= !rst && vd;
        out_waddr <= addr_d;
        y_e <= b_y - prod_y;
    end
    generate
        if (RELU != 0) begin : g_relu
            bmhw_requantize #(.Y_W(Y_W), .OUT_SHIFT(OUT_SHIFT), .YR_W(YR_W), .A(OUT_D)) u_requant (
                .y(y_e), .q(out_wdata)
            );
        end else begin : g_logits
            assign out_wdata = y_e;
        end
    endgenerate

    // ---------------------------------------------------------------- done: one pulse once all is written
    wire busy = running || v1 || v2 || v2b || v3 || post_active || vb || vc || vd || out_we;
    reg busy_q;
    always @(posedge clk) begin
        busy_q <= !rst && busy;
        done <= !rst && busy_q && !busy;
    end
endmodule
`default_nettype wire
