-- Wireshark dissector for the AI intermediate data format (AI Parameter Set + TLV units, 3GPP SA4
-- contribution S4-260189; byte-exact spec in splitbed's docs/FORMAT.md) and the control units of the splitbed
-- session protocol (types 0xF0-0xFE, JSON values; docs/PROTOCOL.md).
--
-- Load it (docs/FORMAT.md, "Wireshark"):
--   wireshark -X lua_script:$(splitbed format dissector --path) capture.pcap
--   tshark    -X lua_script:$(splitbed format dissector --path) -r capture.pcap -Y splitbed
-- or copy it into ~/.local/lib/wireshark/plugins/ (Wireshark >= 3.6; `splitbed format dissector` says where).
--
-- Sessions run on an ephemeral TCP port, so the dissector finds them heuristically (a TCP payload that starts
-- with a unit of a known type and a plausible length; the conversation is then kept); the preference
-- "splitbed.tcp_port" (or Decode As ... splitbed) names a port for streams the heuristic cannot see start.
-- Units spanning segments are reassembled (dissect_tcp_pdus): enable TCP's "Allow subdissector to reassemble
-- TCP streams" (the default).

local proto = Proto("splitbed", "AI intermediate data (AIPS/TLV, S4-260189) and splitbed session")

local HEADER = 5
local MAX_UNIT = 64 * 1024 * 1024 -- the receivers' default cap on one unit's value (docs/FORMAT.md, section 10)

local unit_names = {
  [0x00] = "reserved", [0x01] = "AIPS", [0x02] = "DATA",
  [0xF0] = "HELLO", [0xF1] = "OFFER", [0xF2] = "SELECT", [0xF3] = "ACCEPT", [0xF4] = "CLOCK_PING",
  [0xF5] = "CLOCK_PONG", [0xF6] = "RESET", [0xF7] = "RESET_DONE", [0xF8] = "JSON_BASELINE", [0xF9] = "RESULT",
  [0xFA] = "ERROR", [0xFB] = "PREPARE", [0xFC] = "PREPARED", [0xFD] = "CHECKSUM", [0xFE] = "RESULT_REST",
}
local dtype_names = {
  [1] = "float32", [2] = "float16", [3] = "bfloat16", [4] = "float64", [5] = "int8", [6] = "uint8",
  [7] = "int16", [8] = "uint16", [9] = "int32", [10] = "uint32", [11] = "int64", [12] = "uint64", [13] = "bool",
}
local dtype_sizes = { [1] = 4, [2] = 2, [3] = 2, [4] = 8, [5] = 1, [6] = 1, [7] = 2, [8] = 2, [9] = 4, [10] = 4,
                      [11] = 8, [12] = 8, [13] = 1 }
local profile_names = {
  [0] = "none", [1] = "fp16", [2] = "bf16", [3] = "int8", [4] = "zstd", [5] = "lz4", [6] = "shuffle-zstd",
  [7] = "int8-zstd", [8] = "jpeg-q75", [9] = "jpeg-q90",
}

local f = {
  type = ProtoField.uint8("splitbed.type", "Unit type", base.HEX, unit_names),
  length = ProtoField.uint32("splitbed.length", "Value length", base.DEC),
  value = ProtoField.bytes("splitbed.value", "Value"),
  version = ProtoField.uint8("splitbed.aips.format_version", "format_version", base.DEC),
  aips_id = ProtoField.uint16("splitbed.aips.id", "ai_parameter_set_id", base.DEC),
  partition = ProtoField.uint16("splitbed.aips.partition_id", "partition_id", base.DEC),
  aips_tensors = ProtoField.uint16("splitbed.aips.num_tensors", "num_tensors", base.DEC),
  tensor_id = ProtoField.uint16("splitbed.tensor.id", "tensor_id", base.DEC),
  dtype = ProtoField.uint8("splitbed.tensor.dtype", "dtype", base.DEC, dtype_names),
  rank = ProtoField.uint8("splitbed.tensor.rank", "rank", base.DEC),
  dim = ProtoField.uint32("splitbed.tensor.dimension", "dimension", base.DEC),
  shape = ProtoField.string("splitbed.tensor.shape", "shape"),
  profile = ProtoField.uint8("splitbed.tensor.profile", "compression_profile_id", base.DEC, profile_names),
  data_aips_id = ProtoField.uint16("splitbed.data.aips_id", "ai_parameter_set_id", base.DEC),
  data_tensors = ProtoField.uint16("splitbed.data.num_tensors", "num_tensors", base.DEC),
  entry_tensor_id = ProtoField.uint16("splitbed.data.tensor_id", "tensor_id", base.DEC),
  entry_profile = ProtoField.uint8("splitbed.data.profile", "compression_profile_id", base.DEC, profile_names),
  param_length = ProtoField.uint8("splitbed.tensor.param_length", "param_length", base.DEC),
  inferred = ProtoField.uint32("splitbed.tensor.inferred_length", "inferred_length", base.DEC),
  payload_length = ProtoField.uint32("splitbed.tensor.payload_length", "payload_length", base.DEC),
  params = ProtoField.bytes("splitbed.tensor.params", "params"),
  scale = ProtoField.double("splitbed.tensor.int8_scale", "int8 scale"),
  zero_point = ProtoField.int8("splitbed.tensor.int8_zero_point", "int8 zero_point"),
  padding = ProtoField.bytes("splitbed.padding", "padding"),
  payload = ProtoField.bytes("splitbed.tensor.payload", "payload"),
  json = ProtoField.string("splitbed.control.json", "JSON"),
}
proto.fields = {
  f.type, f.length, f.value, f.version, f.aips_id, f.partition, f.aips_tensors, f.tensor_id, f.dtype, f.rank,
  f.dim, f.shape, f.profile, f.data_aips_id, f.data_tensors, f.entry_tensor_id, f.entry_profile, f.param_length, f.inferred, f.payload_length,
  f.params, f.scale, f.zero_point, f.padding, f.payload, f.json,
}

local e_malformed = ProtoExpert.new("splitbed.malformed", "Unit does not follow docs/FORMAT.md",
                                    expert.group.MALFORMED, expert.severity.ERROR)
proto.experts = { e_malformed }

proto.prefs.tcp_port = Pref.uint("TCP port", 0, "A TCP port always decoded as splitbed (0: heuristics only)")
proto.prefs.heuristic = Pref.bool("Find sessions heuristically", true,
                                  "Try TCP payloads that start with a unit of a known type and length")

local function remaining(tvb, offset, stop)
  return stop - offset
end

local function dissect_aips(tvb, tree, offset, stop)
  if remaining(tvb, offset, stop) < 7 then
    tree:add_proto_expert_info(e_malformed, "AIPS value shorter than 7 bytes")
    return "AIPS (malformed)"
  end
  tree:add(f.version, tvb(offset, 1))
  tree:add(f.aips_id, tvb(offset + 1, 2))
  tree:add(f.partition, tvb(offset + 3, 2))
  tree:add(f.aips_tensors, tvb(offset + 5, 2))
  local id, partition, count = tvb(offset + 1, 2):uint(), tvb(offset + 3, 2):uint(), tvb(offset + 5, 2):uint()
  local pos = offset + 7
  for index = 0, count - 1 do
    if pos + 4 > stop then
      tree:add_proto_expert_info(e_malformed, "tensor descriptor " .. index .. " cut short")
      break
    end
    local rank = tvb(pos + 3, 1):uint()
    local size = 5 + 4 * rank
    if pos + size > stop then
      tree:add_proto_expert_info(e_malformed, "tensor descriptor " .. index .. " cut short")
      break
    end
    local dims = {}
    for d = 0, rank - 1 do
      dims[#dims + 1] = tostring(tvb(pos + 4 + 4 * d, 4):uint())
    end
    local dtype = tvb(pos + 2, 1):uint()
    local shape = "[" .. table.concat(dims, ", ") .. "]"
    local sub = tree:add(proto, tvb(pos, size), string.format("Tensor %d: %s %s, profile %s",
      tvb(pos, 2):uint(), dtype_names[dtype] or ("dtype " .. dtype), shape,
      profile_names[tvb(pos + size - 1, 1):uint()] or tostring(tvb(pos + size - 1, 1):uint())))
    sub:add(f.tensor_id, tvb(pos, 2))
    sub:add(f.dtype, tvb(pos + 2, 1))
    sub:add(f.rank, tvb(pos + 3, 1))
    for d = 0, rank - 1 do
      sub:add(f.dim, tvb(pos + 4 + 4 * d, 4))
    end
    sub:add(f.shape, tvb(pos + 4, 4 * rank), shape)
    sub:add(f.profile, tvb(pos + size - 1, 1))
    pos = pos + size
  end
  if pos < stop then
    tree:add_proto_expert_info(e_malformed, (stop - pos) .. " bytes after the last tensor descriptor")
  end
  return string.format("AIPS id=%d partition=%d tensors=%d", id, partition, count)
end

local function align8(n)
  return math.floor((n + 7) / 8) * 8
end

local function dissect_data(tvb, tree, offset, stop)
  if remaining(tvb, offset, stop) < 4 then
    tree:add_proto_expert_info(e_malformed, "data unit value shorter than 4 bytes")
    return "DATA (malformed)"
  end
  tree:add(f.data_aips_id, tvb(offset, 2))
  tree:add(f.data_tensors, tvb(offset + 2, 2))
  local aips_id, count = tvb(offset, 2):uint(), tvb(offset + 2, 2):uint()
  local pos = offset + 4
  local entries = {}
  for index = 0, count - 1 do
    if pos + 12 > stop then
      tree:add_proto_expert_info(e_malformed, "tensor entry " .. index .. " cut short")
      return string.format("DATA aips=%d (malformed)", aips_id)
    end
    local param_length = tvb(pos + 3, 1):uint()
    local size = 12 + param_length
    if pos + size > stop then
      tree:add_proto_expert_info(e_malformed, "tensor entry " .. index .. " cut short")
      return string.format("DATA aips=%d (malformed)", aips_id)
    end
    local sub = tree:add(proto, tvb(pos, size), string.format("Tensor entry %d: tensor_id %d, profile %s, %d bytes",
      index, tvb(pos, 2):uint(), profile_names[tvb(pos + 2, 1):uint()] or tostring(tvb(pos + 2, 1):uint()),
      tvb(pos + 8, 4):uint()))
    sub:add(f.entry_tensor_id, tvb(pos, 2))
    sub:add(f.entry_profile, tvb(pos + 2, 1))
    sub:add(f.param_length, tvb(pos + 3, 1))
    sub:add(f.inferred, tvb(pos + 4, 4))
    sub:add(f.payload_length, tvb(pos + 8, 4))
    if param_length > 0 then
      local params = sub:add(f.params, tvb(pos + 12, param_length))
      if param_length == 9 then -- int8 affine: scale f64 big-endian, zero_point i8 (docs/FORMAT.md, 7.1)
        params:add(f.scale, tvb(pos + 12, 8))
        params:add(f.zero_point, tvb(pos + 20, 1))
      end
    end
    entries[#entries + 1] = { sub = sub, length = tvb(pos + 8, 4):uint() }
    pos = pos + size
  end
  local relative = pos - offset
  for index, entry in ipairs(entries) do
    local start = offset + align8(relative)
    if start > pos then
      tree:add(f.padding, tvb(pos, start - pos))
    end
    if start + entry.length > stop then
      tree:add_proto_expert_info(e_malformed, "payload " .. (index - 1) .. " runs past the unit")
      return string.format("DATA aips=%d (malformed)", aips_id)
    end
    if entry.length > 0 then
      entry.sub:add(f.payload, tvb(start, entry.length))
    end
    pos = start + entry.length
    relative = pos - offset
  end
  if pos < stop then
    tree:add_proto_expert_info(e_malformed, (stop - pos) .. " bytes after the last payload")
  end
  return string.format("DATA aips=%d tensors=%d", aips_id, count)
end

local function dissect_unit(tvb, pinfo, tree)
  local kind = tvb(0, 1):uint()
  local length = tvb(1, 4):uint()
  local name = unit_names[kind] or (kind == 0 and "reserved" or ("undefined " .. kind))
  local unit = tree:add(proto, tvb(0, HEADER + length), "splitbed " .. name .. " unit")
  unit:add(f.type, tvb(0, 1))
  unit:add(f.length, tvb(1, 4))
  local summary = name
  if length > 0 then
    local value = tvb(HEADER, length)
    if kind == 1 then
      summary = dissect_aips(tvb, unit, HEADER, HEADER + length)
    elseif kind == 2 then
      summary = dissect_data(tvb, unit, HEADER, HEADER + length)
    elseif kind >= 0xF0 and kind ~= 0xF8 then
      unit:add(f.json, value, value:string(ENC_UTF_8))
    else
      unit:add(f.value, value)
    end
  end
  pinfo.cols.protocol:set("splitbed")
  local info = tostring(pinfo.cols.info)
  if not string.find(info, "%[splitbed%]") then
    pinfo.cols.info:set("[splitbed] " .. summary)
  else
    pinfo.cols.info:append(", " .. summary)
  end
  return HEADER + length
end

local function unit_length(tvb, pinfo, offset)
  return HEADER + tvb(offset + 1, 4):uint()
end

function proto.dissector(tvb, pinfo, tree)
  dissect_tcp_pdus(tvb, tree, HEADER, unit_length, dissect_unit)
  return tvb:len()
end

-- A plausible unit start: a known type, a length under the receivers' cap, and for the types whose value has
-- a fixed opening: JSON control units start with '{', an AIPS with format_version 1.
local function heuristic(tvb, pinfo, tree)
  if not proto.prefs.heuristic or tvb:len() < HEADER + 1 then
    return false
  end
  local kind = tvb(0, 1):uint()
  local length = tvb(1, 4):uint()
  if not unit_names[kind] or kind == 0 or length > MAX_UNIT or length == 0 then
    return false
  end
  local first = tvb(HEADER, 1):uint()
  if kind >= 0xF0 and kind ~= 0xF8 and first ~= 0x7B then -- '{'
    return false
  end
  if kind == 1 and first ~= 1 then
    return false
  end
  if kind == 2 and length < 4 then
    return false
  end
  pinfo.conversation = proto
  proto.dissector(tvb, pinfo, tree)
  return true
end
proto:register_heuristic("tcp", heuristic)

local port_table = DissectorTable.get("tcp.port")
port_table:add_for_decode_as(proto)
local registered_port = 0
function proto.prefs_changed()
  if registered_port ~= 0 then
    port_table:remove(registered_port, proto)
  end
  registered_port = proto.prefs.tcp_port
  if registered_port ~= 0 then
    port_table:add(registered_port, proto)
  end
end
