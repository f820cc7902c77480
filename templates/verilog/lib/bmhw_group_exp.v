`timescale 1ns / 1ps
`default_nettype none
// bmhw_group_exp: the exp units and group-sum accumulators of NP grouped add-max PEs (bmhw_bm_group_layer,
// docs/verilog.md, "Grouped BM layers"). `load` (one cycle after a group's last step) copies the PEs' slots
// ({valid, sign, M}, SPE per PE, PE 0's in the low bits) into a hold register, freeing the PEs for the next
// group at once; then LPC exp units (bmhw_exp_shift) take LPC slots per cycle, ROWS = NP * SPE / LPC cycles
// in all. The export keeps ROWS <= the shortest group, so a hold is always drained before the next load:
// the PEs never stall. The signed terms +-E of each PE's non-empty pairs (an empty one adds 0) are summed at
// D_W bits, the proven width of D and of every partial sum (modulo 2^D_W the sum is exact, and its value
// fits), by one adder and a ring of NP sums; the first slot of a fold's first group (`grp0`) restarts a PE's
// sum. The sums of a group loaded at cycle t are complete in `d` from cycle t + ROWS + 5 until the next
// fold's first term arrives (the export's delay line reads them then).
module bmhw_group_exp #(
    parameter integer NP = 1,
    parameter integer SPE = 1,
    parameter integer LPC = 1,
    parameter integer M_W = 16,
    parameter integer F = 10,
    parameter integer EXP_W = 17,
    parameter integer IMIN = 0,
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
    localparam integer CNT_W = $clog2(ROWS + 1);
    localparam [CNT_W-1:0] ROW_COUNT = ROWS[CNT_W-1:0];
    localparam integer LAT = 4;  // bmhw_exp_shift's pipeline
    localparam integer TAG_W = 2 + 2 * LPC;

    // ---------------------------------------------------------------- hold, then LPC slots per cycle
    reg [NP*SPE*SLOT_W-1:0] hold;
    reg [CNT_W-1:0] left;
    reg odd;  // the row's parity: with two rows per PE, its second row
    reg grp0_h;
    wire active = left != {CNT_W{1'b0}};
    always @(posedge clk) begin
        if (rst) begin
            left <= {CNT_W{1'b0}};
        end else if (load) begin
            hold <= slots;
            left <= ROW_COUNT;
            odd <= 1'b0;
            grp0_h <= grp0;
        end else if (active) begin
            hold <= hold >> (LPC * SLOT_W);
            left <= left - 1'b1;
            odd <= !odd;
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
            bmhw_exp_shift #(.M_W(M_W), .F(F), .EXP_W(EXP_W), .IMIN(IMIN), .LMAX(LMAX), .RS(RS), .E_W(E_W),
                             .EXP_FILE(EXP_FILE)) u_exp (.clk(clk), .m(slot[M_W-1:0]), .e(e_l));
            assign lane_e[l*E_W +: E_W] = e_l;
        end
    endgenerate
    reg [LAT-1:0] v_t;
    always @(posedge clk) v_t <= rst ? {LAT{1'b0}} : {v_t[LAT-2:0], active};
    wire ve = v_t[LAT-1];
    wire [TAG_W-1:0] tag_e;
    bmhw_delay #(.W(TAG_W), .N(LAT)) u_tags (.clk(clk), .in({odd, grp0_h, lane_s, lane_v}), .out(tag_e));
    wire [LPC-1:0] v_e = tag_e[LPC-1:0];
    wire [LPC-1:0] s_e = tag_e[2*LPC-1:LPC];
    wire grp0_e = tag_e[2*LPC];
    wire odd_e = tag_e[2*LPC+1];

    // The signed term of each lane at D_W bits: +-E, or 0 for an empty pair. -E is ~E + 1: the lane gives
    // ~E and a carry into the sum (no negating adder).
    wire [LPC*D_W-1:0] terms;
    wire [LPC-1:0] carries;
    generate
        for (l = 0; l < LPC; l = l + 1) begin : g_term
            // E's natural width may exceed D_W; its value never does (D's range bounds every term).
            /* verilator lint_off UNUSEDSIGNAL */
            wire [E_W+D_W-1:0] e_x = {{D_W{1'b0}}, lane_e[l*E_W +: E_W]};
            /* verilator lint_on UNUSEDSIGNAL */
            wire [D_W-1:0] e_d = e_x[D_W-1:0];
            assign terms[l*D_W +: D_W] = {D_W{v_e[l]}} & (e_d ^ {D_W{s_e[l]}});
            assign carries[l] = v_e[l] & s_e[l];
        end
    endgenerate
    // The row's term and its carry: its one lane, or (LPC = 2: one PE per row) the sum of the PE's two pairs.
    wire [D_W-1:0] row_term;
    wire row_carry;
    generate
        if (LPC == 1) begin : g_one
            assign row_term = terms;
            assign row_carry = carries[0];
        end else begin : g_two
            assign row_term = terms[D_W-1:0] + terms[2*D_W-1:D_W] + {{(D_W-1){1'b0}}, carries[0]};
            assign row_carry = carries[1];
        end
    endgenerate

    // ---------------------------------------------------------------- the PEs' sums: a ring, one adder
    // The rows visit the PEs in order, RPP rows each, so one adder serves them all: at a PE's first row
    // it adds the row's term to the ring's head (0 at a fold's first group), at its last row it rotates the
    // sum into the ring's tail. After ROWS rows the ring is back in place: d reads PE p's sum at ring[p].
    // (One adder and a register ring instead of an adder per PE: the PEs of a cluster never finish a
    // group together.)
    localparam integer RPP = SPE / LPC;  // rows per PE: 1 or 2
    reg [NP*D_W-1:0] ring;
    reg [D_W-1:0] run;
    wire first_row = RPP == 1 || !odd_e;
    wire [D_W-1:0] head = !first_row ? run : grp0_e ? {D_W{1'b0}} : ring[D_W-1:0];
    wire [D_W-1:0] sum = head + row_term + {{(D_W-1){1'b0}}, row_carry};
    wire [NP*D_W-1:0] rotated;
    generate
        if (NP == 1) begin : g_ring1
            assign rotated = sum;
        end else begin : g_ringn
            assign rotated = {sum, ring[NP*D_W-1:D_W]};
        end
    endgenerate
    always @(posedge clk) begin
        if (ve) begin
            if (RPP == 1 || !first_row) ring <= rotated;
            else run <= sum;
        end
    end
    assign d = ring;

    assign busy = active || (|v_t);
endmodule
`default_nettype wire
