`timescale 1ns / 1ps
`default_nettype none
// bmhw_layer_scan: the schedule and window address generator of a layer with PE processing elements,
// shared by the BM layer (bmhw_bm_layer) and the classical MAC layer (bmhw_mac_layer), so that both
// run on identical control.
//
// After `start`, one step per cycle, never stalling: for each output position (raster order), for each
// fold of PE output channels, for each k of the patch (channel, kernel row, kernel column).
//   stage 0  loop counters and the address of input code x_k in the previous layer's buffer (in_raddr;
//            zero padding is flagged, not read);
//   stage 1  registered tags of the step whose x_k arrives now on in_rdata: valid (v1), padded (pad1),
//            first fold (fold0_1), first / last k (first1, last1), last fold (flast1), k (k1), the weight
//            ROM address fold * K + k (wa1), the output address of the fold's first PE (obase1) and its
//            output channel (fo1).
// `running` is high while steps are issued. A linear layer is the convolution with
// IN_H = IN_W = KH = KW = 1 (K input channels).
module bmhw_layer_scan #(
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
    // Derived widths (not to be overridden): the parent layer declares the same.
    parameter integer K_W = K > 1 ? $clog2(K) : 1,
    parameter integer WA_W = ((O + PE - 1) / PE) * K > 1 ? $clog2(((O + PE - 1) / PE) * K) : 1,
    parameter integer OB_W = ((O + PE - 1) / PE) * PE > 1 ? $clog2(((O + PE - 1) / PE) * PE) : 1
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              start,
    output reg               running,
    output wire [IN_AW-1:0]  in_raddr,
    output reg               v1,
    output reg               pad1,
    output reg               fold0_1,
    output reg               first1,
    output reg               last1,
    output reg               flast1,
    output reg  [K_W-1:0]    k1,
    output reg  [WA_W-1:0]   wa1,
    output reg  [OUT_AW-1:0] obase1,
    output reg  [OB_W-1:0]   fo1
);
    localparam integer FOLDS = (O + PE - 1) / PE;
    localparam integer POSITIONS = OUT_H * OUT_W;
    localparam integer KW_W = KW > 1 ? $clog2(KW) : 1;
    localparam integer KH_W = KH > 1 ? $clog2(KH) : 1;
    localparam integer FOLD_W = FOLDS > 1 ? $clog2(FOLDS) : 1;
    localparam integer OW_W = OUT_W > 1 ? $clog2(OUT_W) : 1;
    localparam integer OH_W = OUT_H > 1 ? $clog2(OUT_H) : 1;
    // Signed input coordinates and addresses (padding makes them negative at the borders).
    localparam integer A_W = IN_AW + 3;
    localparam integer KOFF_ROW_I = IN_W - (KW - 1);
    localparam integer KOFF_CHAN_I = IN_H * IN_W - (KH - 1) * IN_W - (KW - 1);
    localparam integer ROW_STEP_I = SH * IN_W;
    localparam integer ROW0_I = -PH * IN_W - PW;
    localparam integer IH0_I = -PH;
    localparam integer IW0_I = -PW;
    localparam integer OUT_STEP_I = PE * POSITIONS;
    localparam [A_W-1:0] KOFF_ROW = KOFF_ROW_I[A_W-1:0];
    localparam [A_W-1:0] KOFF_CHAN = KOFF_CHAN_I[A_W-1:0];
    localparam [A_W-1:0] ROW_STEP = ROW_STEP_I[A_W-1:0];
    localparam [A_W-1:0] ROW0 = ROW0_I[A_W-1:0];
    localparam [A_W-1:0] COL_STEP = SW[A_W-1:0];
    localparam [A_W-1:0] IH0 = IH0_I[A_W-1:0];
    localparam [A_W-1:0] IW0 = IW0_I[A_W-1:0];
    localparam [A_W-1:0] IN_H_V = IN_H[A_W-1:0];
    localparam [A_W-1:0] IN_W_V = IN_W[A_W-1:0];
    localparam [A_W-1:0] SH_V = SH[A_W-1:0];
    localparam [OUT_AW-1:0] OUT_STEP = OUT_STEP_I[OUT_AW-1:0];
    localparam [OB_W-1:0] PE_V = PE[OB_W-1:0];
    localparam integer K_M1 = K - 1;
    localparam [K_W-1:0] K_LAST = K_M1[K_W-1:0];

    // ---------------------------------------------------------------- stage 0: loop counters, window address
    wire issue = running;
    wire kw_last, kh_last, k_first, k_last, fold_first, fold_last, ow_last, oh_last;
    reg [K_W-1:0] k_i;
    assign k_first = k_i == {K_W{1'b0}};
    assign k_last = k_i == K_LAST;
    wire next_position = issue && k_last && fold_last;
    /* verilator lint_off PINCONNECTEMPTY */
    bmhw_counter #(.N(KW), .W(KW_W)) u_kw (.clk(clk), .clr(start), .en(issue), .first(), .last(kw_last));
    bmhw_counter #(.N(KH), .W(KH_W)) u_kh (.clk(clk), .clr(start), .en(issue && kw_last), .first(), .last(kh_last));
    bmhw_counter #(.N(FOLDS), .W(FOLD_W)) u_fold (.clk(clk), .clr(start), .en(issue && k_last), .first(fold_first),
                                                 .last(fold_last));
    bmhw_counter #(.N(OUT_W), .W(OW_W)) u_ow (.clk(clk), .clr(start), .en(next_position), .first(), .last(ow_last));
    bmhw_counter #(.N(OUT_H), .W(OH_W)) u_oh (.clk(clk), .clr(start), .en(next_position && ow_last), .first(),
                                             .last(oh_last));
    /* verilator lint_on PINCONNECTEMPTY */

    // Everything the address needs is updated by additions only: the input coordinates of element k
    // (ih, iw) and of the patch's top-left corner (ih0, iw0), the patch's address (position, row_base)
    // and the offset of element k in_image it (koff); k (window address), the weight ROM address (wa),
    // the output channel of the fold's first PE (fold_o) and its output address (fold_base + pos_index).
    reg [A_W-1:0] ih, iw, ih0, iw0, row_base, position, koff;
    reg [WA_W-1:0] wa;
    reg [OUT_AW-1:0] pos_index, fold_base;
    reg [OB_W-1:0] fold_o;
    wire [A_W-1:0] ih0_next = (next_position && ow_last) ? ih0 + SH_V : ih0;
    wire [A_W-1:0] iw0_next = next_position ? (ow_last ? IW0 : iw0 + COL_STEP) : iw0;
    always @(posedge clk) begin
        if (rst) begin
            running <= 1'b0;
        end else if (start) begin
            running <= 1'b1;
        end else if (next_position && ow_last && oh_last) begin
            running <= 1'b0;
        end
        if (start) begin
            ih <= IH0;
            iw <= IW0;
            ih0 <= IH0;
            iw0 <= IW0;
            row_base <= ROW0;
            position <= ROW0;
            koff <= {A_W{1'b0}};
            k_i <= {K_W{1'b0}};
            wa <= {WA_W{1'b0}};
            pos_index <= {OUT_AW{1'b0}};
            fold_base <= {OUT_AW{1'b0}};
            fold_o <= {OB_W{1'b0}};
        end else if (issue) begin
            ih0 <= ih0_next;
            iw0 <= iw0_next;
            if (kw_last && kh_last) ih <= ih0_next;
            else if (kw_last) ih <= ih + 1'b1;
            iw <= kw_last ? iw0_next : iw + 1'b1;
            if (k_last) koff <= {A_W{1'b0}};
            else if (kw_last && kh_last) koff <= koff + KOFF_CHAN;
            else if (kw_last) koff <= koff + KOFF_ROW;
            else koff <= koff + 1'b1;
            k_i <= k_last ? {K_W{1'b0}} : k_i + 1'b1;
            wa <= next_position ? {WA_W{1'b0}} : wa + 1'b1;
            if (next_position) begin
                fold_base <= {OUT_AW{1'b0}};
                fold_o <= {OB_W{1'b0}};
                pos_index <= pos_index + 1'b1;
                if (ow_last) begin
                    row_base <= row_base + ROW_STEP;
                    position <= row_base + ROW_STEP;
                end else begin
                    position <= position + COL_STEP;
                end
            end else if (k_last) begin
                fold_base <= fold_base + OUT_STEP;
                fold_o <= fold_o + PE_V;
            end
        end
    end

    wire in_image = !ih[A_W-1] && ih < IN_H_V && !iw[A_W-1] && iw < IN_W_V;
    // Inside the image the address lies in [0, 2^IN_AW); the upper bits only matter at padded
    // positions, which are not read.
    /* verilator lint_off UNUSEDSIGNAL */
    wire [A_W-1:0] address = position + koff;
    /* verilator lint_on UNUSEDSIGNAL */
    assign in_raddr = address[IN_AW-1:0];

    // ---------------------------------------------------------------- stage 1: the tags of the step whose x_k arrives
    always @(posedge clk) begin
        v1 <= !rst && issue;
        pad1 <= !in_image;
        fold0_1 <= fold_first;
        first1 <= k_first;
        last1 <= k_last;
        flast1 <= fold_last;
        k1 <= k_i;
        wa1 <= wa;
        obase1 <= fold_base + pos_index;
        fo1 <= fold_o;
    end
endmodule
`default_nettype wire
