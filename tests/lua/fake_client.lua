--[[
  A stand-in for `lr-bridge enhance --json` used by the Lua unit tests (the end-to-end test runs
  the real client). Usage: lua5.4 fake_client.lua MODE RECORD_FILE enhance --json [opts] FILE...

  It appends its arguments to RECORD_FILE (each followed by a NUL, a run ended by one more NUL),
  writes its JSON lines the way Python's json.dumps does (non-ASCII as \u escapes), really
  creates the output files, and exits with the contract's status. MODE:
    ok              every file succeeds
    fail_second     the second file fails with an error event (exit 1)
    missing_output  a result names an output that does not exist (exit 0)
    unreachable     an error event without a file, then exit 3
    silent_crash    a message on stderr only, exit 3
    chatty          a non-JSON line before the events, then like ok
]]

local mode, record_file = arg[1], arg[2]
local args = { table.unpack(arg, 3) }

local record = assert(io.open(record_file, "ab"))
for _, a in ipairs(args) do
  record:write(a, "\0")
end
record:write("\0")
record:close()

local function json_string(text)
  local out = { '"' }
  for _, code in utf8.codes(text) do
    local c = code < 0x80 and string.char(code) or nil
    if c == '"' or c == "\\" then
      out[#out + 1] = "\\" .. c
    elseif code < 0x20 or code >= 0x7f then
      if code >= 0x10000 then
        local v = code - 0x10000
        out[#out + 1] = string.format("\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
      else
        out[#out + 1] = string.format("\\u%04x", code)
      end
    else
      out[#out + 1] = c
    end
  end
  out[#out + 1] = '"'
  return table.concat(out)
end

local function emit(fields)
  local parts = {}
  for _, kv in ipairs(fields) do
    local key, value = kv[1], kv[2]
    local encoded
    if type(value) == "string" then
      encoded = json_string(value)
    elseif value == nil then
      encoded = "null"
    else
      encoded = tostring(value)
    end
    parts[#parts + 1] = json_string(key) .. ": " .. encoded
  end
  io.stdout:write("{", table.concat(parts, ", "), "}\n")
  io.stdout:flush()
end

local files, output_dir, fmt = {}, nil, "dng"
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--output-dir" then
    output_dir = args[i + 1]; i = i + 2
  elseif a == "--format" then
    fmt = args[i + 1]; i = i + 2
  elseif a == "--ev" or a == "--strength" or a == "--endpoint" then
    i = i + 2
  elseif a == "enhance" or a == "--json" then
    i = i + 1
  else
    files[#files + 1] = a; i = i + 1
  end
end

if mode == "silent_crash" then
  io.stderr:write("Traceback (most recent call last):\nlr-bridge: cannot connect to tcp://127.0.0.1:1\n")
  os.exit(3)
end
local job = "job-42"
if mode == "unreachable" then
  emit({ { "event", "error" }, { "job", nil }, { "file", nil }, { "code", "unreachable" },
    { "message", "the daemon did not start: no weights found" } })
  os.exit(3)
end
if mode == "chatty" then
  io.stdout:write("loading model...\n")
end
emit({ { "event", "accepted" }, { "job", job }, { "files", #files } })
local ok, failed = 0, 0
for index, file in ipairs(files) do
  local folder, stem = file:match("^(.*)/([^/]*)%.[^./]*$")
  local output = (output_dir or folder) .. "/" .. stem .. "_lowlight." .. fmt
  for _, fraction in ipairs({ 0, 0.5, 1 }) do
    emit({ { "event", "progress" }, { "job", job }, { "file", file }, { "index", index - 1 },
      { "total", #files }, { "fraction", fraction } })
  end
  if mode == "fail_second" and index == 2 then
    failed = failed + 1
    emit({ { "event", "error" }, { "job", job }, { "file", file }, { "code", "decode" },
      { "message", file .. ": not a raw file LibRaw can read" } })
  else
    if mode ~= "missing_output" then
      os.execute("mkdir -p '" .. (output_dir or folder):gsub("'", "'\\''") .. "'")
      assert(io.open(output, "wb")):close()
    end
    ok = ok + 1
    emit({ { "event", "result" }, { "job", job }, { "file", file }, { "output", output }, { "ev", 5.25 },
      { "seconds", 0.5 } })
  end
end
emit({ { "event", "done" }, { "job", job }, { "ok", ok }, { "failed", failed }, { "cancelled", false } })
os.exit(failed == 0 and 0 or 1)
