# SPDX-License-Identifier: Apache-2.0
#
# Recording stand-in for the Vivado and Vitis HLS commands hwgen's scripts use, for tclsh 8.6.
#
#   tclsh eda_stub.tcl vivado    LOG -mode batch ... -source SCRIPT
#   tclsh eda_stub.tcl vitis_hls LOG -f SCRIPT
#
# Every command appends one tab-separated record to LOG. The stub models just enough of the tools
# to catch wrong scripts: which PS ports exist follows the CONFIG.* settings (as in the real IP),
# a module reference's interfaces come from the X_INTERFACE_INFO attributes of its Verilog, the HLS
# IP's interfaces from the INTERFACE pragmas of its C++, and the IP catalog holds only the stock IP
# plus what export_design wrote into an IP repository the project names. A file a command reads
# must exist when it is read; a pin or interface that does not exist cannot be connected; any
# command the stub does not know is an error. At exit every cell's pins are dumped for the checks.
#
# Installed board parts: the space-separated HWGEN_STUB_BOARD_PARTS.

set ::tool [lindex $argv 0]
set ::log [open [lindex $argv 1] a]
set ::tool_args [lrange $argv 2 end]

proc rec {args} {
    puts $::log [join $args \t]
    flush $::log
}

proc fail {message} {
    rec ERROR $message
    error "stub $::tool: $message"
}

# Options of a command: "-flag value" pairs (flags listed in $boolean take no value) and the rest.
proc opts {words boolean} {
    set options [dict create]
    set rest {}
    for {set i 0} {$i < [llength $words]} {incr i} {
        set word [lindex $words $i]
        if {[string match -* $word] && ![string is double -strict $word]} {
            if {$word in $boolean} {
                dict set options $word 1
            } else {
                incr i
                dict set options $word [lindex $words $i]
            }
        } else {
            lappend rest $word
        }
    }
    return [list $options $rest]
}

proc read_file {path} {
    set path [file normalize $path]
    if {![file exists $path]} {
        fail "reads $path, which does not exist"
    }
    rec READ $path
    return $path
}

proc prop {obj key {default ""}} {
    if {[dict exists $::props $obj $key]} {
        return [dict get $::props $obj $key]
    }
    return $default
}

set ::props [dict create]
set ::cells [dict create]
set ::sources {}
set ::ip_repos {}
set ::catalog [dict create \
    xilinx.com:ip:zynq_ultra_ps_e:3.4 {kind ps8} \
    xilinx.com:ip:zynq_ultra_ps_e:3.5 {kind ps8} \
    xilinx.com:ip:processing_system7:5.5 {kind ps7} \
    xilinx.com:ip:smartconnect:1.0 {kind smartconnect} \
    xilinx.com:ip:proc_sys_reset:5.0 {kind reset} \
]

# ---------------------------------------------------------------------------------------- Vivado

proc create_project {args} {
    lassign [opts $args {-force -in_memory}] o rest
    lassign $rest name dir
    if {![dict exists $o -part]} { fail "create_project without -part" }
    set ::project [dict create name $name dir [file normalize $dir]]
    file mkdir $dir
    close [open [file join $dir $name.xpr] w]
    rec PROJECT $name [file normalize $dir] [dict get $o -part]
}

proc current_project {args} { return [dict get $::project name] }
proc current_fileset {args} { return sources_1 }
proc current_design {args} { return hwgen_bd_wrapper }

proc get_board_parts {args} {
    lassign [opts $args {-quiet -latest_file_version}] o rest
    set pattern [lindex $rest 0]
    set installed [expr {[info exists ::env(HWGEN_STUB_BOARD_PARTS)] ? $::env(HWGEN_STUB_BOARD_PARTS) : ""}]
    return [lsearch -all -inline -glob $installed $pattern]
}

proc set_property {args} {
    lassign [opts $args {-quiet}] o rest
    if {[dict exists $o -dict]} {
        set pairs [dict get $o -dict]
        set objects [lindex $rest 0]
    } elseif {[dict exists $o -name]} {
        set pairs [list [dict get $o -name] [dict get $o -value]]
        set objects [dict get $o -objects]
    } else {
        lassign $rest key value objects
        set pairs [list $key $value]
    }
    if {![llength $objects]} { fail "set_property on no object: $args" }
    foreach obj $objects {
        foreach {key value} $pairs {
            if {$key eq "ip_repo_paths"} {
                foreach repo $value { lappend ::ip_repos [read_file $repo] }
            }
            dict set ::props $obj $key $value
            rec PROP $obj $key $value
        }
    }
}

proc get_property {key obj} {
    if {[regexp {^CONFIG\.(.*)ACT_(FPGA\d_PERIPHERAL_FREQMHZ)$} $key -> head tail]} {
        return [prop $obj CONFIG.$head$tail]
    }
    if {[regexp {^CONFIG\.(.*)__ACT_FREQMHZ$} $key -> head]} {
        return [prop $obj CONFIG.${head}__FREQMHZ]
    }
    switch -- $key {
        PROGRESS { return [expr {[prop $obj launched 0] ? "100%" : "0%"}] }
        DIRECTORY { return [run_dir $obj] }
        STATS.WNS { return 0.125 }
        VLNV { return $obj }
    }
    return [prop $obj $key]
}

# add_files serves both tools; see the end of the file.
proc vivado_add_files {args} {
    lassign [opts $args {-norecurse -quiet}] o rest
    set fileset [expr {[dict exists $o -fileset] ? [dict get $o -fileset] : "sources_1"}]
    foreach path [concat {*}$rest] {
        set path [read_file $path]
        rec ADD_FILE $fileset $path
        if {$fileset eq "sources_1"} { lappend ::sources $path }
    }
}

proc update_compile_order {args} { rec UPDATE_COMPILE_ORDER }

proc update_ip_catalog {args} {
    foreach repo $::ip_repos {
        foreach manifest [glob -nocomplain -directory $repo -- hwgen_stub_component.tcl */hwgen_stub_component.tcl] {
            set f [open $manifest]
            set ip [read $f]
            close $f
            dict set ::catalog [dict get $ip vlnv] [dict merge {kind hls} $ip]
            rec CATALOG [dict get $ip vlnv] $manifest
        }
    }
}

proc get_ipdefs {args} {
    lassign [opts $args {-all -quiet}] o rest
    return [lsearch -all -inline -glob [dict keys $::catalog] [lindex $rest 0]]
}

proc create_bd_design {name} {
    set dir [file join [dict get $::project dir] [dict get $::project name].srcs sources_1 bd $name]
    file mkdir $dir
    set ::bd_file [file join $dir $name.bd]
    close [open $::bd_file w]
    rec BD $name
}

proc get_files {pattern} {
    if {[string match $pattern [file tail $::bd_file]]} { return $::bd_file }
    return ""
}

# Ports of module $name from the Verilog sources, with the interfaces its attributes declare.
proc module_ports {name} {
    foreach path $::sources {
        set f [open $path]
        set text [read $f]
        close $f
        if {![regexp "\\mmodule\\s+$name\\M(.*?)\\mendmodule\\M" $text -> body]} { continue }
        set pins {}
        set intf [dict create]
        set attr ""
        foreach line [split $body \n] {
            if {[regexp {\(\*(.*)\*\)} $line -> a]} { append attr $a }
            if {![regexp {^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[[^\]]*\]\s*)?(\w+)} $line -> dir port]} { continue }
            if {[regexp {xilinx\.com:interface:aximm:1\.0 (\w+) (\w+)} $attr -> iface signal]} {
                dict lappend intf $iface [list $signal $dir]
            } else {
                lappend pins $port
            }
            set attr ""
        }
        set masters {}
        set slaves {}
        dict for {iface signals} $intf {
            set role slave
            foreach s $signals {
                if {[lindex $s 0] in {ARADDR AWADDR} && [lindex $s 1] eq "output"} { set role master }
            }
            if {$role eq "master"} { lappend masters $iface } else { lappend slaves $iface }
        }
        return [dict create pins $pins masters $masters slaves $slaves]
    }
    fail "module $name is in no source file the project added"
}

proc create_bd_cell {args} {
    lassign [opts $args {}] o rest
    set name [lindex $rest 0]
    switch -- [dict get $o -type] {
        ip {
            set vlnv [dict get $o -vlnv]
            if {![dict exists $::catalog $vlnv]} { fail "IP $vlnv is not in the catalog" }
            set cell [dict merge [dict get $::catalog $vlnv] [dict create vlnv $vlnv]]
            # The IP's defaults before any preset: what a fresh PS instance enables.
            switch -- [dict get $cell kind] {
                ps8 {
                    foreach key {PSU__USE__M_AXI_GP0 PSU__USE__M_AXI_GP1 PSU__FPGA_PL0_ENABLE PSU__USE__IRQ0} {
                        dict set ::props /$name CONFIG.$key 1
                    }
                }
                ps7 {
                    foreach key {PCW_USE_M_AXI_GP0 PCW_EN_CLK0_PORT PCW_EN_RST0_PORT} { dict set ::props /$name CONFIG.$key 1 }
                }
            }
        }
        module {
            set ref [dict get $o -reference]
            set cell [dict merge {kind module} [module_ports $ref] [dict create vlnv $ref]]
        }
        default { fail "create_bd_cell -type [dict get $o -type]" }
    }
    dict set ::cells $name $cell
    rec CELL /$name [dict get $cell kind] [dict get $cell vlnv]
    return /$name
}

proc get_bd_cells {args} {
    lassign [opts $args {-quiet}] o rest
    set name [string trimleft [lindex $rest 0] /]
    return [expr {[dict exists $::cells $name] ? "/$name" : ""}]
}

proc on {cell key} { expr {[prop /$cell CONFIG.$key 0] eq "1"} }

# The pins, interface pins, address spaces and address segments a cell has right now.
proc cell_view {name} {
    set cell [dict get $::cells $name]
    set pins {}
    set intf {}
    set spaces {}
    set segs {}
    switch -- [dict get $cell kind] {
        ps8 {
            set spaces Data
            foreach {gp port clock} {0 M_AXI_HPM0_FPD maxihpm0_fpd_aclk 1 M_AXI_HPM1_FPD maxihpm1_fpd_aclk
                                     2 M_AXI_HPM0_LPD maxihpm0_lpd_aclk} {
                if {[on $name PSU__USE__M_AXI_GP$gp]} { lappend intf $port; lappend pins $clock }
            }
            foreach {gp port clock seg} {0 S_AXI_HPC0_FPD saxihpc0_fpd_aclk HPC0 1 S_AXI_HPC1_FPD saxihpc1_fpd_aclk HPC1
                                         2 S_AXI_HP0_FPD saxihp0_fpd_aclk HP0 3 S_AXI_HP1_FPD saxihp1_fpd_aclk HP1} {
                if {[on $name PSU__USE__S_AXI_GP$gp]} {
                    lappend intf $port
                    lappend pins $clock
                    lappend segs SAXIGP$gp/${seg}_DDR_LOW SAXIGP$gp/${seg}_DDR_HIGH
                }
            }
            foreach n {0 1 2 3} {
                if {[on $name PSU__FPGA_PL${n}_ENABLE]} { lappend pins pl_clk$n }
            }
            lappend pins pl_resetn0
            if {[on $name PSU__USE__IRQ0]} { lappend pins pl_ps_irq0 }
        }
        ps7 {
            set spaces Data
            if {[prop /$name external 0]} { lappend intf DDR FIXED_IO }
            if {[on $name PCW_USE_M_AXI_GP0]} { lappend intf M_AXI_GP0; lappend pins M_AXI_GP0_ACLK }
            if {[on $name PCW_USE_S_AXI_HP0]} {
                lappend intf S_AXI_HP0
                lappend pins S_AXI_HP0_ACLK
                lappend segs S_AXI_HP0/HP0_DDR_LOWOCM
            }
            foreach n {0 1 2 3} {
                if {[on $name PCW_EN_CLK${n}_PORT]} { lappend pins FCLK_CLK$n }
                if {[on $name PCW_EN_RST${n}_PORT]} { lappend pins FCLK_RESET${n}_N }
            }
            if {[on $name PCW_USE_FABRIC_INTERRUPT] && [on $name PCW_IRQ_F2P_INTR]} { lappend pins IRQ_F2P }
        }
        smartconnect {
            for {set i 0} {$i < [prop /$name CONFIG.NUM_SI 1]} {incr i} { lappend intf [format S%02d_AXI $i] }
            for {set i 0} {$i < [prop /$name CONFIG.NUM_MI 1]} {incr i} { lappend intf [format M%02d_AXI $i] }
            set pins {aclk aresetn}
        }
        reset {
            set pins {slowest_sync_clk ext_reset_in aux_reset_in mb_debug_sys_rst dcm_locked mb_reset
                      bus_struct_reset peripheral_reset interconnect_aresetn peripheral_aresetn}
        }
        module {
            set pins [dict get $cell pins]
            set intf [concat [dict get $cell masters] [dict get $cell slaves]]
            set spaces [dict get $cell masters]
            foreach s [dict get $cell slaves] { lappend segs $s/reg0 }
        }
        hls {
            set pins [dict get $cell pins]
            set intf [concat [dict get $cell masters] [dict get $cell slaves]]
            foreach m [dict get $cell masters] { lappend spaces Data_$m }
            foreach s [dict get $cell slaves] { lappend segs $s/Reg }
        }
    }
    return [dict create pins $pins intf $intf spaces $spaces segs $segs]
}

# Objects named cell/item that exist, as Vivado returns them ("/cell/item"); none is an empty list.
proc lookup {what paths} {
    set found {}
    foreach path [concat {*}$paths] {
        set path [string trimleft $path /]
        set cell [lindex [split $path /] 0]
        set item [join [lrange [split $path /] 1 end] /]
        if {![dict exists $::cells $cell]} { continue }
        foreach candidate [dict get [cell_view $cell] $what] {
            if {[string match $item $candidate]} { lappend found /$cell/$candidate }
        }
    }
    return $found
}

proc get_bd_pins {args} { lookup pins [lindex [opts $args {-quiet}] 1] }
proc get_bd_intf_pins {args} { lookup intf [lindex [opts $args {-quiet}] 1] }
proc get_bd_addr_spaces {args} { lookup spaces [lindex [opts $args {-quiet}] 1] }
proc get_bd_addr_segs {args} { lookup segs [lindex [opts $args {-quiet}] 1] }

proc connect_bd_net {args} {
    lassign [opts $args {}] o rest
    if {[llength $rest] < 2 || "" in $rest} { fail "connect_bd_net needs two or more existing pins, not {$rest}" }
    rec NET {*}[concat {*}$rest]
}

proc connect_bd_intf_net {args} {
    lassign [opts $args {}] o rest
    if {[llength $rest] != 2 || "" in $rest} { fail "connect_bd_intf_net needs two existing interface pins, not {$rest}" }
    rec INTF_NET {*}$rest
}

proc apply_bd_automation {args} {
    lassign [opts $args {}] o rest
    set rule [dict get $o -rule]
    set config [dict get $o -config]
    set cell [lindex $rest 0]
    if {$cell eq ""} { fail "apply_bd_automation on no cell" }
    rec AUTOMATION $rule $cell $config
    # What the board presets and the automation enable, before hwgen's own settings.
    if {$rule eq "xilinx.com:bd_rule:zynq_ultra_ps_e" && [dict get $config apply_board_preset] eq "1"} {
        # Avnet's Ultra96-V2 and AMD's KV260 presets enable both FPD masters, pl_clk0/1 and IRQ0.
        foreach key {PSU__USE__M_AXI_GP0 PSU__USE__M_AXI_GP1 PSU__FPGA_PL0_ENABLE PSU__FPGA_PL1_ENABLE PSU__USE__IRQ0} {
            dict set ::props $cell CONFIG.$key 1
        }
    }
    if {$rule eq "xilinx.com:bd_rule:processing_system7"} {
        if {[string match {*FIXED_IO, DDR*} [dict get $config make_external]]} {
            dict set ::props $cell external 1
            rec EXTERNAL $cell DDR FIXED_IO
        }
    }
}

proc assign_bd_address {args} {
    lassign [opts $args {-force -quiet}] o rest
    set space [dict get $o -target_address_space]
    set segs [concat {*}$rest]
    if {![llength $space] || ![llength $segs]} { fail "assign_bd_address of {$segs} in {$space}" }
    set offset auto
    set range auto
    if {[dict exists $o -offset]} { set offset [dict get $o -offset] }
    if {[dict exists $o -range]} { set range [dict get $o -range] }
    foreach seg $segs {
        rec ADDR $space $seg $offset $range
    }
}

proc validate_bd_design {args} { rec VALIDATE }
proc save_bd_design {args} { rec SAVE }

proc make_wrapper {args} {
    lassign [opts $args {-top -import -force}] o rest
    set bd [dict get $o -files]
    if {$bd ne $::bd_file} { fail "make_wrapper of $bd" }
    set wrapper [file join [file dirname $bd] hdl hwgen_bd_wrapper.v]
    file mkdir [file dirname $wrapper]
    close [open $wrapper w]
    rec WRAPPER $wrapper
    return $wrapper
}

proc get_runs {name} { return $name }

proc run_dir {run} {
    return [file join [dict get $::project dir] [dict get $::project name].runs $run]
}

proc launch_runs {args} {
    lassign [opts $args {}] o rest
    set run [lindex $rest 0]
    set step [expr {[dict exists $o -to_step] ? [dict get $o -to_step] : "end"}]
    file mkdir [run_dir $run]
    if {$run eq "synth_1"} {
        # Generating the block design's output products writes the hardware hand-off file.
        set handoff [file join [dict get $::project dir] [dict get $::project name].gen sources_1 bd hwgen_bd hw_handoff]
        file mkdir $handoff
        close [open [file join $handoff hwgen_bd.hwh] w]
    } elseif {$run eq "impl_1" && $step eq "write_bitstream"} {
        if {![prop synth_1 launched 0]} { fail "impl_1 launched before synth_1" }
        close [open [file join [run_dir $run] hwgen_bd_wrapper.bit] w]
    }
    dict set ::props $run launched 1
    rec RUN $run $step
}

proc wait_on_run {run} { rec WAIT $run }
proc open_run {run} { rec OPEN_RUN $run }

proc report_utilization {args} {
    lassign [opts $args {-hierarchical}] o rest
    close [open [dict get $o -file] w]
    rec REPORT utilization [file normalize [dict get $o -file]]
}

proc report_timing_summary {args} {
    lassign [opts $args {}] o rest
    close [open [dict get $o -file] w]
    rec REPORT timing [file normalize [dict get $o -file]]
}

proc write_hw_platform {args} {
    lassign [opts $args {-fixed -include_bit -force}] o rest
    if {![file exists [file join [run_dir impl_1] hwgen_bd_wrapper.bit]]} { fail "write_hw_platform before the bitstream" }
    close [open [dict get $o -file] w]
    rec WRITE xsa [file normalize [dict get $o -file]]
}

# ------------------------------------------------------------------------------------ Vitis HLS

proc open_project {args} {
    lassign [opts $args {-reset}] o rest
    set ::hls [dict create project [file normalize [lindex $rest 0]] sources {} tb {}]
    file mkdir [lindex $rest 0]
    rec HLS_PROJECT [file normalize [lindex $rest 0]]
}

proc set_top {name} { dict set ::hls top $name; rec HLS_TOP $name }

proc vitis_add_files {args} {
    lassign [opts $args {-tb}] o rest
    foreach path $rest {
        set path [read_file $path]
        set flags [expr {[dict exists $o -cflags] ? [dict get $o -cflags] : ""}]
        if {[dict exists $o -tb]} {
            dict lappend ::hls tb $path
            rec HLS_TB $path $flags
        } else {
            dict lappend ::hls sources $path
            rec HLS_SOURCE $path $flags
        }
    }
}

proc open_solution {args} {
    lassign [opts $args {-reset}] o rest
    dict set ::hls solution [lindex $rest 0]
    rec HLS_SOLUTION [lindex $rest 0] [dict get $o -flow_target]
}

proc set_part {part} { rec HLS_PART $part }

proc create_clock {args} {
    lassign [opts $args {}] o rest
    rec HLS_CLOCK [dict get $o -period]
}

proc csim_design {args} {
    if {![llength [dict get $::hls tb]]} { fail "csim_design without a testbench" }
    rec HLS_STEP csim_design {*}$args
}

proc csynth_design {args} {
    set top [dict get $::hls top]
    set defined 0
    foreach path [dict get $::hls sources] {
        set f [open $path]
        if {[regexp "\\m$top\\s*\\(" [read $f]]} { set defined 1 }
        close $f
    }
    if {!$defined} { fail "top function $top is in no source file" }
    rec HLS_STEP csynth_design
}

proc cosim_design {args} { rec HLS_STEP cosim_design {*}$args }

# The IP's interfaces, as Vitis HLS derives them from the top's INTERFACE pragmas.
proc hls_interfaces {} {
    set masters {}
    set slaves {}
    foreach path [dict get $::hls sources] {
        set f [open $path]
        foreach line [split [read $f] \n] {
            if {![regexp -nocase {^\s*#pragma\s+HLS\s+interface\s+(.*)$} $line -> spec]} { continue }
            set mode ""
            set bundle ""
            foreach word $spec {
                if {[regexp {^mode=(\w+)$} $word -> m]} { set mode $m }
                if {[regexp {^bundle=(\w+)$} $word -> b]} { set bundle $b }
                if {$mode eq "" && [regexp {^\w+$} $word]} { set mode $word }
            }
            switch -- [string tolower $mode] {
                m_axi { lappend masters m_axi_[expr {$bundle eq "" ? "gmem" : $bundle}] }
                s_axilite { lappend slaves s_axi_[expr {$bundle eq "" ? "control" : $bundle}] }
            }
        }
        close $f
    }
    return [list [lsort -unique $masters] [lsort -unique $slaves]]
}

proc export_design {args} {
    lassign [opts $args {}] o rest
    if {[dict get $o -format] ne "ip_catalog"} { fail "export_design -format [dict get $o -format]" }
    set name [expr {[dict exists $o -ipname] ? [dict get $o -ipname] : [dict get $::hls top]}]
    set vlnv [join [list [dict get $o -vendor] [dict get $o -library] $name [dict get $o -version]] :]
    lassign [hls_interfaces] masters slaves
    set ip_dir [file join [dict get $::hls project] [dict get $::hls solution] impl ip]
    file mkdir $ip_dir
    set f [open [file join $ip_dir hwgen_stub_component.tcl] w]
    puts $f [list vlnv $vlnv masters $masters slaves $slaves pins {ap_clk ap_rst_n interrupt}]
    close $f
    rec EXPORT $vlnv $ip_dir
}

# ------------------------------------------------------------------------------------------ run

proc add_files {args} {
    if {$::tool eq "vivado"} { return [vivado_add_files {*}$args] }
    return [vitis_add_files {*}$args]
}

rename exit ::tcl::exit_process
# Vitis HLS scripts end with exit: stop the script there, but still dump the state below.
proc exit {{code 0}} {
    return -code error -errorcode [list HWGEN_EXIT $code] "exit $code"
}

proc unknown {args} {
    fail "unknown command: [lindex $args 0]"
}

switch -- $::tool {
    vivado { set script [dict get [lindex [opts $::tool_args {}] 0] -source] }
    vitis_hls { set script [dict get [lindex [opts $::tool_args {}] 0] -f] }
    default { error "stub: tool must be vivado or vitis_hls, not $::tool" }
}
rec TOOL $::tool [file normalize $script] [pwd]
set status [catch {uplevel #0 [list source $script]} message options]
if {$status && [lindex [dict get $options -errorcode] 0] eq "HWGEN_EXIT"} {
    set status [expr {[lindex [dict get $options -errorcode] 1] != 0}]
}
dict for {name cell} $::cells {
    set view [cell_view $name]
    rec PINS /$name {*}[dict get $view pins]
    rec INTF_PINS /$name {*}[dict get $view intf]
}
if {$status} {
    rec FAILED $message
    puts stderr "stub $::tool: $message"
    ::tcl::exit_process 1
}
rec END $::tool
