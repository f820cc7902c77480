`timescale 1ns / 1ps
`default_nettype none
// bmhw_maxpool: KERNEL x KERNEL max pooling with stride KERNEL, no padding, on one image's codes in
// (C, H, W) order. One input read per cycle (window by window, in output order), a running maximum,
// one write per window. Cycles from `start` to `done`: C * OUT_H * OUT_W * KERNEL^2 + 4.
module bmhw_maxpool #(
    parameter integer C = 1,
    parameter integer IN_H = 2,
    parameter integer IN_W = 2,
    parameter integer OUT_H = 1,
    parameter integer OUT_W = 1,
    parameter integer KERNEL = 2,
    parameter integer D_W = 8,
    parameter integer IN_AW = 2,
    parameter integer OUT_AW = 1
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              start,
    output reg               done,
    output wire [IN_AW-1:0]  in_raddr,
    input  wire [D_W-1:0]    in_rdata,
    output reg               out_we,
    output reg  [OUT_AW-1:0] out_waddr,
    output reg  [D_W-1:0]    out_wdata
);
    localparam integer KER_W = KERNEL > 1 ? $clog2(KERNEL) : 1;
    localparam integer OW_W = OUT_W > 1 ? $clog2(OUT_W) : 1;
    localparam integer OH_W = OUT_H > 1 ? $clog2(OUT_H) : 1;
    localparam integer C_W = C > 1 ? $clog2(C) : 1;
    localparam integer ROW_SKIP_I = IN_W - (KERNEL - 1);
    localparam integer ROW_STEP_I = KERNEL * IN_W;
    localparam integer CHAN_STEP_I = IN_H * IN_W;
    localparam [IN_AW-1:0] ROW_SKIP = ROW_SKIP_I[IN_AW-1:0];
    localparam [IN_AW-1:0] ROW_STEP = ROW_STEP_I[IN_AW-1:0];
    localparam [IN_AW-1:0] CHAN_STEP = CHAN_STEP_I[IN_AW-1:0];
    localparam [IN_AW-1:0] COL_STEP = KERNEL[IN_AW-1:0];

    reg running;
    wire issue = running;
    wire kj_first, kj_last, ki_first, ki_last, ow_last, oh_last, c_last;
    wire window_end = issue && kj_last && ki_last;
    /* verilator lint_off PINCONNECTEMPTY */
    bmhw_counter #(.N(KERNEL), .W(KER_W)) u_kj (.clk(clk), .clr(start), .en(issue), .first(kj_first), .last(kj_last));
    bmhw_counter #(.N(KERNEL), .W(KER_W)) u_ki (.clk(clk), .clr(start), .en(issue && kj_last), .first(ki_first),
                                               .last(ki_last));
    bmhw_counter #(.N(OUT_W), .W(OW_W)) u_ow (.clk(clk), .clr(start), .en(window_end), .first(), .last(ow_last));
    bmhw_counter #(.N(OUT_H), .W(OH_W)) u_oh (.clk(clk), .clr(start), .en(window_end && ow_last), .first(),
                                             .last(oh_last));
    bmhw_counter #(.N(C), .W(C_W)) u_c (.clk(clk), .clr(start), .en(window_end && ow_last && oh_last), .first(),
                                       .last(c_last));
    /* verilator lint_on PINCONNECTEMPTY */

    // Window address = base (top-left corner) + woff (offset inside the window); additions only.
    reg [IN_AW-1:0] chan_base, row_base, base, woff;
    always @(posedge clk) begin
        if (rst) running <= 1'b0;
        else if (start) running <= 1'b1;
        else if (window_end && ow_last && oh_last && c_last) running <= 1'b0;
        if (start) begin
            chan_base <= {IN_AW{1'b0}};
            row_base <= {IN_AW{1'b0}};
            base <= {IN_AW{1'b0}};
            woff <= {IN_AW{1'b0}};
        end else if (issue) begin
            if (kj_last && ki_last) woff <= {IN_AW{1'b0}};
            else if (kj_last) woff <= woff + ROW_SKIP;
            else woff <= woff + 1'b1;
            if (window_end) begin
                if (ow_last && oh_last) begin
                    chan_base <= chan_base + CHAN_STEP;
                    row_base <= chan_base + CHAN_STEP;
                    base <= chan_base + CHAN_STEP;
                end else if (ow_last) begin
                    row_base <= row_base + ROW_STEP;
                    base <= row_base + ROW_STEP;
                end else begin
                    base <= base + COL_STEP;
                end
            end
        end
    end
    assign in_raddr = base + woff;

    // Stage 1: the code arrives; keep the running maximum; write it after the window's last code.
    reg v1, first1, last1;
    reg [D_W-1:0] running_max;
    always @(posedge clk) begin
        v1 <= !rst && issue;
        first1 <= kj_first && ki_first;
        last1 <= kj_last && ki_last;
    end
    wire [D_W-1:0] window_max = (first1 || in_rdata > running_max) ? in_rdata : running_max;
    always @(posedge clk) begin
        if (v1) running_max <= window_max;
        out_we <= !rst && v1 && last1;
        out_wdata <= window_max;
        if (start) out_waddr <= {OUT_AW{1'b0}};
        else if (out_we) out_waddr <= out_waddr + 1'b1;
    end

    wire busy = running || v1 || out_we;
    reg busy_q;
    always @(posedge clk) begin
        busy_q <= !rst && busy;
        done <= !rst && busy_q && !busy;
    end
endmodule
`default_nettype wire
