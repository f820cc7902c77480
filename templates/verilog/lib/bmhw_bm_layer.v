`timescale 1ns / 1ps
`default_nettype none
// bmhw_bm_layer: one 1.5-branch BM layer (convolution or fully connected) of docs/datapath.md.
//
// Schedule (bmhw_layer_scan, shared with the MAC twin's bmhw_mac_layer): for each output position (raster
// order), for each fold of PE output channels, for each k of the patch (channel, kernel row, kernel
// column): one step per cycle, never stalling.
//   stage 0  window address generator: the address of input code x_k in the previous layer's buffer
//            (zero padding is flagged, not read);
//   stage 1  x_k arrives; the ln LUT is read at x_k; the input sum S accumulates x_k (first fold);
//            the weight ROM is read at (fold, k) and the window buffer at k;
//   stage 2  LN[x_k] (first fold, also written into the window buffer) or the window buffer's copy
//            (later folds) is chosen; with the PE weights of the step it is registered (stage 2b) and
//            goes to the PE array;
//   stage 3  after the last k of a fold the PE maxima are copied into a hold register, freeing the
//            array for the next fold at once (bmhw_fold_drain).
// A serial output stage then takes the held maxima (of the existing outputs) one per cycle: exp LUT and shift, Y = E - C + B,
// requantization (or the logits themselves), and the write into this layer's output buffer. It needs
// PE cycles per fold, hidden behind the K cycles of the next fold (the export keeps PE <= K).
// A linear layer is the convolution with IN_H = IN_W = KH = KW = 1 (K input channels).
// Cycles from `start` to `done`: POSITIONS * FOLDS * K + (outputs in the last fold) + 11 (docs/verilog.md).
module bmhw_bm_layer #(
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
    parameter integer NEG = 0,  // 1: the bias ROM's top bit marks a mirrored output, Y = -(E - C) + B
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
    localparam integer EXP_LATENCY = 4;  // bmhw_exp_shift's pipeline

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

    // ---------------------------------------------------------------- stage 1: x_k, ln LUT, S, weights
    wire [Q_W-1:0] x = pad1 ? {Q_W{1'b0}} : in_rdata;

    reg [S_W-1:0] s;
    wire [S_W-1:0] x_s;
    bmhw_extend #(.IN_W(Q_W), .OUT_W(S_W), .SIGNED(0)) u_xs (.in(x), .out(x_s));
    always @(posedge clk) begin
        if (v1 && fold0_1) s <= first1 ? x_s : s + x_s;
    end

    wire [LN_W-1:0] ln_q, win_q;
    wire [PE*WT_W-1:0] w_q;
    bmhw_rom #(.WIDTH(LN_W), .DEPTH(1 << Q_W), .ADDR_W(Q_W), .INIT_FILE(LN_FILE)) u_ln_lut (
        .clk(clk), .addr(x), .data(ln_q)
    );
    bmhw_rom #(.WIDTH(PE * WT_W), .DEPTH(WROM_DEPTH), .ADDR_W(WA_W), .INIT_FILE(W_FILE)) u_weights (
        .clk(clk), .addr(wa1), .data(w_q)
    );

    // ---------------------------------------------------------------- stage 2: PE array, window buffer
    reg v2, fold0_2, first2, last2, flast2;
    reg [K_W-1:0] k2;
    reg [OUT_AW-1:0] obase2;
    reg [OB_W-1:0] fo2;
    always @(posedge clk) begin
        v2 <= !rst && v1;
        fold0_2 <= fold0_1;
        first2 <= first1;
        last2 <= last1;
        flast2 <= flast1;
        k2 <= k1;
        obase2 <= obase1;
        fo2 <= fo1;
    end
    bmhw_ram #(.WIDTH(LN_W), .DEPTH(K), .ADDR_W(K_W), .WRITE_FIRST(1)) u_window (
        .clk(clk), .we(v2 && fold0_2), .waddr(k2), .wdata(ln_q), .raddr(k1), .rdata(win_q)
    );
    wire [LN_W-1:0] ln = fold0_2 ? ln_q : win_q;
    // The correction of the patch: its input sum is complete at the last step of the first fold.
    wire [C_W-1:0] c_value;
    bmhw_correction #(.S_W(S_W), .SC_W(SC_W), .CSUM(CSUM), .H(H), .C_W(C_W)) u_correction (.s(s), .c(c_value));

    // ---------------------------------------------------------------- stage 2b: registered PE inputs
    // The table outputs (block RAM on an FPGA, slow to leave) are registered before the PE's adder.
    reg v2b, fold0_2b, first2b, last2b, flast2b;
    reg [OUT_AW-1:0] obase2b;
    reg [OB_W-1:0] fo2b;
    reg [LN_W-1:0] ln_r;
    reg [PE*WT_W-1:0] w_r;
    reg [C_W-1:0] c_2b;
    always @(posedge clk) begin
        v2b <= !rst && v2;
        fold0_2b <= fold0_2;
        first2b <= first2;
        last2b <= last2;
        flast2b <= flast2;
        obase2b <= obase2;
        fo2b <= fo2;
        ln_r <= ln;
        w_r <= w_q;
        c_2b <= c_value;
    end
    wire [PE*M_W-1:0] m_all;
    bmhw_pe_array #(.PE(PE), .LN_W(LN_W), .WT_W(WT_W), .M_W(M_W)) u_pes (
        .clk(clk), .en(v2b), .first(first2b), .ln(ln_r), .w(w_r), .m(m_all)
    );
    reg [C_W-1:0] c_patch;
    always @(posedge clk) begin
        if (v2b && fold0_2b && last2b) c_patch <= c_2b;
    end

    // ---------------------------------------------------------------- stage 3: hold the maxima of a fold
    reg v3, flast3;
    reg [OUT_AW-1:0] obase3;
    reg [OB_W-1:0] fo3;
    always @(posedge clk) begin
        v3 <= !rst && v2b && last2b;
        flast3 <= flast2b;
        obase3 <= obase2b;
        fo3 <= fo2b;
    end

    // ---------------------------------------------------------------- output stage a: one held maximum per cycle
    wire post_active;
    wire [M_W-1:0] post_m;
    wire [OB_W-1:0] post_o;
    wire [OUT_AW-1:0] post_addr;
    bmhw_fold_drain #(.PE(PE), .D_W(M_W), .O(O), .POSITIONS(POSITIONS), .OUT_AW(OUT_AW)) u_drain (
        .clk(clk), .rst(rst), .load(v3), .last_fold(flast3), .base_addr(obase3), .base_o(fo3), .values(m_all),
        .active(post_active), .value(post_m), .o(post_o), .addr(post_addr)
    );
    reg [C_W-1:0] post_c;
    always @(posedge clk) begin
        if (v3) post_c <= c_patch;
    end

    wire [E_W-1:0] e;
    bmhw_exp_shift #(.M_W(M_W), .F(F), .EXP_W(EXP_W), .IMIN(IMIN), .LMAX(LMAX), .RS(RS), .E_W(E_W),
                     .EXP_FILE(EXP_FILE)) u_exp (.clk(clk), .m(post_m), .e(e));
    localparam integer BR_W = B_W + (NEG != 0 ? 1 : 0);
    wire [BR_W-1:0] b_q;
    bmhw_rom #(.WIDTH(BR_W), .DEPTH(BROM_DEPTH), .ADDR_W(OB_W), .INIT_FILE(B_FILE)) u_bias (
        .clk(clk), .addr(post_o), .data(b_q)
    );

    // ---------------------------------------------------------------- output stage b: Y = (+/-)(E - C) + B
    // E arrives EXP_LATENCY cycles after stage a; the tags and the bias follow it through delay lines.
    reg [EXP_LATENCY-1:0] v_exp;
    always @(posedge clk) v_exp <= rst ? {EXP_LATENCY{1'b0}} : {v_exp[EXP_LATENCY-2:0], post_active};
    wire vb = v_exp[EXP_LATENCY-1];
    wire [OUT_AW-1:0] addr_b;
    wire [C_W-1:0] c_b;
    wire [BR_W-1:0] b_d;
    bmhw_delay #(.W(OUT_AW), .N(EXP_LATENCY)) u_addr_d (.clk(clk), .in(post_addr), .out(addr_b));
    bmhw_delay #(.W(C_W), .N(EXP_LATENCY)) u_c_d (.clk(clk), .in(post_c), .out(c_b));
    bmhw_delay #(.W(BR_W), .N(EXP_LATENCY - 1)) u_b_d (.clk(clk), .in(b_q), .out(b_d));
    wire neg_b = (NEG != 0) ? b_d[BR_W-1] : 1'b0;
    wire [Y_W-1:0] e_y, c_y, b_y;
    bmhw_extend #(.IN_W(E_W), .OUT_W(Y_W), .SIGNED(0)) u_ey (.in(e), .out(e_y));
    bmhw_extend #(.IN_W(C_W), .OUT_W(Y_W), .SIGNED(0)) u_cy (.in(c_b), .out(c_y));
    bmhw_extend #(.IN_W(B_W), .OUT_W(Y_W), .SIGNED(1)) u_by (.in(b_d[B_W-1:0]), .out(b_y));

    // ---------------------------------------------------------------- output stage c: requantize, write
    reg [Y_W-1:0] y_c;
    always @(posedge clk) begin
        out_we <= !rst && vb;
        out_waddr <= addr_b;
        y_c <= (neg_b ? c_y - e_y : e_y - c_y) + b_y;
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
    wire busy = running || v1 || v2 || v2b || v3 || post_active || (|v_exp) || out_we;
    reg busy_q;
    always @(posedge clk) begin
        busy_q <= !rst && busy;
        done <= !rst && busy_q && !busy;
    end
endmodule
`default_nettype wire
