`timescale 1ns / 1ps
`default_nettype none
// bmhw_bm_group_layer: a 1.5-branch BM layer with several maxima per output (docs/datapath.md, "Several
// maxima per neuron"; docs/verilog.md, "Grouped BM layers"). The schedule, window buffer, ln LUT, input sum
// and correction are bmhw_bm_layer's (bmhw_layer_scan; one step per cycle, never stalling); what differs:
//   * the weight ROM word carries, beside the PE log-weights, each weight's sign bit (SPLIT); a group-end ROM
//     of K bits marks the last step of a group (b_j = floor(j K / N), the same in every fold);
//   * the PEs emit each group's maxima (one, or one per sign with a valid bit) after its last step and
//     restart; CLUSTERS x bmhw_group_exp convert them (LPC exp units each, ROWS cycles per group, ROWS <= the
//     shortest group) and sum the signed terms into D per output;
//   * after a fold's last group, D is complete ROWS + 5 cycles later: a delay line carries the fold's tags
//     there, and bmhw_fold_drain serialises D; then Y = s (D - C) + B and the requantization as before.
// Cycles from `start` to `done`: POSITIONS * FOLDS * K + (outputs in the last fold) + 13 + ROWS.
module bmhw_bm_group_layer #(
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
    parameter integer SPLIT = 0,     // 1: weights split by sign, a sign bit per weight in the weight ROM
    parameter integer MERGE = 0,     // 1 (with SPLIT): every group is one input, one slot per group
    parameter integer SPE = 1,       // slots per PE and group: 2 with SPLIT and not MERGE
    parameter integer LPC = 1,       // exp units per cluster
    parameter integer PPL = 1,       // PEs per cluster (the last one may have fewer)
    parameter integer CLUSTERS = 1,
    parameter integer ROWS = 1,      // PPL * SPE / LPC: cycles a cluster takes per group
    parameter integer D_W = 20,
    parameter integer S_W = 16,
    parameter integer SC_W = 32,
    parameter integer H = 16,
    parameter [63:0] CSUM = 64'd1,
    parameter integer C_W = 17,
    parameter integer B_W = 16,
    parameter integer NEG = 0,  // 1: the bias ROM's top bit marks a mirrored output, Y = -(D - C) + B
    parameter integer Y_W = 20,
    parameter integer RELU = 1,
    parameter integer OUT_SHIFT = 8,
    parameter integer YR_W = 13,
    parameter integer OUT_D = 8,
    parameter LN_FILE = "",
    parameter W_FILE = "",
    parameter EXP_FILE = "",
    parameter B_FILE = "",
    parameter GL_FILE = ""
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
    localparam integer K_W = K > 1 ? $clog2(K) : 1;
    localparam integer WA_W = WROM_DEPTH > 1 ? $clog2(WROM_DEPTH) : 1;
    localparam integer OB_W = BROM_DEPTH > 1 ? $clog2(BROM_DEPTH) : 1;
    localparam integer SLOT_W = M_W + 2;
    localparam integer SG_W = SPLIT != 0 ? PE : 1;   // sign bits in the weight word (without the split, unused)
    localparam integer WW = PE * WT_W + (SPLIT != 0 ? PE : 0);
    localparam integer DL = ROWS + 5;                 // group load to complete D (bmhw_group_exp)

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
    wire [WW-1:0] w_q;
    bmhw_rom #(.WIDTH(LN_W), .DEPTH(1 << Q_W), .ADDR_W(Q_W), .INIT_FILE(LN_FILE)) u_ln_lut (
        .clk(clk), .addr(x), .data(ln_q)
    );
    bmhw_rom #(.WIDTH(WW), .DEPTH(WROM_DEPTH), .ADDR_W(WA_W), .INIT_FILE(W_FILE)) u_weights (
        .clk(clk), .addr(wa1), .data(w_q)
    );
    // 1 at the steps that end a group: the same in every fold, so K bits beside the weights, read by the step k.
    wire gl_q;
    bmhw_rom #(.WIDTH(1), .DEPTH(K), .ADDR_W(K_W), .INIT_FILE(GL_FILE)) u_group_last (
        .clk(clk), .addr(k1), .data(gl_q)
    );

    // ---------------------------------------------------------------- stage 2: window buffer
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
    wire [C_W-1:0] c_value;
    bmhw_correction #(.S_W(S_W), .SC_W(SC_W), .CSUM(CSUM), .H(H), .C_W(C_W)) u_correction (.s(s), .c(c_value));

    // ---------------------------------------------------------------- stage 2b: registered PE inputs, groups
    reg v2b, fold0_2b, first2b, last2b, flast2b;
    reg [OUT_AW-1:0] obase2b;
    reg [OB_W-1:0] fo2b;
    reg [LN_W-1:0] ln_r;
    reg [WW-1:0] w_r;
    reg gl_r;
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
        gl_r <= gl_q;
        c_2b <= c_value;
    end
    wire gend = gl_r;  // the step is its group's last
    /* verilator lint_off UNUSEDSIGNAL */
    wire [SG_W-1:0] signs = SPLIT != 0 ? w_r[WW-1 -: SG_W] : {SG_W{1'b0}};  // unused without the split
    /* verilator lint_on UNUSEDSIGNAL */
    // A group starts at a fold's first step or after a group's last; the fold's first group restarts the sums.
    reg gend_prev, g0;
    wire gfirst = first2b || gend_prev;
    wire in_g0 = first2b || g0;
    always @(posedge clk) begin
        if (v2b) begin
            gend_prev <= gend;
            g0 <= in_g0 && !gend;
        end
    end

    wire [PE*SPE*SLOT_W-1:0] slots;
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            if (SPLIT != 0) begin : g_split
                bmhw_addmax_group_pe #(.LN_W(LN_W), .WT_W(WT_W), .M_W(M_W), .MERGE(MERGE)) u_pe (
                    .clk(clk), .en(v2b), .gfirst(gfirst), .ln(ln_r), .w(w_r[p*WT_W +: WT_W]), .neg(signs[p]),
                    .slots(slots[p*SPE*SLOT_W +: SPE*SLOT_W])
                );
            end else begin : g_one
                // Without the split every group is one non-empty positive pair: the plain PE, restarted per group.
                wire signed [M_W-1:0] m_p;
                bmhw_addmax_pe #(.LN_W(LN_W), .WT_W(WT_W), .M_W(M_W)) u_pe (
                    .clk(clk), .en(v2b), .first(gfirst), .ln(ln_r), .w(w_r[p*WT_W +: WT_W]), .m(m_p)
                );
                assign slots[p*SLOT_W +: SLOT_W] = {2'b10, m_p};
            end
        end
    endgenerate
    reg [C_W-1:0] c_patch;
    always @(posedge clk) begin
        if (v2b && fold0_2b && last2b) c_patch <= c_2b;
    end

    // ---------------------------------------------------------------- stage 3: a group's maxima to the exp units
    reg v3, grp0_3, last3, flast3;
    reg [OUT_AW-1:0] obase3;
    reg [OB_W-1:0] fo3;
    always @(posedge clk) begin
        v3 <= !rst && v2b && gend;
        grp0_3 <= in_g0;
        last3 <= last2b;
        flast3 <= flast2b;
        obase3 <= obase2b;
        fo3 <= fo2b;
    end
    wire [PE*D_W-1:0] d_all;
    wire [CLUSTERS-1:0] cl_busy;
    genvar u;
    generate
        for (u = 0; u < CLUSTERS; u = u + 1) begin : g_cluster
            localparam integer NP = (u == CLUSTERS - 1) ? PE - (CLUSTERS - 1) * PPL : PPL;
            bmhw_group_exp #(.NP(NP), .SPE(SPE), .LPC(LPC), .M_W(M_W), .F(F), .EXP_W(EXP_W), .IMIN(IMIN),
                             .LMAX(LMAX), .RS(RS), .E_W(E_W), .D_W(D_W), .EXP_FILE(EXP_FILE)) u_exp (
                .clk(clk), .rst(rst), .load(v3), .grp0(grp0_3),
                .slots(slots[u*PPL*SPE*SLOT_W +: NP*SPE*SLOT_W]), .d(d_all[u*PPL*D_W +: NP*D_W]), .busy(cl_busy[u])
            );
        end
    endgenerate

    // ---------------------------------------------------------------- the fold's tags wait for its D
    reg [DL-1:0] v_dl;
    always @(posedge clk) v_dl <= rst ? {DL{1'b0}} : {v_dl[DL-2:0], v3 && last3};
    wire dload = v_dl[DL-1];
    wire flast_d;
    wire [OUT_AW-1:0] obase_d;
    wire [OB_W-1:0] fo_d;
    wire [C_W-1:0] c_d;
    bmhw_delay #(.W(1 + OUT_AW + OB_W + C_W), .N(DL)) u_tags (
        .clk(clk), .in({flast3, obase3, fo3, c_patch}), .out({flast_d, obase_d, fo_d, c_d})
    );

    // ---------------------------------------------------------------- output stage a: one D per cycle
    wire post_active;
    wire [D_W-1:0] post_d;
    wire [OB_W-1:0] post_o;
    wire [OUT_AW-1:0] post_addr;
    bmhw_fold_drain #(.PE(PE), .D_W(D_W), .O(O), .POSITIONS(POSITIONS), .OUT_AW(OUT_AW)) u_drain (
        .clk(clk), .rst(rst), .load(dload), .last_fold(flast_d), .base_addr(obase_d), .base_o(fo_d),
        .values(d_all), .active(post_active), .value(post_d), .o(post_o), .addr(post_addr)
    );
    reg [C_W-1:0] post_c;
    always @(posedge clk) begin
        if (dload) post_c <= c_d;
    end
    localparam integer BR_W = B_W + (NEG != 0 ? 1 : 0);
    wire [BR_W-1:0] b_q;
    bmhw_rom #(.WIDTH(BR_W), .DEPTH(BROM_DEPTH), .ADDR_W(OB_W), .INIT_FILE(B_FILE)) u_bias (
        .clk(clk), .addr(post_o), .data(b_q)
    );

    // ---------------------------------------------------------------- output stage b: Y = (+/-)(D - C) + B
    // The bias arrives one cycle after stage a: D, C and the address wait one cycle for it.
    reg vb;
    reg [D_W-1:0] d_b;
    reg [C_W-1:0] c_b;
    reg [OUT_AW-1:0] addr_b;
    always @(posedge clk) begin
        vb <= !rst && post_active;
        d_b <= post_d;
        c_b <= post_c;
        addr_b <= post_addr;
    end
    wire neg_b = (NEG != 0) ? b_q[BR_W-1] : 1'b0;
    wire [Y_W-1:0] d_y, c_y, b_y;
    bmhw_extend #(.IN_W(D_W), .OUT_W(Y_W), .SIGNED(1)) u_dy (.in(d_b), .out(d_y));
    bmhw_extend #(.IN_W(C_W), .OUT_W(Y_W), .SIGNED(0)) u_cy (.in(c_b), .out(c_y));
    bmhw_extend #(.IN_W(B_W), .OUT_W(Y_W), .SIGNED(1)) u_by (.in(b_q[B_W-1:0]), .out(b_y));

    // ---------------------------------------------------------------- output stage c: requantize, write
    reg [Y_W-1:0] y_c;
    always @(posedge clk) begin
        out_we <= !rst && vb;
        out_waddr <= addr_b;
        y_c <= (neg_b ? c_y - d_y : d_y - c_y) + b_y;
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
    wire busy = running || v1 || v2 || v2b || v3 || (|cl_busy) || (|v_dl) || post_active || vb || out_we;
    reg busy_q;
    always @(posedge clk) begin
        busy_q <= !rst && busy;
        done <= !rst && busy_q && !busy;
    end
endmodule
`default_nettype wire
