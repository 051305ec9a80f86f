// SPDX-License-Identifier: Apache-2.0
//
// hwgen_axi_memory: a DDR-like AXI4 slave memory that lives inside the simulation.
//
// The same behaviour, cycle for cycle, as the cocotb model hwgen.cosim.axi_memory.AxiMemory
// (without its aw_after_w option), so whole Programs run in Verilator with no Python per clock:
//
// - every read burst returns its first beat `read_latency` cycles after its AR handshake; later
//   bursts queue in order behind earlier ones; R moves at most one beat per cycle;
// - W beats are paired with their AW in order (W may run ahead of AW: such beats wait in a FIFO
//   and are written the cycle their AW arrives, as the Python model does); a burst's B response
//   comes `write_latency` cycles after its last beat was written;
// - a beat whose AXI word lies outside [0, mem_bytes) answers DECERR (reads return 0, writes are
//   dropped); a missing or early WLAST counts in `errors`;
// - every ready/valid the memory drives (ARREADY, RVALID, AWREADY, WREADY, BVALID) is dropped in a
//   cycle with probability stall_threshold / 65536, each channel from its own xorshift32 generator
//   (a linear-feedback shift generator) seeded from `seed`; stall_threshold = 0 never stalls.
//
// The image goes in and out in bulk: a rising edge of `load` reads `LOAD_FILE` with $readmemh
// (one AXI word per line, from address 0, covering [0, mem_bytes)) and clears every queue, counter
// and the generators; a rising edge of `dump` writes words 0 .. ceil(mem_bytes / bytes) - 1 to
// `DUMP_FILE` with $writememh. Both files are relative to the simulator's working directory.
//
// Outputs are registered: each rising edge first takes the handshakes of the cycle that ends
// (outputs as driven during it, inputs as they settled), then computes the next cycle's outputs.

module hwgen_axi_memory #(
    parameter DATA_WIDTH = 64,
    parameter MEM_WORDS_LOG2 = 22,     // capacity: 2**MEM_WORDS_LOG2 AXI words
    parameter QUEUE_LOG2 = 5,          // read bursts, write bursts and B responses in flight
    parameter W_EARLY_LOG2 = 10,       // W beats that may arrive before their AW
    parameter LOAD_FILE = "axi_memory_in.hex",
    parameter DUMP_FILE = "axi_memory_out.hex"
) (
    input  wire                      clk,
    input  wire                      rst,
    // AXI4 slave (single ID, INCR bursts)
    input  wire [31:0]               araddr,
    input  wire [7:0]                arlen,
    input  wire [2:0]                arsize,
    input  wire                      arvalid,
    output reg                       arready,
    output reg  [DATA_WIDTH-1:0]     rdata,
    output reg  [1:0]                rresp,
    output reg                       rlast,
    output reg                       rvalid,
    input  wire                      rready,
    input  wire [31:0]               awaddr,
    input  wire [7:0]                awlen,
    input  wire [2:0]                awsize,
    input  wire                      awvalid,
    output reg                       awready,
    input  wire [DATA_WIDTH-1:0]     wdata,
    input  wire [DATA_WIDTH/8-1:0]   wstrb,
    input  wire                      wlast,
    input  wire                      wvalid,
    output reg                       wready,
    output reg  [1:0]                bresp,
    output reg                       bvalid,
    input  wire                      bready,
    // configuration (static during a run) and bulk image transfer
    input  wire                      load,
    input  wire                      dump,
    input  wire [31:0]               mem_bytes,
    input  wire [31:0]               read_latency,
    input  wire [31:0]               write_latency,
    input  wire [16:0]               stall_threshold,
    input  wire [31:0]               seed,
    // what the run did
    output reg  [31:0]               read_beats,
    output reg  [31:0]               write_beats,
    output reg  [31:0]               read_bursts,
    output reg  [31:0]               write_bursts,
    output reg  [31:0]               max_reads_in_flight,
    output reg  [31:0]               errors,
    output wire                      idle
);
    localparam NB = DATA_WIDTH / 8;
    localparam LANE_BITS = $clog2(NB);
    localparam QD = 1 << QUEUE_LOG2;
    localparam WD = 1 << W_EARLY_LOG2;
    localparam [1:0] OKAY = 2'd0, DECERR = 2'd3;

    reg [DATA_WIDTH-1:0] mem [0:(1 << MEM_WORDS_LOG2) - 1];

    // read bursts: [ready cycle, address of the next beat, beats left, bytes per beat]
    reg [63:0] rq_ready [0:QD-1];
    reg [31:0] rq_addr  [0:QD-1];
    reg [8:0]  rq_beats [0:QD-1];
    reg [7:0]  rq_size  [0:QD-1];
    reg [QUEUE_LOG2-1:0] rq_head, rq_tail;
    reg [QUEUE_LOG2:0]   rq_count;
    // write bursts announced on AW: [address of the next beat, beats left, bytes per beat]
    reg [31:0] wq_addr  [0:QD-1];
    reg [8:0]  wq_beats [0:QD-1];
    reg [7:0]  wq_size  [0:QD-1];
    reg [QUEUE_LOG2-1:0] wq_head, wq_tail;
    reg [QUEUE_LOG2:0]   wq_count;
    // W beats not yet paired with an AW
    reg [DATA_WIDTH-1:0] we_data [0:WD-1];
    reg [NB-1:0]         we_strb [0:WD-1];
    reg                  we_last [0:WD-1];
    reg [W_EARLY_LOG2-1:0] we_head, we_tail;
    reg [W_EARLY_LOG2:0]   we_count;
    // B responses: [ready cycle, resp]
    reg [63:0] bq_ready [0:QD-1];
    reg [1:0]  bq_resp  [0:QD-1];
    reg [QUEUE_LOG2-1:0] bq_head, bq_tail;
    reg [QUEUE_LOG2:0]   bq_count;

    reg [63:0] cycle;
    reg [1:0]  write_resp;
    reg [31:0] rng_ar, rng_r, rng_aw, rng_w, rng_b;
    reg load_q, dump_q;

    assign idle = rq_count == 0 && wq_count == 0 && we_count == 0 && bq_count == 0;

    function [31:0] xorshift(input [31:0] x);
        reg [31:0] y;
        begin
            y = x ^ (x << 13);
            y = y ^ (y >> 17);
            xorshift = y ^ (y << 5);
        end
    endfunction

    function [31:0] seeded(input [31:0] s, input [31:0] channel);
        reg [31:0] y;
        begin
            y = (s ^ channel) * 32'h9E3779B1 + channel;
            seeded = y == 0 ? 32'h1 : y;
        end
    endfunction

    function in_range(input [31:0] word_base);
        in_range = {1'b0, word_base} + NB <= {1'b0, mem_bytes};
    endfunction

    // State updated with blocking assignments inside the one clocked block (nothing else reads
    // it); the ports the manager samples are updated with non-blocking ones.
    reg [31:0] addr, base, word_count;
    reg [8:0]  beats;
    reg [7:0]  size;
    reg [LANE_BITS:0] lane;
    reg [DATA_WIDTH-1:0] word, beat_data;
    reg [NB-1:0] beat_strb;
    reg beat_last, go_r, go_b, rv, bv;
    reg [1:0] resp;
    integer i;

    always @(posedge clk) begin
        load_q <= load;
        dump_q <= dump;
        if (dump && !dump_q) begin
            word_count = (mem_bytes + NB - 1) / NB;
            if (word_count != 0)
                $writememh(DUMP_FILE, mem, 0, word_count - 1);
        end
        if (rst || (load && !load_q)) begin
            if (load && !load_q) begin
                $readmemh(LOAD_FILE, mem);
                read_beats <= 0; write_beats <= 0; read_bursts <= 0; write_bursts <= 0;
                max_reads_in_flight <= 0; errors <= 0;
            end
            rng_ar = seeded(seed, 1); rng_r = seeded(seed, 2); rng_aw = seeded(seed, 3);
            rng_w = seeded(seed, 4); rng_b = seeded(seed, 5);
            rq_head = 0; rq_tail = 0; rq_count = 0;
            wq_head = 0; wq_tail = 0; wq_count = 0;
            we_head = 0; we_tail = 0; we_count = 0;
            bq_head = 0; bq_tail = 0; bq_count = 0;
            cycle = 0;
            write_resp = OKAY;
            arready <= 0; rvalid <= 0; rlast <= 0; rdata <= 0; rresp <= OKAY;
            awready <= 0; wready <= 0; bvalid <= 0; bresp <= OKAY;
        end else begin
            // ---- handshakes of the cycle that ends at this edge
            if (arready && arvalid) begin
                if (rq_count == QD) begin
                    $display("hwgen_axi_memory: more than %0d read bursts in flight", QD);
                    $finish;
                end
                rq_ready[rq_tail] = cycle + {32'b0, read_latency};
                rq_addr[rq_tail] = araddr;
                rq_beats[rq_tail] = {1'b0, arlen} + 9'd1;
                rq_size[rq_tail] = 8'd1 << arsize;
                rq_tail = rq_tail + 1;
                rq_count = rq_count + 1;
                read_bursts <= read_bursts + 1;
                if ({{(31 - QUEUE_LOG2){1'b0}}, rq_count} > max_reads_in_flight)
                    max_reads_in_flight <= {{(31 - QUEUE_LOG2){1'b0}}, rq_count};
            end
            if (rvalid && rready) begin
                read_beats <= read_beats + 1;
                if (rq_beats[rq_head] == 1) begin
                    rq_head = rq_head + 1;
                    rq_count = rq_count - 1;
                end else begin
                    size = rq_size[rq_head];
                    rq_addr[rq_head] = rq_addr[rq_head] - (rq_addr[rq_head] % size) + size;
                    rq_beats[rq_head] = rq_beats[rq_head] - 1;
                end
            end
            if (awready && awvalid) begin
                if (wq_count == QD) begin
                    $display("hwgen_axi_memory: more than %0d write bursts in flight", QD);
                    $finish;
                end
                wq_addr[wq_tail] = awaddr;
                wq_beats[wq_tail] = {1'b0, awlen} + 9'd1;
                wq_size[wq_tail] = 8'd1 << awsize;
                wq_tail = wq_tail + 1;
                wq_count = wq_count + 1;
                write_bursts <= write_bursts + 1;
            end
            if (wready && wvalid) begin
                if (we_count == WD) begin
                    $display("hwgen_axi_memory: more than %0d W beats ahead of their AW", WD);
                    $finish;
                end
                we_data[we_tail] = wdata;
                we_strb[we_tail] = wstrb;
                we_last[we_tail] = wlast;
                we_tail = we_tail + 1;
                we_count = we_count + 1;
            end
            // Pair W beats with announced bursts, in order, and write them.
            while (we_count != 0 && wq_count != 0) begin
                beat_data = we_data[we_head];
                beat_strb = we_strb[we_head];
                beat_last = we_last[we_head];
                we_head = we_head + 1;
                we_count = we_count - 1;
                addr = wq_addr[wq_head];
                size = wq_size[wq_head];
                lane = addr[LANE_BITS-1:0];
                base = addr - lane;
                if (in_range(base)) begin
                    word = mem[base[LANE_BITS +: MEM_WORDS_LOG2]];
                    for (i = 0; i < NB; i = i + 1)
                        if (i >= lane && i < lane + size && beat_strb[i])
                            word[8 * i +: 8] = beat_data[8 * i +: 8];
                    mem[base[LANE_BITS +: MEM_WORDS_LOG2]] = word;
                end else begin
                    write_resp = DECERR;
                end
                write_beats <= write_beats + 1;
                if (wq_beats[wq_head] == 1) begin
                    if (!beat_last) begin
                        $display("hwgen_axi_memory: WLAST missing on the last beat of a burst at %h", addr);
                        errors <= errors + 1;
                    end
                    wq_head = wq_head + 1;
                    wq_count = wq_count - 1;
                    if (bq_count == QD) begin
                        $display("hwgen_axi_memory: more than %0d write responses pending", QD);
                        $finish;
                    end
                    bq_ready[bq_tail] = cycle + {32'b0, write_latency};
                    bq_resp[bq_tail] = write_resp;
                    bq_tail = bq_tail + 1;
                    bq_count = bq_count + 1;
                    write_resp = OKAY;
                end else begin
                    if (beat_last) begin
                        $display("hwgen_axi_memory: WLAST early in a burst at %h", addr);
                        errors <= errors + 1;
                    end
                    wq_addr[wq_head] = addr - (addr % size) + size;
                    wq_beats[wq_head] = wq_beats[wq_head] - 1;
                end
            end
            if (bvalid && bready) begin
                bq_head = bq_head + 1;
                bq_count = bq_count - 1;
            end

            // ---- outputs of the next cycle, from the state the handshakes left
            cycle = cycle + 1;
            rng_ar = xorshift(rng_ar); rng_r = xorshift(rng_r); rng_aw = xorshift(rng_aw);
            rng_w = xorshift(rng_w); rng_b = xorshift(rng_b);
            arready <= {1'b0, rng_ar[31:16]} >= stall_threshold;
            go_r = {1'b0, rng_r[31:16]} >= stall_threshold;
            rv = rq_count != 0 && rq_ready[rq_head] <= cycle && go_r;
            if (rv) begin
                addr = rq_addr[rq_head];
                lane = addr[LANE_BITS-1:0];
                base = addr - lane;
                if (in_range(base)) begin
                    rdata <= mem[base[LANE_BITS +: MEM_WORDS_LOG2]];
                    rresp <= OKAY;
                end else begin
                    rdata <= 0;
                    rresp <= DECERR;
                end
                rlast <= rq_beats[rq_head] == 1;
            end
            rvalid <= rv;
            awready <= {1'b0, rng_aw[31:16]} >= stall_threshold;
            wready <= {1'b0, rng_w[31:16]} >= stall_threshold;
            go_b = {1'b0, rng_b[31:16]} >= stall_threshold;
            bv = bq_count != 0 && bq_ready[bq_head] <= cycle && go_b;
            if (bv)
                bresp <= bq_resp[bq_head];
            bvalid <= bv;
        end
    end
endmodule
