`timescale 1ns / 1ps
`default_nettype none
// bmhw_fold_drain: the serial output stage of a layer with PE processing elements (bmhw_bm_layer,
// bmhw_mac_layer). `load` copies the PE results of a fold into a hold register, freeing the PEs for the
// next fold at once; then one held value per cycle comes out on `value` (PE 0 first) with its output
// channel `o` and its address in the output buffer `addr` (channels are POSITIONS apart), while
// `active` is high: PE values for a full fold, LAST_FOLD for the last (`last_fold`).
module bmhw_fold_drain #(
    parameter integer PE = 1,
    parameter integer D_W = 16,
    parameter integer O = 1,
    parameter integer POSITIONS = 1,
    parameter integer OUT_AW = 1,
    // Derived widths (not to be overridden): the parent layer declares the same.
    parameter integer OB_W = ((O + PE - 1) / PE) * PE > 1 ? $clog2(((O + PE - 1) / PE) * PE) : 1
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              load,
    input  wire              last_fold,
    input  wire [OUT_AW-1:0] base_addr,
    input  wire [OB_W-1:0]   base_o,
    input  wire [PE*D_W-1:0] values,
    output wire              active,
    output wire [D_W-1:0]    value,
    output reg  [OB_W-1:0]   o,
    output reg  [OUT_AW-1:0] addr
);
    localparam integer FOLDS = (O + PE - 1) / PE;
    localparam integer PE_CNT_W = $clog2(PE + 1);
    localparam [PE_CNT_W-1:0] PE_COUNT = PE[PE_CNT_W-1:0];
    localparam integer LAST_FOLD_I = O - (FOLDS - 1) * PE;  // outputs in the last fold
    localparam [PE_CNT_W-1:0] LAST_FOLD_COUNT = LAST_FOLD_I[PE_CNT_W-1:0];
    localparam [OUT_AW-1:0] POS_STEP = POSITIONS[OUT_AW-1:0];

    reg [PE*D_W-1:0] hold;
    reg [PE_CNT_W-1:0] left;
    assign active = left != {PE_CNT_W{1'b0}};
    assign value = hold[D_W-1:0];
    always @(posedge clk) begin
        if (rst) begin
            left <= {PE_CNT_W{1'b0}};
        end else if (load) begin
            hold <= values;
            left <= last_fold ? LAST_FOLD_COUNT : PE_COUNT;
            o <= base_o;
            addr <= base_addr;
        end else if (active) begin
            hold <= hold >> D_W;
            left <= left - 1'b1;
            o <= o + 1'b1;
            addr <= addr + POS_STEP;
        end
    end
endmodule
`default_nettype wire
