# SPDX-License-Identifier: Apache-2.0
"""AXI4 / AXI4-Lite signatures, burst read and write engines, and the AXI-Lite register slave.

Signatures are flat (``araddr``, ``rvalid``...) so that Amaranth's ``__`` joining gives the port
names a Vivado block design expects after the prefix: ``m_axi__araddr``, ``s_axi__wdata``.
Only what the accelerator uses is modelled: one ID, INCR bursts, no QoS/cache/prot/region/user
signals (the top level ties those off when it is packaged).
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ._errors import refuse
from .descriptor import Status

__all__ = [
    "AXI_DATA_WIDTHS",
    "axi4_read_members",
    "axi4_write_members",
    "AXI4Signature",
    "AXI4ReadSignature",
    "AXI4WriteSignature",
    "AXI4LiteSignature",
    "connect_axi4",
    "AXI4Reader",
    "AXI4Writer",
    "AXILiteRegisters",
    "REGISTER_MAP",
    "STATUS_CODES",
]

AXI_DATA_WIDTHS = (32, 64, 128, 256)
MAX_BURST_BEATS = 256  # AXI4 INCR limit (AxLEN + 1)
BOUNDARY_BYTES = 4096  # an AXI burst must not cross a 4 KiB boundary
BURST_INCR = 0b01


def _width_problem(addr_width, data_width):
    if data_width not in AXI_DATA_WIDTHS:
        return f"AXI data width must be one of {', '.join(map(str, AXI_DATA_WIDTHS))}, not {data_width!r}"
    if not isinstance(addr_width, int) or not 13 <= addr_width <= 64:
        return f"AXI address width must be an integer from 13 to 64, not {addr_width!r}"
    return None


def _check_widths(addr_width, data_width, component=None):
    problem = _width_problem(addr_width, data_width)
    if problem is not None:
        if component is not None:
            refuse(component, problem)
        raise ValueError(problem)


def axi4_read_members(addr_width, data_width):
    """Members of the AR and R channels, seen from the manager."""
    return {
        "araddr": Out(addr_width),
        "arlen": Out(8),
        "arsize": Out(3),
        "arburst": Out(2),
        "arvalid": Out(1),
        "arready": In(1),
        "rdata": In(data_width),
        "rresp": In(2),
        "rlast": In(1),
        "rvalid": In(1),
        "rready": Out(1),
    }


def axi4_write_members(addr_width, data_width):
    """Members of the AW, W and B channels, seen from the manager."""
    return {
        "awaddr": Out(addr_width),
        "awlen": Out(8),
        "awsize": Out(3),
        "awburst": Out(2),
        "awvalid": Out(1),
        "awready": In(1),
        "wdata": Out(data_width),
        "wstrb": Out(data_width // 8),
        "wlast": Out(1),
        "wvalid": Out(1),
        "wready": In(1),
        "bresp": In(2),
        "bvalid": In(1),
        "bready": Out(1),
    }


class AXI4ReadSignature(wiring.Signature):
    """The read half of an AXI4 manager port (AR, R)."""

    def __init__(self, *, addr_width=32, data_width=64):
        _check_widths(addr_width, data_width)
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__(axi4_read_members(addr_width, data_width))


class AXI4WriteSignature(wiring.Signature):
    """The write half of an AXI4 manager port (AW, W, B)."""

    def __init__(self, *, addr_width=32, data_width=64):
        _check_widths(addr_width, data_width)
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__(axi4_write_members(addr_width, data_width))


class AXI4Signature(wiring.Signature):
    """A full AXI4 manager port (AW, W, B, AR, R), single ID, INCR bursts."""

    def __init__(self, *, addr_width=32, data_width=64):
        _check_widths(addr_width, data_width)
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({**axi4_write_members(addr_width, data_width),
                          **axi4_read_members(addr_width, data_width)})


class AXI4LiteSignature(wiring.Signature):
    """An AXI4-Lite port with 32-bit data, seen from the manager."""

    def __init__(self, *, addr_width=8):
        if not isinstance(addr_width, int) or not 4 <= addr_width <= 32:
            raise ValueError(f"AXI-Lite address width must be an integer from 4 to 32, not {addr_width!r}")
        self.addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width),
            "awvalid": Out(1),
            "awready": In(1),
            "wdata": Out(32),
            "wstrb": Out(4),
            "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2),
            "bvalid": In(1),
            "bready": Out(1),
            "araddr": Out(addr_width),
            "arvalid": Out(1),
            "arready": In(1),
            "rdata": In(32),
            "rresp": In(2),
            "rvalid": In(1),
            "rready": Out(1),
        })


def connect_axi4(m, port, half):
    """Wire a read or write half (``AXI4ReadSignature``/``AXI4WriteSignature`` interface) to a full port."""
    for name, member in half.signature.members.items():
        if member.flow == Out:
            m.d.comb += getattr(port, name).eq(getattr(half, name))
        else:
            m.d.comb += getattr(half, name).eq(getattr(port, name))


class _BurstSplitter:
    """Splits (address, beats) into INCR bursts of at most 256 beats that never cross 4 KiB.

    Shared by the read and write engines: ``load`` starts a command, ``advance`` consumes the
    current burst; ``length`` is the current burst's beat count.
    """

    def __init__(self, m, *, addr_width, data_width, beats_width, name):
        self.bytes_log2 = (data_width // 8).bit_length() - 1
        self.addr = Signal(addr_width, name=f"{name}_addr")
        self.remaining = Signal(beats_width, name=f"{name}_remaining")
        self.active = Signal(name=f"{name}_active")
        self.length = Signal(range(MAX_BURST_BEATS + 1), name=f"{name}_length")
        offset_beats = self.addr[self.bytes_log2:12]
        to_boundary = Signal(range(BOUNDARY_BYTES + 1), name=f"{name}_to_boundary")
        m.d.comb += to_boundary.eq((BOUNDARY_BYTES >> self.bytes_log2) - offset_beats)
        limit = Signal.like(self.length, name=f"{name}_limit")
        m.d.comb += limit.eq(Mux(to_boundary < MAX_BURST_BEATS, to_boundary, MAX_BURST_BEATS))
        m.d.comb += self.length.eq(Mux(self.remaining < limit, self.remaining, limit))
        self._m = m

    def load(self, addr, beats):
        return [self.addr.eq(addr), self.remaining.eq(beats), self.active.eq(beats != 0)]

    def advance(self):
        return [
            self.addr.eq(self.addr + (self.length << self.bytes_log2)),
            self.remaining.eq(self.remaining - self.length),
            self.active.eq(self.remaining != self.length),
        ]


class AXI4Reader(wiring.Component):
    """AXI4 burst read engine with tagged commands and several bursts in flight.

    A command asks for ``beats`` data-width words from byte address ``addr`` (aligned to the
    data width). It is split into INCR bursts (≤ 256 beats, never crossing 4 KiB) issued as fast as
    the slave accepts them, up to ``max_outstanding`` bursts in flight, so a long memory latency
    is paid once per stream of commands, not once per burst. Data comes back in command order,
    each beat carrying its command's ``tag`` and ``last`` on the command's final beat.

    Ports
    -----
    cmd : In(stream)
        Read commands: ``addr``, ``beats`` (≥ 1), ``tag``.
    data : Out(stream)
        Read data: ``data``, ``tag`` of its command, ``last`` on a command's final beat.
    bus : Out(AXI4ReadSignature)
        The AR and R channels.
    busy : Out(1)
        Whether any accepted command still has beats to deliver.
    error : Out(1)
        Sticky: a read response was SLVERR or DECERR.
    """

    def __init__(self, *, addr_width=32, data_width=64, beats_width=20, tag_width=2,
                 max_outstanding=8, max_commands=8):
        _check_widths(addr_width, data_width, self)
        if not isinstance(max_outstanding, int) or max_outstanding < 1:
            refuse(self, f"max_outstanding must be a positive integer, not {max_outstanding!r}")
        self.addr_width, self.data_width = addr_width, data_width
        self.beats_width, self.tag_width = beats_width, tag_width
        self.max_outstanding, self.max_commands = max_outstanding, max_commands
        self.cmd_layout = data.StructLayout({
            "addr": unsigned(addr_width), "beats": unsigned(beats_width), "tag": unsigned(tag_width)})
        self.data_layout = data.StructLayout({
            "data": unsigned(data_width), "tag": unsigned(tag_width), "last": unsigned(1)})
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "data": Out(stream.Signature(self.data_layout)),
            "bus": Out(AXI4ReadSignature(addr_width=addr_width, data_width=data_width)),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        split = _BurstSplitter(m, addr_width=self.addr_width, data_width=self.data_width,
                               beats_width=self.beats_width, name="ar")

        # The R side needs each command's beat count and tag, in order.
        pending_layout = data.StructLayout({"beats": unsigned(self.beats_width), "tag": unsigned(self.tag_width)})
        m.submodules.pending = pending = fifo.SyncFIFOBuffered(
            width=pending_layout.size, depth=self.max_commands)

        m.d.comb += self.cmd.ready.eq(~split.active & pending.w_rdy)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += split.load(self.cmd.payload.addr, self.cmd.payload.beats)
        m.d.comb += [
            pending.w_data.eq(Cat(self.cmd.payload.beats, self.cmd.payload.tag)),
            pending.w_en.eq(self.cmd.valid & self.cmd.ready & (self.cmd.payload.beats != 0)),
        ]

        in_flight = Signal(range(self.max_outstanding + 1))
        m.d.comb += [
            bus.araddr.eq(split.addr),
            bus.arlen.eq(split.length - 1),
            bus.arsize.eq(split.bytes_log2),
            bus.arburst.eq(BURST_INCR),
            bus.arvalid.eq(split.active & (in_flight < self.max_outstanding)),
        ]
        ar_done = bus.arvalid & bus.arready
        with m.If(ar_done):
            m.d.sync += split.advance()

        head = data.View(pending_layout, pending.r_data)
        beat = Signal(self.beats_width)
        last = Signal()
        m.d.comb += [
            last.eq(beat == head.beats - 1),
            self.data.valid.eq(bus.rvalid & pending.r_rdy),
            self.data.payload.data.eq(bus.rdata),
            self.data.payload.tag.eq(head.tag),
            self.data.payload.last.eq(last),
            bus.rready.eq(self.data.ready & pending.r_rdy),
        ]
        r_done = bus.rvalid & bus.rready
        with m.If(r_done):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
            with m.If(bus.rresp[1]):
                m.d.sync += self.error.eq(1)
        m.d.comb += pending.r_en.eq(r_done & last)

        burst_done = r_done & bus.rlast
        with m.If(ar_done & ~burst_done):
            m.d.sync += in_flight.eq(in_flight + 1)
        with m.Elif(burst_done & ~ar_done):
            m.d.sync += in_flight.eq(in_flight - 1)

        m.d.comb += self.busy.eq(split.active | pending.r_rdy)
        return m


class AXI4Writer(wiring.Component):
    """AXI4 burst write engine: commands on one stream, data beats with byte strobes on another.

    A command writes ``beats`` data-width words to byte address ``addr`` (aligned); the data
    stream supplies exactly that many beats, in command order. Bursts (≤ 256 beats, never
    crossing 4 KiB) are announced on AW as soon as possible, up to ``max_outstanding`` bursts
    awaiting their B response. The W side splits the same commands into the same bursts on its
    own, so WVALID never waits for an AW handshake (AXI forbids a manager to make it wait: a
    slave may hold AWREADY until it sees WVALID). ``busy`` stays high until every B response has
    come back, so a caller that waits for ``~busy`` knows its data is in memory.

    Ports
    -----
    cmd : In(stream)
        Write commands: ``addr``, ``beats`` (≥ 1).
    data : In(stream)
        Write data: ``data`` and byte strobes ``strb``.
    bus : Out(AXI4WriteSignature)
        The AW, W and B channels.
    busy : Out(1)
        Whether any accepted command is not yet acknowledged by a B response.
    error : Out(1)
        Sticky: a write response was SLVERR or DECERR.
    """

    def __init__(self, *, addr_width=32, data_width=64, beats_width=20, max_outstanding=8, max_commands=8):
        _check_widths(addr_width, data_width, self)
        if not isinstance(max_outstanding, int) or max_outstanding < 1:
            refuse(self, f"max_outstanding must be a positive integer, not {max_outstanding!r}")
        self.addr_width, self.data_width = addr_width, data_width
        self.beats_width, self.max_outstanding, self.max_commands = beats_width, max_outstanding, max_commands
        self.cmd_layout = data.StructLayout({"addr": unsigned(addr_width), "beats": unsigned(beats_width)})
        self.data_layout = data.StructLayout({"data": unsigned(data_width), "strb": unsigned(data_width // 8)})
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "data": In(stream.Signature(self.data_layout)),
            "bus": Out(AXI4WriteSignature(addr_width=addr_width, data_width=data_width)),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        aw = _BurstSplitter(m, addr_width=self.addr_width, data_width=self.data_width,
                            beats_width=self.beats_width, name="aw")
        w = _BurstSplitter(m, addr_width=self.addr_width, data_width=self.data_width,
                           beats_width=self.beats_width, name="w")
        # Commands wait here for the W side, which may be a few commands behind the AW side.
        m.submodules.w_commands = w_commands = fifo.SyncFIFOBuffered(
            width=self.cmd_layout.size, depth=self.max_commands)
        accept = self.cmd.valid & self.cmd.ready
        m.d.comb += [
            self.cmd.ready.eq(~aw.active & w_commands.w_rdy),
            w_commands.w_data.eq(self.cmd.payload.as_value()),
            w_commands.w_en.eq(accept & (self.cmd.payload.beats != 0)),
        ]
        with m.If(accept):
            m.d.sync += aw.load(self.cmd.payload.addr, self.cmd.payload.beats)

        awaiting_b = Signal(range(self.max_outstanding + 1))
        m.d.comb += [
            bus.awaddr.eq(aw.addr),
            bus.awlen.eq(aw.length - 1),
            bus.awsize.eq(aw.bytes_log2),
            bus.awburst.eq(BURST_INCR),
            bus.awvalid.eq(aw.active & (awaiting_b < self.max_outstanding)),
        ]
        aw_done = bus.awvalid & bus.awready
        with m.If(aw_done):
            m.d.sync += aw.advance()

        next_command = data.View(self.cmd_layout, w_commands.r_data)
        beat = Signal(8)
        last = Signal()
        m.d.comb += [
            last.eq(beat == w.length - 1),
            bus.wdata.eq(self.data.payload.data),
            bus.wstrb.eq(self.data.payload.strb),
            bus.wlast.eq(last),
            bus.wvalid.eq(self.data.valid & w.active),
            self.data.ready.eq(bus.wready & w.active),
        ]
        w_done = bus.wvalid & bus.wready
        with m.If(w_done):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
            with m.If(last):
                m.d.sync += w.advance()
        # The next command loads while the current one's final beat goes out, so back-to-back
        # commands (a row per command) keep W busy every cycle; its load overrides that advance.
        free = ~w.active | (w_done & last & (w.remaining == w.length))
        m.d.comb += w_commands.r_en.eq(free)
        with m.If(free & w_commands.r_rdy):
            m.d.sync += w.load(next_command.addr, next_command.beats)

        m.d.comb += bus.bready.eq(1)
        b_done = bus.bvalid & bus.bready
        with m.If(b_done & bus.bresp[1]):
            m.d.sync += self.error.eq(1)
        with m.If(aw_done & ~b_done):
            m.d.sync += awaiting_b.eq(awaiting_b + 1)
        with m.Elif(b_done & ~aw_done):
            m.d.sync += awaiting_b.eq(awaiting_b - 1)

        m.d.comb += self.busy.eq(aw.active | w.active | w_commands.r_rdy | (awaiting_b != 0))
        return m


# Byte offsets of the AXI-Lite registers; docs/isa.md ("Register map") documents each bit.
REGISTER_MAP = {
    "CONTROL": 0x00,
    "GIE": 0x04,
    "IER": 0x08,
    "ISR": 0x0C,
    "STATUS": 0x10,
    "PROGRAM_ADDR": 0x14,
    "CYCLES": 0x18,
    "STALLS": 0x1C,
    "FINGERPRINT": 0x20,
    "PARAMS": 0x24,
    "DESCRIPTORS_DONE": 0x28,
    "IMAGE_BASE": 0x2C,
}

# Codes of the STATUS register: why the last run stopped (0 = it completed), one encoding for the RTL,
# the HLS core, isa_sim and the driver (docs/isa.md §8.1).
STATUS_CODES = {status.name: int(status) for status in Status}

CONTROL_START, CONTROL_DONE, CONTROL_IDLE, CONTROL_ERROR = 0, 1, 2, 3


class AXILiteRegisters(wiring.Component):
    """AXI-Lite register slave: start/done/idle, interrupt, program address, counters, identity.

    The core sees a one-cycle ``start`` pulse and answers with a one-cycle ``done`` pulse;
    between the two it is running, and the cycle counter counts every cycle, the stall counter
    every cycle the core raises ``stall``. ``fingerprint`` and ``params`` are constants read back
    by the driver to refuse a Program built for another configuration before starting.

    Ports
    -----
    s_axi : In(AXI4LiteSignature)
        The host's register port.
    irq : Out(1)
        Interrupt: a run finished while GIE and IER bit 0 are set; cleared through ISR.
    start : Out(1)
        One-cycle pulse: the host wrote 1 to CONTROL.start while the core was idle.
    program_addr : Out(32)
        Byte address of the Program header in DDR.
    image_base : Out(32)
        Byte address that every address inside the Program is relative to.
    done : In(1)
        One-cycle pulse from the core: the run finished (successfully or stopped by an error).
    stall : In(1)
        The core is waiting on memory this cycle.
    status : In(32)
        The core's status code (``STATUS_CODES``: 0, or why the run stopped), shown in STATUS.
    descriptors_done : In(32)
        Number of descriptors the core has completed in this run.
    """

    def __init__(self, *, fingerprint, params, addr_width=8):
        for name, value in (("fingerprint", fingerprint), ("params", params)):
            if not isinstance(value, int) or not 0 <= value < 2**32:
                refuse(self, f"{name} must be a 32-bit unsigned integer, not {value!r}")
        self.fingerprint, self.params = fingerprint, params
        super().__init__({
            "s_axi": In(AXI4LiteSignature(addr_width=addr_width)),
            "irq": Out(1),
            "start": Out(1),
            "program_addr": Out(32),
            "image_base": Out(32),
            "done": In(1),
            "stall": In(1),
            "status": In(32),
            "descriptors_done": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axi
        running = Signal()
        done_flag = Signal()
        gie = Signal()
        ier = Signal()
        isr = Signal()
        cycles = Signal(32)
        stalls = Signal(32)

        with m.If(self.start):
            m.d.sync += [running.eq(1), done_flag.eq(0), cycles.eq(0), stalls.eq(0)]
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(self.stall):
                m.d.sync += stalls.eq(stalls + 1)
        with m.If(self.done):
            m.d.sync += [running.eq(0), done_flag.eq(1)]

        # Write channel: take AW and W together (AXI lets a slave wait for both valids).
        word = lambda addr: addr[2:]  # noqa: E731 -- registers are word-addressed
        take_write = Signal()
        m.d.comb += [
            take_write.eq(bus.awvalid & bus.wvalid & ~bus.bvalid),
            bus.awready.eq(take_write),
            bus.wready.eq(take_write),
            bus.bresp.eq(0),
        ]
        with m.If(take_write):
            m.d.sync += bus.bvalid.eq(1)
        with m.Elif(bus.bready):
            m.d.sync += bus.bvalid.eq(0)

        def write_bytes(reg):
            for i in range(4):
                with m.If(bus.wstrb[i]):
                    m.d.sync += reg[8 * i:8 * i + 8].eq(bus.wdata[8 * i:8 * i + 8])

        with m.If(take_write):
            with m.Switch(word(bus.awaddr)):
                with m.Case(REGISTER_MAP["CONTROL"] >> 2):
                    m.d.comb += self.start.eq(bus.wstrb[0] & bus.wdata[CONTROL_START] & ~running)
                with m.Case(REGISTER_MAP["GIE"] >> 2):
                    with m.If(bus.wstrb[0]):
                        m.d.sync += gie.eq(bus.wdata[0])
                with m.Case(REGISTER_MAP["IER"] >> 2):
                    with m.If(bus.wstrb[0]):
                        m.d.sync += ier.eq(bus.wdata[0])
                with m.Case(REGISTER_MAP["PROGRAM_ADDR"] >> 2):
                    write_bytes(self.program_addr)
                with m.Case(REGISTER_MAP["IMAGE_BASE"] >> 2):
                    write_bytes(self.image_base)
        # ISR: set by a finished run, cleared by writing 1 (the clear loses to a simultaneous set).
        clear_isr = take_write & (word(bus.awaddr) == REGISTER_MAP["ISR"] >> 2) & bus.wstrb[0] & bus.wdata[0]
        with m.If(self.done):
            m.d.sync += isr.eq(1)
        with m.Elif(clear_isr):
            m.d.sync += isr.eq(0)
        m.d.comb += self.irq.eq(gie & ier & isr)

        # Read channel: one outstanding read, data registered.
        control = Signal(32)
        m.d.comb += [
            control[CONTROL_START].eq(running),
            control[CONTROL_DONE].eq(done_flag),
            control[CONTROL_IDLE].eq(~running),
            control[CONTROL_ERROR].eq(self.status != 0),
        ]
        readable = {
            "CONTROL": control, "GIE": gie, "IER": ier, "ISR": isr, "STATUS": self.status,
            "PROGRAM_ADDR": self.program_addr, "CYCLES": cycles, "STALLS": stalls,
            "FINGERPRINT": Const(self.fingerprint, 32), "PARAMS": Const(self.params, 32),
            "DESCRIPTORS_DONE": self.descriptors_done, "IMAGE_BASE": self.image_base,
        }
        m.d.comb += [bus.arready.eq(~bus.rvalid), bus.rresp.eq(0)]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += bus.rvalid.eq(1)
            with m.Switch(word(bus.araddr)):
                for name, value in readable.items():
                    with m.Case(REGISTER_MAP[name] >> 2):
                        m.d.sync += bus.rdata.eq(value)
                with m.Default():
                    m.d.sync += bus.rdata.eq(0)
        with m.Elif(bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        return m
