-- sluice-stream.lua: a Wireshark / tshark dissector for sluice's stream protocol
-- (reliable streams inside UDP datagrams), wire format version 1: a 40-byte header
-- (magic 0x51CE, version, type, flags, sack_count, data_len, connection ids, seq, ack,
-- window, timestamps, path), then sack_count SACK blocks, then data_len bytes of
-- payload (SYN and SYN-ACK: option TLVs instead). All fields big-endian.
--
--   tshark -X lua_script:tools/sluice-stream.lua -r capture.pcap
--   tshark -X lua_script:tools/sluice-stream.lua -r capture.pcap -Y sluice \
--          -T fields -e sluice.type -e sluice.seq -e sluice.ack -e _ws.col.Info
--   wireshark -X lua_script:tools/sluice-stream.lua capture.pcap
--
-- Registered as a heuristic dissector on UDP (magic 0x51CE, version 1), so it finds
-- segments on any port. A port that Wireshark already gives to another protocol wins
-- over heuristics unless `-o udp.try_heuristic_first:TRUE` is given; "Decode As..." ->
-- SLUICE works too. To load it always, copy it into ~/.local/lib/wireshark/plugins/.

local HEADER_LEN = 40
local MAGIC = 0x51CE
local VERSION = 1
local MAX_SACK = 4

local sluice = Proto("sluice", "sluice stream protocol")

local type_names = {
    [1] = "SYN",
    [2] = "SYN-ACK",
    [3] = "DATA",
    [4] = "RST",
    [5] = "PROBE",
}

local option_names = {
    [1] = "MSS",
    [2] = "ADDRS",
}

local F_FIN, F_ACK, F_ECHO = 0x01, 0x02, 0x04

-- Is bit `mask` (a power of two) set in `value`? Plain arithmetic: Lua 5.2 has bit32,
-- Lua 5.4 (Wireshark 4.4 and later) does not.
local function has(value, mask)
    return math.floor(value / mask) % 2 == 1
end

local pf = {
    magic = ProtoField.uint16("sluice.magic", "Magic", base.HEX),
    version = ProtoField.uint8("sluice.version", "Version", base.DEC),
    type = ProtoField.uint8("sluice.type", "Type", base.DEC, type_names),
    flags = ProtoField.uint8("sluice.flags", "Flags", base.HEX),
    flag_fin = ProtoField.bool("sluice.flags.fin", "FIN", 8, nil, F_FIN),
    flag_ack = ProtoField.bool("sluice.flags.ack", "ACK", 8, nil, F_ACK),
    flag_echo = ProtoField.bool("sluice.flags.echo", "ECHO", 8, nil, F_ECHO),
    sack_count = ProtoField.uint8("sluice.sack_count", "SACK blocks", base.DEC),
    data_len = ProtoField.uint16("sluice.data_len", "Data length", base.DEC),
    src_conn = ProtoField.uint32("sluice.src_conn", "Source connection", base.HEX),
    dst_conn = ProtoField.uint32("sluice.dst_conn", "Destination connection", base.HEX),
    seq = ProtoField.uint32("sluice.seq", "Sequence number", base.DEC),
    ack = ProtoField.uint32("sluice.ack", "Acknowledgement number", base.DEC),
    window = ProtoField.uint32("sluice.window", "Window", base.DEC),
    ts_val = ProtoField.uint32("sluice.ts_val", "Timestamp value (us)", base.DEC),
    ts_ecr = ProtoField.uint32("sluice.ts_ecr", "Timestamp echo reply (us)", base.DEC),
    path = ProtoField.uint16("sluice.path", "Path", base.DEC),
    reserved = ProtoField.uint16("sluice.reserved", "Reserved", base.HEX),
    sack = ProtoField.bytes("sluice.sack", "SACK block"),
    sack_start = ProtoField.uint32("sluice.sack.start", "Start", base.DEC),
    sack_end = ProtoField.uint32("sluice.sack.end", "End", base.DEC),
    payload = ProtoField.bytes("sluice.payload", "Payload"),
    options = ProtoField.bytes("sluice.options", "SYN options"),
    opt = ProtoField.bytes("sluice.opt", "Option"),
    opt_type = ProtoField.uint8("sluice.opt.type", "Type", base.DEC, option_names),
    opt_len = ProtoField.uint8("sluice.opt.len", "Length", base.DEC),
    opt_mss = ProtoField.uint16("sluice.opt.mss", "MSS", base.DEC),
    opt_addrs = ProtoField.ipv4("sluice.opt.addrs", "Address"),
    opt_prefix = ProtoField.uint8("sluice.opt.prefix", "Prefix length", base.DEC),
    opt_value = ProtoField.bytes("sluice.opt.value", "Value"),
}
sluice.fields = pf

local ex_malformed = ProtoExpert.new("sluice.malformed", "Malformed sluice segment",
    expert.group.MALFORMED, expert.severity.ERROR)
sluice.experts = { ex_malformed }

-- The SYN / SYN-ACK options: TLVs (type u8, len u8, value); unknown types are shown and skipped.
local function dissect_options(tvb, tree)
    local notes = {}
    local offset, len = 0, tvb:len()
    while offset + 2 <= len do
        local kind = tvb(offset, 1):uint()
        local vlen = tvb(offset + 1, 1):uint()
        if offset + 2 + vlen > len then
            tree:add_proto_expert_info(ex_malformed, "option runs past the payload")
            break
        end
        local value = tvb(offset + 2, vlen)
        local item = tree:add(pf.opt, tvb(offset, 2 + vlen))
        item:set_text("Option: " .. (option_names[kind] or ("unknown type " .. kind)))
        item:add(pf.opt_type, tvb(offset, 1))
        item:add(pf.opt_len, tvb(offset + 1, 1))
        if kind == 1 and vlen == 2 then
            item:add(pf.opt_mss, value)
            item:append_text(" " .. value:uint())
            notes[#notes + 1] = "mss=" .. value:uint()
        elseif kind == 2 and vlen % 5 == 0 then
            -- Each entry: an IPv4 address and its prefix length.
            local addrs = {}
            for at = 0, vlen - 5, 5 do
                item:add(pf.opt_addrs, value(at, 4))
                item:add(pf.opt_prefix, value(at + 4, 1))
                addrs[#addrs + 1] = tostring(value(at, 4):ipv4()) .. "/" .. value(at + 4, 1):uint()
            end
            item:append_text(" " .. table.concat(addrs, ","))
            notes[#notes + 1] = "addrs=" .. table.concat(addrs, ",")
        elseif vlen > 0 then
            item:add(pf.opt_value, value)
        end
        offset = offset + 2 + vlen
    end
    return table.concat(notes, " ")
end

function sluice.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    if len < HEADER_LEN then
        return 0
    end
    pinfo.cols.protocol = "SLUICE"
    local kind = tvb(3, 1):uint()
    local flags = tvb(4, 1):uint()
    local sacks = tvb(5, 1):uint()
    local data_len = tvb(6, 2):uint()
    local src_conn = tvb(8, 4):uint()
    local dst_conn = tvb(12, 4):uint()
    local seq = tvb(16, 4):uint()
    local ack = tvb(20, 4):uint()
    local window = tvb(24, 4):uint()
    local name = type_names[kind] or ("type " .. kind)

    local root = tree:add(sluice, tvb(), "sluice stream protocol, " .. name)
    root:add(pf.magic, tvb(0, 2))
    root:add(pf.version, tvb(2, 1))
    root:add(pf.type, tvb(3, 1))
    local fl = root:add(pf.flags, tvb(4, 1))
    fl:add(pf.flag_fin, tvb(4, 1))
    fl:add(pf.flag_ack, tvb(4, 1))
    fl:add(pf.flag_echo, tvb(4, 1))
    root:add(pf.sack_count, tvb(5, 1))
    root:add(pf.data_len, tvb(6, 2))
    root:add(pf.src_conn, tvb(8, 4))
    root:add(pf.dst_conn, tvb(12, 4))
    root:add(pf.seq, tvb(16, 4))
    root:add(pf.ack, tvb(20, 4))
    root:add(pf.window, tvb(24, 4))
    root:add(pf.ts_val, tvb(28, 4))
    root:add(pf.ts_ecr, tvb(32, 4))
    root:add(pf.path, tvb(36, 2))
    root:add(pf.reserved, tvb(38, 2))

    local offset = HEADER_LEN
    local shown = math.min(sacks, MAX_SACK)
    if sacks > MAX_SACK then
        root:add_proto_expert_info(ex_malformed, "sack_count " .. sacks .. " is above " .. MAX_SACK)
    end
    for _ = 1, shown do
        if offset + 8 > len then
            root:add_proto_expert_info(ex_malformed, "SACK blocks run past the datagram")
            break
        end
        local block = root:add(pf.sack, tvb(offset, 8))
        local first, last = tvb(offset, 4):uint(), tvb(offset + 4, 4):uint()
        block:set_text(string.format("SACK block: [%d, %d)", first, last))
        block:add(pf.sack_start, tvb(offset, 4))
        block:add(pf.sack_end, tvb(offset + 4, 4))
        offset = offset + 8
    end

    local notes = ""
    local rest = len - offset
    if rest < 0 then
        rest = 0
    end
    if rest ~= data_len then
        root:add_proto_expert_info(ex_malformed,
            string.format("data_len %d, but %d bytes follow the header", data_len, rest))
    end
    if rest > 0 then
        local body = tvb(offset, rest)
        if kind == 1 or kind == 2 then
            local opts = root:add(pf.options, body)
            notes = dissect_options(body:tvb(), opts)
        else
            root:add(pf.payload, body)
        end
    end

    local flag_names = {}
    if has(flags, F_FIN) then flag_names[#flag_names + 1] = "FIN" end
    if has(flags, F_ACK) then flag_names[#flag_names + 1] = "ACK" end
    if has(flags, F_ECHO) then flag_names[#flag_names + 1] = "ECHO" end
    local info
    if kind == 1 then
        info = string.format("SYN src=0x%08x seq=%d", src_conn, seq)
    elseif kind == 2 then
        info = string.format("SYN-ACK src=0x%08x dst=0x%08x seq=%d ack=%d", src_conn, dst_conn, seq, ack)
    elseif kind == 4 then
        info = string.format("RST src=0x%08x dst=0x%08x seq=%d", src_conn, dst_conn, seq)
        if has(flags, F_ACK) then
            info = info .. string.format(" ack=%d", ack)
        end
    else
        info = string.format("%s seq=%d ack=%d win=%d len=%d", name, seq, ack, window, data_len)
    end
    if #flag_names > 0 then
        info = info .. " [" .. table.concat(flag_names, ",") .. "]"
    end
    if sacks > 0 then
        info = info .. " sacks=" .. sacks
    end
    if notes ~= "" then
        info = info .. " " .. notes
    end
    pinfo.cols.info:set(info)
    return len
end

-- On any UDP port: the magic and version of version 1, a known type.
local function heuristic(tvb, pinfo, tree)
    if tvb:len() < HEADER_LEN then
        return false
    end
    if tvb(0, 2):uint() ~= MAGIC or tvb(2, 1):uint() ~= VERSION then
        return false
    end
    local kind = tvb(3, 1):uint()
    if type_names[kind] == nil then
        return false
    end
    sluice.dissector(tvb, pinfo, tree)
    return true
end

sluice:register_heuristic("udp", heuristic)
-- "Decode As..." for a port whose traffic Wireshark gives to another protocol.
pcall(function()
    DissectorTable.get("udp.port"):add_for_decode_as(sluice)
end)
