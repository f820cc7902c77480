`timescale 1ns / 1ps
`default_nettype none
// bmhw_group_exp: the exp units and group-sum accumulators of NP grouped add-max PEs (bmhw_bm_group_layer,
// docs/verilog.md, "Grouped BM layers"). `load` (one cycle after a group's last step) copies the PEs' slots
// ({valid, sign, M}, SPE per PE, PE 0's in the low bits) into a hold register, freeing the PEs for the next
// group at once; then LPC exp units (bmhw_exp_shift) take LPC slots per cycle, ROWS = NP * SPE / LPC cycles
// in all. The export keeps ROWS <= the shortest group, so a hold is always drained before the next load:
// the PEs never stall. Each PE's accumulator sums the signed terms +-E of its non-empty pairs (an empty one
// adds 0) at D_W bits, the proven width of D and of every partial sum (modulo 2^D_W the sum is exact, and its
// value fits); the first slot of a fold's first group (`grp0`) restarts it. The sum of a group loaded at
// cycle t is complete in `d` from cycle t + ROWS + 5 until the next fold's first term arrives (the export's
// delay line reads it then).
module bmhw_group_exp #(
    parameter integer NP = 1,
    parameter integer SPE = 1,
    parameter integer LPC = 1,
    parameter integer M_W = 16,
    parameter integer F = 10,
    parameter integer EXP_W = 17,
    parameter integer IMIN = 0,
    parameter integer L_W = 1,
    parameter integer LMAX = 0,
    parameter integer RS = 1,
    parameter integer E_W = 17,
    parameter integer D_W = 20,
    parameter EXP_FILE = ""
) (
    input  wire                        clk,
    input  wire                        rst,
    input  wire                        load,
    input  wire                        grp0,
    input  wire [NP*SPE*(M_W+2)-1:0]   slots,
    output wire [NP*D_W-1:0]           d,
    output wire                        busy
);
    localparam integer SLOT_W = M_W + 2;
    localparam integer ROWS = NP * SPE / LPC;
    localparam integer ROW_W = ROWS > 1 ? $clog2(ROWS) : 1;
    localparam integer CNT_W = $clog2(ROWS + 1);
    localparam [CNT_W-1:0] ROW_COUNT = ROWS[CNT_W-1:0];
    localparam integer LAT = 4;  // bmhw_exp_shift's pipeline
    localparam integer TAG_W = ROW_W + 1 + 2 * LPC;

    // ---------------------------------------------------------------- hold, then LPC slots per cycle
    reg [NP*SPE*SLOT_W-1:0] hold;
    reg [CNT_W-1:0] left;
    reg [ROW_W-1:0] row;
    reg grp0_h;
    wire active = left != {CNT_W{1'b0}};
    always @(posedge clk) begin
        if (rst) begin
            left <= {CNT_W{1'b0}};
        end else if (load) begin
            hold <= slots;
            left <= ROW_COUNT;
            row <= {ROW_W{1'b0}};
            grp0_h <= grp0;
        end else if (active) begin
            hold <= hold >> (LPC * SLOT_W);
            left <= left - 1'b1;
            row <= row + 1'b1;
        end
    end

    // ---------------------------------------------------------------- exp units; tags follow their pipeline
    wire [LPC-1:0] lane_v, lane_s;
    wire [LPC*E_W-1:0] lane_e;
    genvar l;
    generate
        for (l = 0; l < LPC; l = l + 1) begin : g_lane
            wire [SLOT_W-1:0] slot = hold[l*SLOT_W +: SLOT_W];
            assign lane_v[l] = slot[M_W+1];
            assign lane_s[l] = slot[M_W];
            wire [E_W-1:0] e_l;
            bmhw_exp_shift #(.M_W(M_W), .F(F), .EXP_W(EXP_W), .IMIN(IMIN), .L_W(L_W), .LMAX(LMAX), .RS(RS), .E_W(E_W),
                             .EXP_FILE(EXP_FILE)) u_exp (.clk(clk), .m(slot[M_W-1:0]), .e(e_l));
            assign lane_e[l*E_W +: E_W] = e_l;
        end
    endgenerate
    reg [LAT-1:0] v_t;
    always @(posedge clk) v_t <= rst ? {LAT{1'b0}} : {v_t[LAT-2:0], active};
    wire ve = v_t[LAT-1];
    wire [TAG_W-1:0] tag_e;
    bmhw_delay #(.W(TAG_W), .N(LAT)) u_tags (.clk(clk), .in({row, grp0_h, lane_s, lane_v}), .out(tag_e));
    wire [LPC-1:0] v_e = tag_e[LPC-1:0];
    wire [LPC-1:0] s_e = tag_e[2*LPC-1:LPC];
    wire grp0_e = tag_e[2*LPC];
    wire [ROW_W-1:0] row_e = tag_e[TAG_W-1:2*LPC+1];

    // The signed term of each lane at D_W bits: +-E, or 0 for an empty pair.
    wire [LPC*D_W-1:0] terms;
    generate
        for (l = 0; l < LPC; l = l + 1) begin : g_term
            // E's natural width may exceed D_W; its value never does (D's range bounds every term).
            /* verilator lint_off UNUSEDSIGNAL */
            wire [E_W+D_W-1:0] e_x = {{D_W{1'b0}}, lane_e[l*E_W +: E_W]};
            /* verilator lint_on UNUSEDSIGNAL */
            wire [D_W-1:0] e_d = e_x[D_W-1:0];
            assign terms[l*D_W +: D_W] = !v_e[l] ? {D_W{1'b0}} : s_e[l] ? -e_d : e_d;
        end
    endgenerate

    // ---------------------------------------------------------------- one accumulator per PE
    genvar p;
    generate
        for (p = 0; p < NP; p = p + 1) begin : g_acc
            // The PE's slots p * SPE (positive pair) and p * SPE + SPE - 1: their rows and lanes.
            localparam integer R0 = (p * SPE) / LPC;
            localparam integer R1 = (p * SPE + SPE - 1) / LPC;
            localparam integer L0 = (p * SPE) % LPC;
            localparam integer L1 = (p * SPE + SPE - 1) % LPC;
            localparam [ROW_W-1:0] R0_V = R0[ROW_W-1:0];
            localparam [ROW_W-1:0] R1_V = R1[ROW_W-1:0];
            wire at0 = row_e == R0_V;
            wire at1 = row_e == R1_V;
            wire [D_W-1:0] t0 = at0 ? terms[L0*D_W +: D_W] : {D_W{1'b0}};
            wire [D_W-1:0] t1 = (SPE > 1 && at1) ? terms[L1*D_W +: D_W] : {D_W{1'b0}};
            reg [D_W-1:0] acc;
            always @(posedge clk) begin
                if (ve && (at0 || at1)) acc <= ((grp0_e && at0) ? {D_W{1'b0}} : acc) + t0 + t1;
            end
            assign d[p*D_W +: D_W] = acc;
        end
    endgenerate

    assign busy = active || (|v_t);
endmodule
`default_nettype wire
