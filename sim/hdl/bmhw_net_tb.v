`timescale 1ns / 1ps
`default_nettype none
// bmhw_net_tb: the simulation harness around a generated bmhw_net, so that Python never wakes on a
// clock edge. The clock is generated here (Verilator --timing), 10 ns a cycle: simulated time only labels
// the cycles; throughput is computed from cycle counts at the clock the user states. The cocotb driver writes one image's codes into `image` and raises `image_count`; the
// source streams them into the accelerator (one beat per cycle, or with pseudo-random gaps when
// IN_GAPS = 1); the sink takes each result (with pseudo-random back-pressure when OUT_STALLS = 1),
// keeps it in result_* and pulses `result_strobe`, which is the monitor's one wake-up per image.
module bmhw_net_tb #(
    parameter integer IN_SIZE = 784,
    parameter integer IN_BITS = 8,
    parameter integer LOGITS_W = 210,
    parameter integer CLASS_W = 4,
    parameter integer COUNTER_W = 32,
    parameter integer IN_GAPS = 0,
    parameter integer OUT_STALLS = 0
) ();
    reg clk /* verilator public */;
    initial begin
        clk = 1'b0;
        forever #5 clk = ~clk;
    end
    reg rst /* verilator public */ = 1'b1;
    reg [31:0] image_count /* verilator public */ = 32'd0;  // images handed over by the driver
    reg [IN_BITS-1:0] image [0:IN_SIZE-1] /* verilator public */;

    // ------------------------------------------------------------------ source
    reg [31:0] sent;  // images fully streamed
    localparam integer IN_AW = IN_SIZE > 1 ? $clog2(IN_SIZE) : 1;
    localparam integer IN_LAST_I = IN_SIZE - 1;
    localparam [IN_AW-1:0] IN_LAST = IN_LAST_I[IN_AW-1:0];
    reg [IN_AW-1:0] beat;
    reg [15:0] lfsr;
    wire gap = IN_GAPS != 0 && lfsr[0] && lfsr[3];
    wire stall = OUT_STALLS != 0 && lfsr[5] && lfsr[9];
    wire in_valid = !rst && sent != image_count && !gap;
    wire in_ready;
    wire [IN_BITS-1:0] in_data = image[beat];
    always @(posedge clk) begin
        lfsr <= rst ? 16'hace1 : {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};
        if (rst) begin
            sent <= 32'd0;
            beat <= {IN_AW{1'b0}};
        end else if (in_valid && in_ready) begin
            if (beat == IN_LAST) begin
                beat <= {IN_AW{1'b0}};
                sent <= sent + 32'd1;
            end else begin
                beat <= beat + 1'b1;
            end
        end
    end

    // ------------------------------------------------------------------ accelerator
    wire out_valid;
    wire out_ready = !rst && !stall;
    wire [LOGITS_W-1:0] out_logits;
    wire [CLASS_W-1:0] out_class;
    wire [COUNTER_W-1:0] out_cycles;
    bmhw_net u_net (
        .clk(clk), .rst(rst), .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
        .out_valid(out_valid), .out_ready(out_ready), .out_logits(out_logits), .out_class(out_class),
        .out_cycles(out_cycles)
    );

    // ------------------------------------------------------------------ sink
    reg result_strobe /* verilator public */;
    reg [LOGITS_W-1:0] result_logits /* verilator public */;
    reg [CLASS_W-1:0] result_class /* verilator public */;
    reg [COUNTER_W-1:0] result_cycles /* verilator public */;
    reg [31:0] now;  // cycles since reset, for throughput
    reg [31:0] result_time /* verilator public */;
    always @(posedge clk) begin
        now <= rst ? 32'd0 : now + 32'd1;
        result_strobe <= out_valid && out_ready;
        if (out_valid && out_ready) begin
            result_logits <= out_logits;
            result_class <= out_class;
            result_cycles <= out_cycles;
            result_time <= now;
        end
    end
endmodule
`default_nettype wire
