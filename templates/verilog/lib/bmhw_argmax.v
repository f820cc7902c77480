`timescale 1ns / 1ps
`default_nettype none
// bmhw_argmax: reads the N logits of the last layer (signed, D_W bits) from its buffer, one per cycle,
// packs them side by side (logit 0 in the low bits) and finds the predicted class: the smallest index
// among the maxima (a later logit replaces the best only when strictly greater).
// Cycles from `start` to `done`: N + 2.
module bmhw_argmax #(
    parameter integer N = 10,
    parameter integer D_W = 20,
    parameter integer AW = 4
) (
    input  wire                clk,
    input  wire                rst,
    input  wire                start,
    output reg                 done,
    output reg  [AW-1:0]       raddr,
    input  wire [D_W-1:0]      rdata,
    output reg  [N*D_W-1:0]    logits,
    output reg  [AW-1:0]       class_index
);
    localparam integer N_M1 = N - 1;
    localparam [AW-1:0] LAST = N_M1[AW-1:0];

    reg running, v1, first1, last1;
    reg [AW-1:0] index1;
    reg signed [D_W-1:0] best;
    always @(posedge clk) begin
        if (rst) running <= 1'b0;
        else if (start) running <= 1'b1;
        else if (raddr == LAST) running <= 1'b0;
        if (start) raddr <= {AW{1'b0}};
        else if (running) raddr <= raddr + 1'b1;
        v1 <= !rst && running;
        first1 <= raddr == {AW{1'b0}};
        last1 <= raddr == LAST;
        index1 <= raddr;
        if (v1) begin
            logits <= {rdata, logits[N*D_W-1:D_W]};
            if (first1 || $signed(rdata) > best) begin
                best <= $signed(rdata);
                class_index <= index1;
            end
        end
        done <= !rst && v1 && last1;
    end
endmodule
`default_nettype wire
