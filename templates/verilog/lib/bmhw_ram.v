`timescale 1ns / 1ps
`default_nettype none
// bmhw_ram: simple dual-port RAM with a registered read (one block RAM on an FPGA). It holds one
// layer's output codes for the next layer. WRITE_FIRST = 1 forwards a write to a read of the same
// address in the same cycle (the window buffer needs it when a patch is one element long).
module bmhw_ram #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 16,
    parameter integer ADDR_W = 4,
    parameter integer WRITE_FIRST = 0
) (
    input  wire              clk,
    input  wire              we,
    input  wire [ADDR_W-1:0] waddr,
    input  wire [WIDTH-1:0]  wdata,
    input  wire [ADDR_W-1:0] raddr,
    output reg  [WIDTH-1:0]  rdata
);
    reg [WIDTH-1:0] mem [0:DEPTH-1] /* verilator public_flat_rd */;  // read by the cocotb benches

    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        if (WRITE_FIRST != 0 && we && waddr == raddr) rdata <= wdata;
        else rdata <= mem[raddr];
    end
endmodule
`default_nettype wire
