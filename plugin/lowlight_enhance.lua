--[[
  lowlight_enhance.lua - "enhance low light" for darktable

  Sends the selected raw photos to the lowlight-raw daemon through its `lr-bridge` client,
  imports each result beside its source, groups it with the source and copies the source's
  tags, rating, colour labels, title and description, then selects the results and shows their
  film roll. A selected result stands for its group's original; originals that already have a
  result and non-raw images are skipped. The source files are never modified.
  Each run's outcome, file by file, is kept in <configdir>/lowlight_enhance.log.

  This script does no image processing and speaks no ZeroMQ: it runs
  `lr-bridge enhance --json ... FILE...` in the background and reads the client's JSON lines.

  USAGE
    * install lowlight-raw (it provides the `lr-bridge` command), then either run
      `lr-bridge install-darktable-plugin` (it also records where lr-bridge is), or copy this file to
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
local FORMATS = { "DNG", "TIFF", "JPEG" } -- lowlight_raw.files.formats.FORMATS, upper case
local EV_RANGE = { -4, 12 } -- lowlight_raw.options.MIN_EV, MAX_MANUAL_EV
local STRENGTH_RANGE = { 0.0, 1.0 } -- lowlight_raw.options.MIN_STRENGTH, MAX_STRENGTH
local MODELS = { "auto", "fast", "fast-licence-clean", "quality" } -- lowlight_raw.networks.catalog.MODEL_CHOICES
local OUTPUT_SUFFIX = "_lowlight" -- lowlight_raw.files.writers.OUTPUT_SUFFIX: <stem>_lowlight[_N].<ext>
-- images darktable imports that hold no camera mosaic (darktable's `is_raw` is only known once
-- an image has been loaded, so the extension decides)
local NOT_RAW_EXTENSIONS = {}
for ext in ("avif bmp exr gif hdr heic heif j2k jp2 jpeg jpg jxl pfm pgm png pnm ppm qoi tif tiff webp"):gmatch("%S+") do
  NOT_RAW_EXTENSIONS[ext] = true
end
local REPORT_NAME = "lowlight_enhance.log" -- every run, file by file, in darktable's config folder
local TOAST_MAX = 80 -- characters: darktable ellipsises a longer message in the middle
local PLACE_MAX = 24 -- characters of a folder name quoted in a message
local DEFAULT_CLIENT = "lr-bridge" -- lr_bridge.darktable_install.CLIENT_NAME
-- what `lr-bridge install-darktable-plugin` found (the client's absolute path, the shipped
-- models), beside this script under its name with .json (lr_bridge.darktable_install.INSTALL_INFO_NAME)
local SCRIPT_FILE = debug.getinfo(1, "S").source:match("^@(.*)$")
local INSTALL_INFO = SCRIPT_FILE and SCRIPT_FILE:gsub("%.lua$", ".json") or nil
local SENSITIVITY_EVENTS = { "selection-changed", "mouse-over-image-changed" } -- what changes the images to act on
local COLOR_LABELS = { "red", "yellow", "green", "blue", "purple" }
local TEXT_METADATA = { "title", "description" }

local function _(msg)
  return dt.gettext.gettext(msg)
end

-- `singular` or `plural` (translated, chosen for `n`), formatted with the other arguments
local function n_(n, singular, plural, ...)
  return string.format(dt.gettext.ngettext(singular, plural, n), ...)
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
  output_suffix = OUTPUT_SUFFIX, toast_max = TOAST_MAX, client = DEFAULT_CLIENT,
}

--- What script_manager calls to switch the plugin off: set below once something is registered.
script_data.destroy = function() end

-- ---------------------------------------------------------------------------
-- messages: every user-facing message fits a toast and is also logged
-- ---------------------------------------------------------------------------

--- `text` cut to at most `limit` characters (UTF-8), its end replaced by "…" when cut.
function M.fit(text, limit)
  local length = utf8.len(text)
  if length == nil then -- not UTF-8 (a file name's own bytes): count bytes
    return #text <= limit and text or text:sub(1, limit - 1) .. "…"
  end
  return length <= limit and text or text:sub(1, utf8.offset(text, limit) - 1) .. "…"
end

local function tell(message)
  dt.print(M.fit(message, TOAST_MAX))
  dt.print_log(MODULE .. ": " .. message)
end

local function warn(message)
  dt.print(M.fit(message, TOAST_MAX))
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
-- what the installer recorded, and preferences
-- ---------------------------------------------------------------------------

--- What `lr-bridge install-darktable-plugin` recorded beside this script, from the JSON text
--- `text` (nil: no such file): {client = absolute path or nil, models = the offered names, in
--- MODELS' order}. Without a record every model is offered and the client is looked up on PATH.
function M.install_info(text)
  local info = { models = MODELS }
  local record = text and M.json_decode(text)
  if type(record) ~= "table" then
    return info
  end
  if type(record.client) == "string" and record.client ~= "" then
    info.client = record.client
  end
  if type(record.models) == "table" then
    local shipped = {}
    for _, name in ipairs(record.models) do
      shipped[name] = true
    end
    info.models = {}
    for _, name in ipairs(MODELS) do
      if shipped[name] or name == MODELS[1] then
        info.models[#info.models + 1] = name
      end
    end
  end
  return info
end

local function read_install_info()
  local f = INSTALL_INFO and io.open(INSTALL_INFO, "rb")
  if not f then
    return M.install_info(nil)
  end
  local text = f:read("a")
  f:close()
  return M.install_info(text)
end

local installed = read_install_info()

--- The preferences, in the order *preferences > lua options* shows them: name, type, label,
--- tooltip, default, extra register arguments.
M.PREFERENCES = {
  { "format", "enum", _("low light: output format"),
    _("file format of the enhanced photos"), "DNG", table.unpack(FORMATS) },
  { "linear", "bool", _("low light: linear TIFF"),
    _("TIFF only: linear values with a linear profile instead of the sRGB curve"), false },
  { "ev", "string", _("low light: exposure"),
    string.format(_("'auto': measured from each raw (its mean brought to a natural brightness, at most 2 %% "
      .. "of the pixels clipped), or stops of brightening from %g to %g such as 5 or 6.5"),
      EV_RANGE[1], EV_RANGE[2]), "auto" },
  { "strength", "float", _("low light: strength"),
    _("1 = the network's result, 0 = plain brightening; values between blend the two"),
    STRENGTH_RANGE[2], STRENGTH_RANGE[1], STRENGTH_RANGE[2], 0.05 },
  { "model", "enum", _("low light: model"),
    _("auto = the daemon's choice (quality on a GPU when installed, else fast); fast; "
      .. "fast-licence-clean = fast trained on openly licensed photos only (weaker; Bayer raws only); "
      .. "quality (GPU). Only the models this installation ships are listed"),
    MODELS[1], table.unpack(installed.models) },
  { "output_folder", "string", _("low light: output folder"),
    _("empty = beside the source; variables: $(FILE_FOLDER), $(HOME), e.g. $(FILE_FOLDER)/lowlight"), "" },
  { "group_leader", "bool", _("low light: make result the group leader"),
    _("show the enhanced photo instead of the dark source when the group is collapsed"), true },
  { "again", "bool", _("low light: enhance again"),
    _("also enhance photos that already have a low light result in their group (off: they are skipped)"), false },
  { "client", "string", _("low light: client command"),
    _("empty = the lr-bridge that 'lr-bridge install-darktable-plugin' recorded, else lr-bridge on PATH; "
      .. "or a full path"), "" },
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
--- again, client, endpoint}, or nil and a message when one is unusable.
function M.read_settings()
  local settings = {}
  for _, pref in ipairs(M.PREFERENCES) do
    settings[pref[1]] = dt.preferences.read(MODULE, pref[1], pref[2])
  end
  settings.client = settings.client:match("^%s*(.-)%s*$"):gsub("^~/", function() return (os.getenv("HOME") or "") .. "/" end)
  if settings.client == "" then
    settings.client = installed.client or DEFAULT_CLIENT
  end
  local offered = false
  for _, name in ipairs(installed.models) do
    offered = offered or name == settings.model
  end
  if not offered then
    return nil, string.format(_("model '%s' is not installed (preferences > lua options)"), tostring(settings.model))
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
  stderr_tail = stderr_tail:gsub("^" .. DEFAULT_CLIENT:gsub("%p", "%%%0") .. ": ", "") -- the client's own prefix
  if status == EXIT_SOME_FAILED or status == EXIT_CANCELLED then
    return nil
  elseif status == EXIT_UNREACHABLE then
    return _("no daemon") .. (stderr_tail ~= "" and (": " .. stderr_tail) or "")
  elseif status == EXIT_NOT_FOUND then
    return string.format(_("client %s not found: set its path in preferences > lua options"), client)
  elseif status == EXIT_NOT_EXECUTABLE then
    return string.format(_("client %s cannot be run (not executable)"), client)
  end
  return string.format(_("client %s failed (exit status %d)"), client, status) ..
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

-- `text` with every occurrence of `find` replaced by `replacement` (plain text, no patterns)
local function replace_plain(text, find, replacement)
  local out, start = {}, 1
  while true do
    local i, j = text:find(find, start, true)
    if not i then
      out[#out + 1] = text:sub(start)
      return table.concat(out)
    end
    out[#out + 1] = text:sub(start, i - 1) .. replacement
    start = j + 1
  end
end

--- `message` about `file` as a toast shows it after the file's base name: without a leading
--- "FILE: " and with any other mention of the full path shortened to its base name.
function M.short_reason(message, file)
  if message:sub(1, #file + 2) == file .. ": " then
    message = message:sub(#file + 3)
  end
  return replace_plain(message, file, basename(file))
end

--- `text` with every absolute path (one that starts the text or follows a space, a quote or a
--- parenthesis) cut to its base name: what a toast shows of a reason that names files.
function M.base_names(text)
  local folders = "/[^%s:;,()'\"]*/"
  return (text:gsub("^" .. folders, ""):gsub("([%s(\"'])" .. folders, "%1"))
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
    return nil, string.format(_("the result %s does not exist"), basename(output))
  end
  local ok, result = pcall(dt.database.import, output)
  if not ok or result == nil then
    return nil, string.format(_("could not import %s: %s"), basename(output), tostring(result))
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

-- `filename` without its extension
local function stem_of(filename)
  return filename:match("^(.*)%.[^.]*$") or filename
end

-- the stem of the original whose result `filename` is (<stem>_lowlight[_N].<ext>), else nil
local function original_stem(filename)
  local stem = stem_of(filename)
  return stem:match("^(.*)" .. OUTPUT_SUFFIX .. "$") or stem:match("^(.*)" .. OUTPUT_SUFFIX .. "_%d+$")
end

--- Why `image` cannot be sent to the daemon itself (nil: it can): one of the plugin's own
--- results (<stem>_lowlight[_N].<ext>) or not a raw file (by extension).
function M.skip_reason(image)
  if original_stem(image.filename) then
    return _("a low light result")
  end
  local ext = image.filename:match("%.([^.]*)$")
  if ext and NOT_RAW_EXTENSIONS[ext:lower()] then
    return _("not a raw file")
  end
  return nil
end

--- The original a low light result `image` was made from: the member of its group whose name
--- the result's name extends (nil if the group holds none).
function M.original_of(image)
  local stem = original_stem(image.filename)
  for _, member in ipairs(image:get_group_members()) do
    if stem_of(member.filename) == stem and M.skip_reason(member) == nil then
      return member
    end
  end
  return nil
end

--- Whether `image`'s group already holds a low light result of it.
function M.has_result(image)
  local stem = stem_of(image.filename)
  for _, member in ipairs(image:get_group_members()) do
    if original_stem(member.filename) == stem then
      return true
    end
  end
  return false
end

--- The photos to send for the selection `images`, in order, each once: a selected result
--- stands for its group's original; non-raw images, results without their original and
--- (unless `again`) originals that already have a result are skipped. Returns the wanted
--- images and the skipped ones as {image, reason}.
function M.choose(images, again)
  local wanted, skipped, seen = {}, {}, {}
  for i = 1, #images do
    local image = images[i]
    local chosen, reason = image, M.skip_reason(image)
    if original_stem(image.filename) then
      chosen = M.original_of(image)
      reason = chosen == nil and _("a low light result whose original is not in its group") or nil
    end
    if chosen == nil then
      skipped[#skipped + 1] = { image = image, reason = reason }
    elseif not seen[image_file(chosen)] then
      seen[image_file(chosen)] = true
      if reason then
        skipped[#skipped + 1] = { image = chosen, reason = reason }
      elseif not again and M.has_result(chosen) then
        skipped[#skipped + 1] = { image = chosen, reason = _("already enhanced") }
      else
        wanted[#wanted + 1] = chosen
      end
    end
  end
  return wanted, skipped
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
    warn(string.format(_("low light: cannot write the report %s"), REPORT_NAME))
    dt.print_error(string.format("%s: %s: %s", MODULE, path, tostring(err)))
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

-- replace the background job by one labelled `label`, keeping its progress and cancel button
-- (darktable cannot relabel a job)
local function relabel_job(state, label)
  local percent = 0
  if state.job then
    percent = state.job.percent or 0
    if state.job.valid then
      state.job.valid = false
    end
  end
  state.job = dt.gui.create_job(M.fit(label, TOAST_MAX), true, function() state.cancel_requested = true end)
  state.job.percent = percent
end

-- the darktable image the client's `file` names (by path, else by name), or nil
local function source_of(state, file)
  return state.sources[file] or state.sources_by_name[basename(file)]
end

-- a file's outcome ("ok" or "failed"): counted, keyed by its source image, and a report line
local function record(state, file, outcome, line)
  local source = source_of(state, file)
  state.outcome[source and image_file(source) or file] = outcome
  state[outcome] = state[outcome] + 1
  state.report[#state.report + 1] = line
end

-- handle one client event; `state` holds the batch's counters, report lines and source lookup
local function handle_event(event, state, settings)
  if event.event == "accepted" then
    dt.print_log(string.format("%s: daemon job %s (%d files)", MODULE, event.job, event.files))
  elseif event.event == "progress" then
    local done = state.files_before + event.index + math.max(0, math.min(1, event.fraction))
    local number = state.files_before + event.index + 1
    if number ~= state.labelled then
      state.labelled = number
      relabel_job(state, string.format(_("low light: %d/%d %s"), number, state.total, basename(event.file)))
    end
    state.job.percent = math.min(1, done / state.total)
  elseif event.event == "result" then
    local source = source_of(state, event.file)
    local imported, err
    if source == nil then
      err = _("the client returned a result for a photo it was not sent")
    else
      imported, err = M.import_result(source, event.output, settings.group_leader)
    end
    if imported then
      state.imported[#state.imported + 1] = imported
      local line = string.format("%s -> %s (%+.2f EV)", event.file, event.output, event.ev or 0)
      record(state, event.file, "ok", "ok      " .. line)
      dt.print_log(MODULE .. ": " .. line)
    else
      record(state, event.file, "failed", string.format("failed  %s: %s", event.file, err))
      warn(string.format(_("low light: %s: %s"), basename(event.file), err))
    end
  elseif event.event == "error" then
    if event.file then
      record(state, event.file, "failed", string.format("failed  %s: %s", event.file, event.message))
      warn(string.format(_("low light: %s: %s"), basename(event.file), M.short_reason(event.message, event.file)))
    else
      -- why the client stopped: said in the final summary (darktable 4.2 shows one message at a
      -- time: a message now would be replaced by the summary at once)
      state.stop_reason = event.message
      dt.print_error(MODULE .. ": " .. event.message)
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
  -- an error event without a file already said why the client stopped
  local message = status and status ~= 0 and not state.stop_reason and M.exit_message(status, M.stderr_tail(run), settings.client)
  if message then
    state.stop_reason = message
    dt.print_error(MODULE .. ": " .. message)
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

-- whether every image of `images` is in the current collection (what the lighttable shows)
local function all_in_collection(images)
  local shown = {}
  for _, image in ipairs(dt.collection) do
    shown[image_file(image)] = true
  end
  for _, image in ipairs(images) do
    if not shown[image_file(image)] then
      return false
    end
  end
  return true
end

--- Make the results `imported` visible: when the lighttable does not show them all and they are
--- in one folder, switch the collection to that film roll. Returns their place in words, short
--- ("lowlight", "2 folders") and in full (the folder's path).
function M.show_results(imported)
  local folders = {}
  for _, image in ipairs(imported) do
    if not folders[image.path] then
      folders[image.path] = true
      folders[#folders + 1] = image.path
    end
  end
  if #folders ~= 1 then
    local place = string.format(_("%d folders"), #folders)
    return place, place
  end
  if not all_in_collection(imported) then
    local rule = dt.gui.libs.collect.new_rule()
    rule.mode = "DT_LIB_COLLECT_MODE_AND"
    rule.item = "DT_COLLECTION_PROP_FILMROLL"
    rule.data = folders[1]
    dt.gui.libs.collect.filter({ rule })
    dt.print_log(string.format("%s: showing the film roll %s", MODULE, folders[1]))
  end
  return M.fit(basename(folders[1]), PLACE_MAX), folders[1]
end

--- The summary of a batch from its counts `c` ({total, ok, failed, skipped, unprocessed,
--- cancelled, stop_reason, skip_reason (when all skipped photos share one)}) and the results'
--- place (`place`, nil when there are none). Returns it whole (for the report) and as a toast
--- of at most TOAST_MAX characters: the counts, the place, why it stopped; when that is too
--- long the place goes first (the lighttable shows it), then the reason's end.
function M.summary(c, place)
  local head
  if c.total == 0 then
    head = _("low light: nothing to enhance")
  elseif c.ok == 0 and c.failed == 0 then
    head = string.format(_("low light: %d not processed"), c.unprocessed)
  else
    head = n_(c.total, "low light: %d of %d photo enhanced", "low light: %d of %d photos enhanced", c.ok, c.total)
    if c.failed > 0 then
      head = head .. string.format(_(", %d failed"), c.failed)
    end
    if c.unprocessed > 0 then
      head = head .. string.format(_(", %d not processed"), c.unprocessed)
    end
  end
  if c.skipped > 0 then
    head = head .. string.format(_(", %d skipped"), c.skipped) .. (c.skip_reason and (": " .. c.skip_reason) or "")
  end
  local where = place and string.format(_(", in %s"), place) or ""
  local stop = ""
  if c.cancelled then
    stop = _("; cancelled")
  elseif c.stop_reason then
    stop = ": " .. c.stop_reason
  end
  local whole = head .. where .. stop
  if utf8.len(whole) and utf8.len(whole) > TOAST_MAX and stop ~= "" then
    return whole, M.fit(head .. stop, TOAST_MAX)
  end
  return whole, M.fit(whole, TOAST_MAX)
end

-- after the client(s): count what was never processed, show the results, tell and report
local function finish(state, wanted, skipped, skip_reason, settings)
  local unprocessed = 0
  for _, image in ipairs(wanted) do
    if not state.outcome[image_file(image)] then
      unprocessed = unprocessed + 1
      state.report[#state.report + 1] = "not processed " .. image_file(image)
    end
  end
  local place, full_place
  if #state.imported > 0 then
    place, full_place = M.show_results(state.imported)
    -- with grouping on, a result that does not lead its group is hidden: the selection shows it
    dt.gui.selection(state.imported)
  end
  local counts = {
    total = #wanted, ok = state.ok, failed = state.failed, skipped = #skipped, unprocessed = unprocessed,
    cancelled = state.cancelled, stop_reason = state.stop_reason, skip_reason = skip_reason,
  }
  local whole = M.summary(counts, full_place)
  -- the toast names files by their base names (the report keeps the paths)
  counts.stop_reason = state.stop_reason and M.base_names(state.stop_reason)
  local toast = select(2, M.summary(counts, place))
  local report = write_report(whole, state.report)
  dt.print(toast)
  dt.print_log(MODULE .. ": " .. whole .. (report and ("; report: " .. report) or ""))
  return { ok = state.ok, failed = state.failed, skipped = #skipped, unprocessed = unprocessed,
    cancelled = state.cancelled, stop_reason = state.stop_reason, imported = state.imported, report = report }
end

--- Enhance `images` (darktable images) with the current preferences. Runs until the
--- client(s) finish; returns the summary {ok, failed, skipped, unprocessed, cancelled,
--- stop_reason, imported, report}. Busy (a second call is refused) until the summary is out:
--- showing the results lets darktable run other Lua callbacks meanwhile.
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
  local state = {
    ok = 0, failed = 0, cancelled = false, files_before = 0, imported = {}, report = {}, outcome = {},
  }
  local wanted, skipped = M.choose(images, settings.again)
  local skip_reason = skipped[1] and skipped[1].reason
  for _, skip in ipairs(skipped) do
    state.report[#state.report + 1] = string.format("skipped %s: %s", image_file(skip.image), skip.reason)
    skip_reason = skip.reason == skip_reason and skip_reason or nil
  end
  state.total = #wanted
  busy = true
  if #wanted > 0 then
    running = state
    relabel_job(state, _("low light: waiting for the daemon"))
    local ok, failure = pcall(function()
      for _, batch in ipairs(batches_by_output_folder(wanted, settings.output_folder)) do
        if not run_batch(batch, state, settings) then
          break
        end
      end
    end)
    running = nil
    if state.job.valid then
      state.job.valid = false
    end
    if not ok then
      state.stop_reason = _("internal error: ") .. tostring(failure)
      dt.print_error(MODULE .. ": " .. state.stop_reason)
    end
  end
  local ok, summary = pcall(finish, state, wanted, skipped, skip_reason, settings)
  busy = false
  if not ok then
    error(summary, 0)
  end
  return summary
end

--- The button's handler ("enhance low light" in the lighttable's actions on selection module).
function M.on_button(event, images)
  M.enhance_images(images)
end

--- Make the button active only while darktable has images to act on (its convention).
function M.update_sensitivity()
  dt.gui.libs.image.set_sensitive(MODULE, #dt.gui.action_images > 0)
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
  warn(string.format(_("low light: needs darktable 4.2+ (Lua API %s); this one has %s"),
    table.concat(MIN_API, "."), dt.configuration.api_version_string))
  return script_data
end

register_preferences()

dt.gui.libs.image.register_action(MODULE, ACTION_LABEL, M.on_button,
  _("brighten and denoise the selected underexposed raw photos; results are grouped with their sources"))

dt.register_event(MODULE, "shortcut", M.on_shortcut, ACTION_LABEL)

-- darktable's convention for the actions on selection: a button is active only while there are
-- images to act on (the hovered image or the selection)
for _, event in ipairs(SENSITIVITY_EVENTS) do
  dt.register_event(MODULE, event, M.update_sensitivity)
end
M.update_sensitivity()

script_data.destroy = function()
  if running then
    running.cancel_requested = true -- the batch stops its client at the next poll
  end
  dt.gui.libs.image.destroy_action(MODULE)
  dt.destroy_event(MODULE, "shortcut")
  for _, event in ipairs(SENSITIVITY_EVENTS) do
    dt.destroy_event(MODULE, event)
  end
end

return script_data
