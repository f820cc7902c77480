`timescale 1ns / 1ps
`default_nettype none
// bmhw_rom: a lookup table with a registered read, initialised from a hex file (one entry per line,
// two's complement at WIDTH bits). The ln table, the exp table, the weights and the biases are ROMs.
// INIT_FILE is relative to the folder the simulator or synthesis tool runs in (the project folder).
module bmhw_rom #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 16,
    parameter integer ADDR_W = 4,
    parameter INIT_FILE = ""
) (
    input  wire              clk,
    input  wire [ADDR_W-1:0] addr,
    output reg  [WIDTH-1:0]  data
);
    // A table of at most LOGIC_BITS bits (an eighth of an 18-kbit block RAM: the ln and exp tables, small
    // weight and bias tables) is built from LUTs, where a block RAM would stay seven eighths empty.
    localparam integer LOGIC_BITS = 2304;

    generate
        if (WIDTH * DEPTH <= LOGIC_BITS) begin : g_logic
            (* rom_style = "logic" *) reg [WIDTH-1:0] mem [0:DEPTH-1];
            if (INIT_FILE != "") begin : g_init
                initial $readmemh(INIT_FILE, mem);
            end
            always @(posedge clk) data <= mem[addr];
        end else begin : g_block
            reg [WIDTH-1:0] mem [0:DEPTH-1];
            // The guard keeps tools that elaborate the module with its default parameters quiet.
            if (INIT_FILE != "") begin : g_init
                initial $readmemh(INIT_FILE, mem);
            end
            always @(posedge clk) data <= mem[addr];
        end
    endgenerate
endmodule
`default_nettype wire
