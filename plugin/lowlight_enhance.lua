--[[
  lowlight_enhance.lua - "enhance low light" for darktable

  Sends the selected raw photos to the lowlight-raw daemon through its `lr-bridge` client,
  imports each result beside its source, groups it with the source and copies the source's
  tags, rating, colour labels, title and description, then selects the results. Its own
  results and non-raw images in the selection are skipped. The source files are never modified.
  Each run's outcome, file by file, is kept in <configdir>/lowlight_enhance.log.

  This script does no image processing and speaks no ZeroMQ: it runs
  `lr-bridge enhance --json ... FILE...` in the background and reads the client's JSON lines.

  USAGE
    * install lowlight-raw (it provides the `lr-bridge` command), then either run
      `lr-bridge install-darktable-plugin`, or copy this file to
      ~/.config/darktable/lua/lowlight/lowlight_enhance.lua and add the line
      require "lowlight/lowlight_enhance"
      to ~/.config/darktable/luarc (or start it from the script manager)
    * select photos in the lighttable and press "enhance low light" in the
      "actions on selection" module ("selected image[s]" in darktable 4.x), or assign a
      key to "lua > enhance low light" in preferences > shortcuts
    * settings are in preferences > lua options

  Copyright (C) 2026 the lowlight-raw authors. GPL-3.0-or-later.
]]

local dt = require "darktable"

local MODULE = "lowlight_enhance"
local MIN_API = { 9, 0, 0 } -- darktable 4.2: named image actions, shortcut events, background jobs
local POLL_MS = 200
local EXIT_SOME_FAILED, EXIT_UNREACHABLE, EXIT_CANCELLED = 1, 3, 130
local EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND = 126, 127
-- facts the Python side defines; tests/test_plugin_lua.py checks these copies against them
local FORMATS = { "DNG", "TIFF", "JPEG" } -- lowlight_raw.options.FORMATS, upper case
local EV_RANGE = { -4, 12 } -- lowlight_raw.options.MIN_EV, MAX_MANUAL_EV
local STRENGTH_RANGE = { 0.0, 1.0 } -- lowlight_raw.options.MIN_STRENGTH, MAX_STRENGTH
local MODELS = { "auto", "fast", "fast-licence-clean", "quality" } -- lowlight_raw.registry.MODEL_CHOICES
local OUTPUT_SUFFIX = "_lowlight" -- lowlight_raw.writers.OUTPUT_SUFFIX: <stem>_lowlight[_N].<ext>
-- images darktable imports that hold no camera mosaic (darktable's `is_raw` is only known once
-- an image has been loaded, so the extension decides)
local NOT_RAW_EXTENSIONS = {}
for ext in ("avif bmp exr gif hdr heic heif j2k jp2 jpeg jpg jxl pfm pgm png pnm ppm qoi tif tiff webp"):gmatch("%S+") do
  NOT_RAW_EXTENSIONS[ext] = true
end
local REPORT_NAME = "lowlight_enhance.log" -- every run, file by file, in darktable's config folder
local COLOR_LABELS = { "red", "yellow", "green", "blue", "purple" }
local TEXT_METADATA = { "title", "description" }

local function _(msg)
  return dt.gettext.gettext(msg)
end

local ACTION_LABEL = _("enhance low light")

local script_data = {}
script_data.metadata = {
  name = ACTION_LABEL,
  purpose = _("rescue badly underexposed raw photos with the lowlight-raw network"),
  author = "lowlight-raw authors",
  help = _("select underexposed raw photos and press 'enhance low light' (actions on selection module) " ..
    "or its shortcut; the results are imported and grouped with their sources. " ..
    "Settings: preferences > lua options. Needs the lr-bridge client of lowlight-raw."),
}
script_data.destroy_method = nil -- script_manager: destroy() removes everything, nothing is hidden
script_data.restart = nil
script_data.show = nil

-- the helpers and handlers below are exported for the unit tests and for driver scripts
local M = {}
script_data.lowlight = M
M.CONSTANTS = {
  formats = FORMATS, ev_range = EV_RANGE, strength_range = STRENGTH_RANGE, models = MODELS,
  output_suffix = OUTPUT_SUFFIX,
}

--- What script_manager calls to switch the plugin off: set below once something is registered.
script_data.destroy = function() end

-- ---------------------------------------------------------------------------
-- messages: every user-facing message is also logged
-- ---------------------------------------------------------------------------

local function tell(message)
  dt.print(message)
  dt.print_log(MODULE .. ": " .. message)
end

local function warn(message)
  dt.print(message)
  dt.print_error(MODULE .. ": " .. message)
end

-- ---------------------------------------------------------------------------
-- API version check
-- ---------------------------------------------------------------------------

--- Whether the version triple `have` ({major, minor, patch}) is at least `need`.
function M.version_at_least(have, need)
  for i = 1, 3 do
    local a, b = have[i] or 0, need[i] or 0
    if a ~= b then
      return a > b
    end
  end
  return true
end

local function running_api()
  local c = dt.configuration
  return { c.api_version_major, c.api_version_minor, c.api_version_patch }
end

-- ---------------------------------------------------------------------------
-- shell quoting and the client command line
-- ---------------------------------------------------------------------------

--- `text` as one POSIX shell word: single quotes, each ' written as '\''.
function M.shell_quote(text)
  return "'" .. tostring(text):gsub("'", "'\\''") .. "'"
end

--- Parse the exposure setting: "auto" (any case, or empty) or a number of EV stops.
--- Returns the value for `--ev` ("auto" or a number as text) or nil and a message.
function M.parse_ev(text)
  local value = (text or ""):match("^%s*(.-)%s*$")
  if value == "" or value:lower() == "auto" then
    return "auto"
  end
  local number = tonumber(value)
  if number == nil or number ~= number or number < EV_RANGE[1] or number > EV_RANGE[2] then
    return nil, string.format(_("exposure must be 'auto' or a number of stops from %g to %g, not '%s'"),
      EV_RANGE[1], EV_RANGE[2], value)
  end
  return string.format("%g", number)
end

--- The output folder for a source in `source_folder`: nil (beside the source) for an empty
--- pattern, else the pattern with $(FILE_FOLDER) and $(HOME) (and a leading ~) expanded.
function M.expand_output_folder(pattern, source_folder, home)
  local folder = (pattern or ""):match("^%s*(.-)%s*$")
  if folder == "" then
    return nil
  end
  home = home or os.getenv("HOME") or ""
  folder = folder:gsub("^~/", function() return home .. "/" end)
  folder = folder:gsub("%$%(FILE_FOLDER%)", function() return source_folder end)
  folder = folder:gsub("%$%(HOME%)", function() return home end)
  return (folder:gsub("(.)/+$", "%1"))
end

--- The shell command that runs the client on `files` with `settings` ({client, format, linear,
--- model, ev, strength, endpoint}) writing into `output_dir` (nil: beside the sources).
function M.build_command(settings, files, output_dir)
  local q = M.shell_quote
  local words = {
    q(settings.client), "enhance", "--json",
    "--format", q(settings.format:lower()),
    "--ev", q(settings.ev),
    "--strength", q(string.format("%g", settings.strength)),
  }
  if settings.linear and settings.format == "TIFF" then
    words[#words + 1] = "--linear"
  end
  if settings.model and settings.model ~= "auto" then
    words[#words + 1] = "--model " .. q(settings.model)
  end
  if output_dir then
    words[#words + 1] = "--output-dir " .. q(output_dir)
  end
  if settings.endpoint ~= "" then
    words[#words + 1] = "--endpoint " .. q(settings.endpoint)
  end
  for _, file in ipairs(files) do
    words[#words + 1] = q(file)
  end
  return table.concat(words, " ")
end

-- ---------------------------------------------------------------------------
-- JSON: a small decoder for the client's one-object-per-line output
-- ---------------------------------------------------------------------------

local function utf8_bytes(code)
  -- Python writes undecodable file-name bytes as lone surrogates U+DC80..U+DCFF
  -- (surrogateescape): turn them back into those raw bytes so paths match darktable's
  if code >= 0xDC80 and code <= 0xDCFF then
    return string.char(code - 0xDC00)
  end
  return utf8.char(code)
end

local json_decode_value

local function json_error(text, pos, what)
  error({ json = string.format("%s at character %d", what, pos) }, 0)
end

local function json_skip(text, pos)
  return text:find("[^ \t\r\n]", pos) or #text + 1
end

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function json_string(text, pos)
  local parts, i = {}, pos + 1
  while true do
    local c = text:sub(i, i)
    if c == "" then
      json_error(text, pos, "unterminated string")
    elseif c == '"' then
      return table.concat(parts), i + 1
    elseif c == "\\" then
      local e = text:sub(i + 1, i + 1)
      if ESCAPES[e] then
        parts[#parts + 1] = ESCAPES[e]
        i = i + 2
      elseif e == "u" then
        local code = tonumber(text:sub(i + 2, i + 5):match("^%x%x%x%x$") or "", 16)
        if not code then json_error(text, i, "bad \\u escape") end
        i = i + 6
        if code >= 0xD800 and code <= 0xDBFF then
          local low = tonumber(text:sub(i, i + 5):match("^\\u(%x%x%x%x)$") or "", 16)
          if low and low >= 0xDC00 and low <= 0xDFFF then
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            i = i + 6
          end
        end
        parts[#parts + 1] = utf8_bytes(code)
      else
        json_error(text, i, "bad escape")
      end
    elseif c:byte() < 0x20 then
      json_error(text, i, "control character in string")
    else
      local stop = text:find('["\\%c]', i) or #text + 1
      parts[#parts + 1] = text:sub(i, stop - 1)
      i = stop
    end
  end
end

local function json_container(text, pos, closing, read_item)
  local container, i = {}, json_skip(text, pos + 1)
  if text:sub(i, i) == closing then
    return container, i + 1
  end
  while true do
    i = read_item(container, i)
    i = json_skip(text, i)
    local c = text:sub(i, i)
    if c == closing then
      return container, i + 1
    elseif c ~= "," then
      json_error(text, i, "expected ',' or '" .. closing .. "'")
    end
    i = json_skip(text, i + 1)
  end
end

json_decode_value = function(text, pos)
  pos = json_skip(text, pos)
  local c = text:sub(pos, pos)
  if c == "{" then
    return json_container(text, pos, "}", function(object, i)
      if text:sub(i, i) ~= '"' then json_error(text, i, "expected a key") end
      local key, after = json_string(text, i)
      after = json_skip(text, after)
      if text:sub(after, after) ~= ":" then json_error(text, after, "expected ':'") end
      local value
      value, after = json_decode_value(text, after + 1)
      object[key] = value
      return after
    end)
  elseif c == "[" then
    return json_container(text, pos, "]", function(array, i)
      local value, after = json_decode_value(text, i)
      array[#array + 1] = value
      return after
    end)
  elseif c == '"' then
    return json_string(text, pos)
  end
  for literal, value in pairs({ ["true"] = true, ["false"] = false, ["null"] = M.null }) do
    if text:sub(pos, pos + #literal - 1) == literal then
      return value, pos + #literal
    end
  end
  local number = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if number and number ~= "" and tonumber(number) then
    return tonumber(number), pos + #number
  end
  json_error(text, pos, "unexpected " .. (c == "" and "end of text" or "'" .. c .. "'"))
end

--- JSON null decodes to this sentinel (distinct from a missing key).
M.null = setmetatable({}, { __tostring = function() return "null" end })

--- Decode one JSON text. Returns the value, or nil and a message.
function M.json_decode(text)
  local ok, value, after = pcall(json_decode_value, text, 1)
  if not ok then
    if type(value) == "table" and value.json then
      return nil, value.json
    end
    error(value, 0)
  end
  if json_skip(text, after) <= #text then
    return nil, string.format("trailing text at character %d", after)
  end
  return value
end

local EVENT_FIELDS = {
  accepted = { job = "string", files = "number" },
  progress = { file = "string", index = "number", total = "number", fraction = "number" },
  result = { file = "string", output = "string" },
  error = { code = "string", message = "string" },
  done = { ok = "number", failed = "number", cancelled = "boolean" },
}

--- Parse one line of `lr-bridge enhance --json` output into an event table.
--- Returns the event, or nil and why the line is not one.
function M.parse_event_line(line)
  local event, err = M.json_decode(line)
  if event == nil then
    return nil, err
  end
  if type(event) ~= "table" or type(event.event) ~= "string" then
    return nil, "not an event object"
  end
  local fields = EVENT_FIELDS[event.event]
  if fields == nil then
    return nil, "unknown event '" .. event.event .. "'"
  end
  for name, kind in pairs(fields) do
    if type(event[name]) ~= kind then
      return nil, string.format("%s event without a %s '%s'", event.event, kind, name)
    end
  end
  for name, value in pairs(event) do
    if value == M.null then
      event[name] = nil
    end
  end
  return event
end

-- ---------------------------------------------------------------------------
-- preferences
-- ---------------------------------------------------------------------------

--- The preferences, in the order *preferences > lua options* shows them: name, type, label,
--- tooltip, default, extra register arguments.
M.PREFERENCES = {
  { "format", "enum", _("low light: output format"),
    _("file format of the enhanced photos"), "DNG", table.unpack(FORMATS) },
  { "linear", "bool", _("low light: linear TIFF"),
    _("TIFF only: linear values with a linear profile instead of the sRGB curve"), false },
  { "ev", "string", _("low light: exposure"),
    string.format(_("'auto' to let the network choose, or stops of brightening from %g to %g such as 5 or 6.5"),
      EV_RANGE[1], EV_RANGE[2]), "auto" },
  { "strength", "float", _("low light: strength"),
    _("1 = the network's result, 0 = plain brightening; values between blend the two"),
    STRENGTH_RANGE[2], STRENGTH_RANGE[1], STRENGTH_RANGE[2], 0.05 },
  { "model", "enum", _("low light: model"),
    _("auto = the daemon's choice (quality on a GPU when installed, else fast); fast; "
      .. "fast-licence-clean = fast trained on openly licensed photos only (weaker; Bayer raws only); quality"),
    MODELS[1], table.unpack(MODELS) },
  { "output_folder", "string", _("low light: output folder"),
    _("empty = beside the source; variables: $(FILE_FOLDER), $(HOME), e.g. $(FILE_FOLDER)/lowlight"), "" },
  { "group_leader", "bool", _("low light: make result the group leader"),
    _("show the enhanced photo instead of the dark source when the group is collapsed"), true },
  { "client", "string", _("low light: client command"),
    _("the lr-bridge command (a name on PATH or a full path)"), "lr-bridge" },
  { "endpoint", "string", _("low light: daemon endpoint"),
    _("empty = the local daemon (started when needed); or tcp://HOST:PORT of a remote one"), "" },
}

-- darktable lists a script's Lua options in the reverse order of registration
local function register_preferences()
  for i = #M.PREFERENCES, 1, -1 do
    dt.preferences.register(MODULE, table.unpack(M.PREFERENCES[i]))
  end
end

--- The current settings: {format, linear, ev, strength, model, output_folder, group_leader,
--- client, endpoint}, or nil and a message when one is unusable.
function M.read_settings()
  local settings = {}
  for _, pref in ipairs(M.PREFERENCES) do
    settings[pref[1]] = dt.preferences.read(MODULE, pref[1], pref[2])
  end
  settings.client = settings.client:match("^%s*(.-)%s*$"):gsub("^~/", function() return (os.getenv("HOME") or "") .. "/" end)
  if settings.client == "" then
    settings.client = "lr-bridge"
  end
  settings.endpoint = settings.endpoint:match("^%s*(.-)%s*$")
  local ev, err = M.parse_ev(settings.ev)
  if ev == nil then
    return nil, err
  end
  settings.ev = ev
  return settings
end

-- ---------------------------------------------------------------------------
-- running the client in the background
-- ---------------------------------------------------------------------------

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

--- Start `command` detached; its stdout/stderr/pid/exit status go to files named after a
--- fresh temporary file. Returns the run record polled by `next_lines`.
function M.start_client(command)
  local base = os.tmpname()
  local run = {
    base = base, out = base .. ".out", err = base .. ".err", pid_file = base .. ".pid",
    rc_file = base .. ".rc", offset = 0, partial = "",
  }
  local q = M.shell_quote
  -- the exit status appears under its final name only once complete
  os.execute(string.format(
    "{ %s >%s 2>%s </dev/null & echo $! >%s; wait $!; echo $? >%s; mv %s %s; } >/dev/null 2>&1 &",
    command, q(run.out), q(run.err), q(run.pid_file), q(base .. ".rc.tmp"), q(base .. ".rc.tmp"), q(run.rc_file)))
  return run
end

--- The complete lines the client wrote since the last call (a partial last line waits).
function M.next_lines(run)
  local f = io.open(run.out, "rb")
  if not f then
    return {}
  end
  f:seek("set", run.offset)
  local chunk = f:read("a") or ""
  f:close()
  run.offset = run.offset + #chunk
  local text = run.partial .. chunk
  local lines, last = {}, 1
  for line, stop in text:gmatch("([^\n]*)\n()") do
    lines[#lines + 1] = line
    last = stop
  end
  run.partial = text:sub(last)
  return lines
end

--- The client's exit status once it has ended, else nil.
function M.exit_status(run)
  local text = read_file(run.rc_file)
  return text and tonumber(text:match("%d+"))
end

--- Ask the client to cancel its job: SIGTERM makes it cancel on the daemon and exit 130.
--- Returns false while the client's pid is not known yet.
function M.signal_cancel(run)
  local pid = tonumber((read_file(run.pid_file) or ""):match("%d+"))
  if pid == nil then
    return false
  end
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  return true
end

--- The last non-empty line the client wrote to stderr ("" if none).
function M.stderr_tail(run)
  local last = ""
  for line in (read_file(run.err) or ""):gmatch("[^\n]+") do
    last = line
  end
  return last
end

--- Delete the files of a finished run.
function M.remove_run_files(run)
  for _, path in ipairs({ run.out, run.err, run.pid_file, run.rc_file, run.base }) do
    os.remove(path)
  end
end

--- Plain words for a client exit status that is not 0 (nil when per-file errors said it all).
function M.exit_message(status, stderr_tail, client)
  if status == EXIT_SOME_FAILED or status == EXIT_CANCELLED then
    return nil
  elseif status == EXIT_UNREACHABLE then
    return _("could not reach or start the lowlight daemon") ..
      (stderr_tail ~= "" and (": " .. stderr_tail) or "")
  elseif status == EXIT_NOT_FOUND then
    return string.format(_("client '%s' not found: install lowlight-raw or set its path in preferences > lua options"), client)
  elseif status == EXIT_NOT_EXECUTABLE then
    return string.format(_("client '%s' cannot be run (not executable)"), client)
  end
  return string.format(_("client '%s' failed (exit status %d)"), client, status) ..
    (stderr_tail ~= "" and (": " .. stderr_tail) or "")
end

-- ---------------------------------------------------------------------------
-- results: import, group, copy metadata
-- ---------------------------------------------------------------------------

local function image_file(image)
  return image.path .. "/" .. image.filename
end

local function basename(path)
  return path:match("([^/]*)$")
end

--- Copy tags (not darktable's own), rating, colour labels, title and description.
function M.copy_metadata(source, target)
  for _, tag in ipairs(dt.tags.get_tags(source)) do
    if not tag.name:match("^darktable|") then
      dt.tags.attach(tag, target)
    end
  end
  target.rating = source.rating
  for _, color in ipairs(COLOR_LABELS) do
    target[color] = source[color]
  end
  for _, field in ipairs(TEXT_METADATA) do
    target[field] = source[field]
  end
end

--- Import `output`, group it with `source` (optionally as leader) and copy the source's
--- metadata. Returns the imported image, or nil and a message.
function M.import_result(source, output, make_leader)
  -- dt.database.import of a missing file ends darktable: check first
  if not file_exists(output) then
    return nil, string.format(_("the result %s does not exist"), output)
  end
  local ok, result = pcall(dt.database.import, output)
  if not ok or result == nil then
    return nil, string.format(_("could not import %s: %s"), output, tostring(result))
  end
  result:group_with(source)
  if make_leader then
    result:make_group_leader()
  end
  M.copy_metadata(source, result)
  return result
end

-- ---------------------------------------------------------------------------
-- the batch
-- ---------------------------------------------------------------------------

local busy = false
local running = nil -- the state of the running batch (its cancel flag), for destroy()

--- Whether a batch is running (one at a time).
function M.is_busy()
  return busy
end

--- Why `image` is not sent to the daemon (nil: it is): one of the plugin's own results
--- (<stem>_lowlight[_N].<ext>: already enhanced) or not a raw file (by extension).
function M.skip_reason(image)
  local stem, ext = image.filename:match("^(.*)%.([^.]*)$")
  stem = stem or image.filename
  if stem:match(OUTPUT_SUFFIX .. "$") or stem:match(OUTPUT_SUFFIX .. "_%d+$") then
    return _("a low light result")
  end
  if ext and NOT_RAW_EXTENSIONS[ext:lower()] then
    return _("not a raw file")
  end
  return nil
end

--- The file that keeps every run's outcome, file by file.
function M.report_path()
  return dt.configuration.config_dir .. "/" .. REPORT_NAME
end

-- append the run's summary and its lines to the report; returns the report's path or nil
local function write_report(summary, lines)
  local path = M.report_path()
  local f, err = io.open(path, "a")
  if not f then
    warn(string.format(_("low light: cannot write the report %s: %s"), path, tostring(err)))
    return nil
  end
  f:write(os.date("%Y-%m-%d %H:%M:%S"), "  ", summary, "\n")
  for _, line in ipairs(lines) do
    f:write("  ", line, "\n")
  end
  f:close()
  return path
end

-- the selected images as batches that share one output folder, in selection order
local function batches_by_output_folder(images, pattern)
  local batches, by_folder = {}, {}
  for _, image in ipairs(images) do
    local folder = M.expand_output_folder(pattern, image.path)
    local key = folder or ""
    if by_folder[key] == nil then
      by_folder[key] = { output_dir = folder, images = {} }
      batches[#batches + 1] = by_folder[key]
    end
    table.insert(by_folder[key].images, image)
  end
  return batches
end

-- handle one client event; `state` holds the batch's counters, report lines and source lookup
local function handle_event(event, state, settings)
  if event.event == "accepted" then
    dt.print_log(string.format("%s: daemon job %s (%d photo(s))", MODULE, event.job, event.files))
  elseif event.event == "progress" then
    local done = state.files_before + event.index + math.max(0, math.min(1, event.fraction))
    state.job.percent = math.min(1, done / state.total)
  elseif event.event == "result" then
    local source = state.sources[event.file] or state.sources_by_name[basename(event.file)]
    local imported, err
    if source == nil then
      err = string.format(_("the client returned a result for an unknown photo %s"), event.file)
    else
      imported, err = M.import_result(source, event.output, settings.group_leader)
    end
    if imported then
      state.ok = state.ok + 1
      state.imported[#state.imported + 1] = imported
      local line = string.format("%s -> %s (%+.2f EV)", event.file, event.output, event.ev or 0)
      state.report[#state.report + 1] = "ok      " .. line
      dt.print_log(MODULE .. ": " .. line)
    else
      state.failed = state.failed + 1
      state.report[#state.report + 1] = string.format("failed  %s: %s", event.file, err)
      warn(string.format(_("low light: %s: %s"), basename(event.file), err))
    end
  elseif event.event == "error" then
    if event.file then
      state.failed = state.failed + 1
      state.report[#state.report + 1] = string.format("failed  %s: %s", event.file, event.message)
      warn(string.format(_("low light: %s failed: %s"), basename(event.file), event.message))
    else
      state.general_error = event.message
      state.report[#state.report + 1] = "error   " .. event.message
      warn(string.format(_("low light: %s"), event.message))
    end
  elseif event.event == "done" then
    state.cancelled = state.cancelled or event.cancelled
  end
end

-- run the client for one group of images; returns false when the batch must stop
local function run_batch(batch, state, settings)
  local files = {}
  state.sources, state.sources_by_name = {}, {}
  for _, image in ipairs(batch.images) do
    local file = image_file(image)
    files[#files + 1] = file
    state.sources[file] = image
    state.sources_by_name[image.filename] = image
  end
  local command = M.build_command(settings, files, batch.output_dir)
  dt.print_log(MODULE .. ": running " .. command)
  local run = M.start_client(command)
  local status, cancel_sent = nil, false
  repeat
    if state.cancel_requested and not cancel_sent then
      cancel_sent = M.signal_cancel(run)
    end
    if dt.control.ending then
      M.signal_cancel(run)
      state.cancelled = true
      break
    end
    dt.control.sleep(POLL_MS)
    status = M.exit_status(run)
    for _, line in ipairs(M.next_lines(run)) do
      local event, err = M.parse_event_line(line)
      if event then
        handle_event(event, state, settings)
      elseif line ~= "" then
        dt.print_log(string.format("%s: ignored client output (%s): %s", MODULE, err, line))
      end
    end
  until status ~= nil
  -- an error event without a file already told the user why the client stopped
  local message = status and status ~= 0 and not state.general_error and M.exit_message(status, M.stderr_tail(run), settings.client)
  if message then
    warn(_("low light: ") .. message)
    state.report[#state.report + 1] = "error   " .. message
  end
  M.remove_run_files(run)
  state.files_before = state.files_before + #files
  if status == EXIT_CANCELLED then
    state.cancelled = true
  end
  -- a missing client or an unreachable daemon fails every later group the same way
  return not state.cancelled and status ~= EXIT_UNREACHABLE and status ~= EXIT_NOT_FOUND
    and status ~= EXIT_NOT_EXECUTABLE
end

-- where the results went, in words: one folder, or how many
local function where_results_went(imported)
  local folders, count, first = {}, 0, nil
  for _, image in ipairs(imported) do
    if not folders[image.path] then
      folders[image.path] = true
      count = count + 1
      first = first or image.path
    end
  end
  if count == 1 then
    return string.format(_("in %s"), first)
  end
  return string.format(_("in %d folders"), count)
end

-- the one-line summary of a batch
local function summary_line(state, total)
  local summary = string.format(_("low light: %d of %d photo(s) enhanced"), state.ok, total)
  if state.failed > 0 then
    summary = summary .. string.format(_(", %d failed"), state.failed)
  end
  if state.cancelled then
    summary = summary .. _(", cancelled")
  end
  if state.skipped > 0 then
    summary = summary .. string.format(_(", %d skipped (low light results or not raw)"), state.skipped)
  end
  if #state.imported > 0 then
    summary = summary .. string.format(_("; results selected, grouped with their sources %s"),
      where_results_went(state.imported))
  end
  return summary
end

--- Enhance `images` (darktable images) with the current preferences. Runs until the
--- client(s) finish; returns the summary {ok, failed, skipped, cancelled, imported, report}.
function M.enhance_images(images)
  if busy then
    tell(_("low light: a batch is already running; wait for it or cancel it"))
    return nil
  end
  if #images == 0 then
    tell(_("low light: select the photos to enhance first"))
    return nil
  end
  local settings, err = M.read_settings()
  if settings == nil then
    warn(_("low light: ") .. err)
    return nil
  end
  local state = { ok = 0, failed = 0, skipped = 0, cancelled = false, files_before = 0, imported = {}, report = {} }
  local wanted = {}
  for _, image in ipairs(images) do
    local reason = M.skip_reason(image)
    if reason then
      state.skipped = state.skipped + 1
      state.report[#state.report + 1] = string.format("skipped %s: %s", image_file(image), reason)
    else
      wanted[#wanted + 1] = image
    end
  end
  state.total = #wanted
  if #wanted > 0 then
    busy, running = true, state
    state.job = dt.gui.create_job(string.format(_("enhancing %d photo(s) in low light"), #wanted), true,
      function() state.cancel_requested = true end)
    local ok, failure = pcall(function()
      for _, batch in ipairs(batches_by_output_folder(wanted, settings.output_folder)) do
        if not run_batch(batch, state, settings) then
          break
        end
      end
    end)
    busy, running = false, nil
    if state.job.valid then
      state.job.valid = false
    end
    if not ok then
      warn(_("low light: internal error: ") .. tostring(failure))
      state.report[#state.report + 1] = "error   internal error: " .. tostring(failure)
    end
  end
  if #state.imported > 0 then
    -- with grouping on, a result that does not lead its group is hidden: the selection shows it
    dt.gui.selection(state.imported)
  end
  local summary = #wanted > 0 and summary_line(state, #wanted) or
    string.format(_("low light: nothing to enhance, %d skipped (low light results or not raw)"), state.skipped)
  local report = write_report(summary, state.report)
  tell(report and (summary .. string.format(_("; report: %s"), report)) or summary)
  return { ok = state.ok, failed = state.failed, skipped = state.skipped, cancelled = state.cancelled,
    imported = state.imported, report = report }
end

--- The button's handler ("enhance low light" in the lighttable's actions on selection module).
function M.on_button(event, images)
  M.enhance_images(images)
end

--- The shortcut's handler (lua > enhance low light). darktable 5.x does not run it for a
--- dt.gui.action() call made from Lua, so driver scripts call it directly.
function M.on_shortcut(event, shortcut)
  M.enhance_images(dt.gui.action_images)
end

-- ---------------------------------------------------------------------------
-- registration
-- ---------------------------------------------------------------------------

if not M.version_at_least(running_api(), MIN_API) then
  warn(string.format(_("low light: needs darktable 4.2 or newer (Lua API %s); this darktable has Lua API %s"),
    table.concat(MIN_API, "."), dt.configuration.api_version_string))
  return script_data
end

register_preferences()

dt.gui.libs.image.register_action(MODULE, ACTION_LABEL, M.on_button,
  _("brighten and denoise the selected underexposed raw photos; results are grouped with their sources"))

dt.register_event(MODULE, "shortcut", M.on_shortcut, ACTION_LABEL)

script_data.destroy = function()
  if running then
    running.cancel_requested = true -- the batch stops its client at the next poll
  end
  dt.gui.libs.image.destroy_action(MODULE)
  dt.destroy_event(MODULE, "shortcut")
end

return script_data
